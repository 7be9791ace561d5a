//! What installing kswarm takes from the binary itself: shell completions
//! (`kswarm completions bash|zsh|fish`) and the man page (`kswarm man`). Both
//! are generated from the clap definitions, so they cannot drift from the flags.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, Shell};

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut visible_command(), "kswarm", &mut out);
    out
}

/// kswarm's command line without the hidden subcommands (`worker`, `guard`,
/// `spawned`: kswarm starts those itself), which some of clap_complete's
/// shells would offer.
fn visible_command() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new("kswarm")
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd.version(env!("CARGO_PKG_VERSION"))
}

/// The man page, kswarm(1): the overview and global flags, then one section
/// per subcommand with its flags (a user looks for `--brokers` in one page,
/// not in five).
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut cmd = Cli::command();
    cmd.build();
    let top = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    top.render_title(&mut out)?;
    top.render_name_section(&mut out)?;
    top.render_synopsis_section(&mut out)?;
    top.render_description_section(&mut out)?;
    top.render_options_section(&mut out)?;
    // clap_mangen's list points at one page per subcommand (kswarm-run(1)):
    // this page has a section for each instead.
    let subs: Vec<&clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .collect();
    writeln!(out, ".SH SUBCOMMANDS")?;
    for sub in &subs {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        writeln!(
            out,
            ".TP\n\\fBkswarm {}\\fR\n{}",
            sub.get_name(),
            roff_text(&about)
        )?;
    }
    for sub in subs {
        // The global, help and version flags are in OPTIONS above already.
        let sub = sub.clone().mut_args(|a| {
            let inherited = a.is_global_set()
                || matches!(
                    a.get_id().as_str(),
                    "help" | "version" | "log_level" | "log_format"
                );
            if inherited {
                a.hide(true)
            } else {
                a
            }
        });
        let page = clap_mangen::Man::new(sub.clone());
        let (mut synopsis, mut options) = (Vec::new(), Vec::new());
        page.render_synopsis_section(&mut synopsis)?;
        page.render_options_section(&mut options)?;
        let title = format!(".SH \"KSWARM {}\"", sub.get_name().to_uppercase());
        out.extend_from_slice(
            String::from_utf8_lossy(&synopsis)
                .replace(".SH SYNOPSIS", &title)
                .as_bytes(),
        );
        if let Some(about) = sub.get_about() {
            writeln!(out, ".PP\n{}", roff_text(&about.to_string()))?;
        }
        out.extend_from_slice(
            String::from_utf8_lossy(&options)
                .replace(".SH OPTIONS", ".SS Options")
                .as_bytes(),
        );
    }
    out.extend_from_slice(TAIL.as_bytes());
    top.render_version_section(&mut out)?;
    Ok(out)
}

/// Write a generated file on stdout. A reader that stops early
/// (`kswarm man | head`) is not an error.
pub fn print(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// What the flags cannot say: exit codes and the environment.
const TAIL: &str = r#".SH "EXIT STATUS"
.TP
0
a clean stop
.TP
1
a runtime failure (brokers out of reach, a crash loop, a poison record)
.TP
2
a usage or configuration error; the message names the flag or value and the way out
.SH ENVIRONMENT
Every flag listed with a variable above falls back to it (KSWARM_BROKERS, KSWARM_TOPIC, ..).
.TP
RUST_LOG
overrides \-\-log\-level
.TP
KSWARM_STATE_DIR
where \fBrun\fR keeps its state file and lock (default: /run/kswarm for root, else
$XDG_RUNTIME_DIR/kswarm or ~/.local/state/kswarm)
"#;

/// Plain text as a roff paragraph: no line may start with a control
/// character, and a backslash is an escape.
fn roff_text(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    match s.chars().next() {
        Some('.' | '\'') => format!("\\&{s}"),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_text_escapes() {
        assert_eq!(roff_text(".hidden"), "\\&.hidden");
        assert_eq!(roff_text("a\\b -x"), "a\\eb \\-x");
    }
}

//! What the README's Install puts in place, used as a user would: the bash
//! completion sourced in a real bash, the zsh and fish scripts loaded by
//! their shells where installed (and read for the subcommands and flags
//! always), the man page rendered by man or groff. No broker needed.
mod support;

use std::path::Path;
use std::process::{Command, Output};

/// `kswarm ARGS`: its output, which must be a success.
fn kswarm_ok(args: &[&str]) -> String {
    let out = support::kswarm().args(args).output().expect("start kswarm");
    assert!(
        out.status.success(),
        "kswarm {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `shell -c script` with its home in `home`, so that a first run's dot
/// files (fish's variables, say) land there and not in the user's home.
fn run_shell(shell: &str, home: &Path, script: &str) -> Output {
    let out = Command::new(shell)
        .args(["-c", script])
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .output()
        .unwrap_or_else(|e| panic!("start {shell}: {e}"));
    eprintln!(
        "{shell}: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What every completion script must offer: the subcommands and some flags
/// of each; never the hidden subcommands kswarm starts itself.
fn offers_the_command_line(shell: &str, script: &str) {
    for word in [
        "run",
        "plan",
        "status",
        "produce",
        "completions",
        "man",
        "brokers",
        "connect-timeout",
        "exec-batch",
        "apply",
        "key-separator",
        "log-level",
    ] {
        assert!(script.contains(word), "{shell} completion lacks {word}");
    }
    for hidden in ["spawned", "guard"] {
        assert!(
            !script.contains(hidden),
            "{shell} completion offers the hidden `{hidden}`"
        );
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn bash_completion_is_registered_and_completes() {
    assert!(installed("bash"), "bash is missing (kswarm is Linux only)");
    let dir = tempfile::tempdir().unwrap();
    let script = kswarm_ok(&["completions", "bash"]);
    offers_the_command_line("bash", &script);
    let file = write(dir.path(), "kswarm.bash", &script);
    // Sourced as /etc/bash_completion.d does it, then asked as <TAB> would.
    let out = run_shell(
        "bash",
        dir.path(),
        &format!(
            "source '{file}' && complete -p kswarm && \
             COMP_WORDS=(kswarm pl) COMP_CWORD=1 && _kswarm kswarm pl kswarm && echo \"words: ${{COMPREPLY[*]}}\" && \
             COMP_WORDS=(kswarm plan --ap) COMP_CWORD=2 && _kswarm kswarm --ap plan && echo \"words: ${{COMPREPLY[*]}}\""
        ),
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().next().unwrap_or("").starts_with("complete ")
            && text.contains("-F _kswarm kswarm"),
        "complete -p kswarm: {text}"
    );
    assert!(text.contains("words: plan\n"), "kswarm pl<TAB>: {text}");
    assert!(
        text.contains("words: --apply\n"),
        "kswarm plan --ap<TAB>: {text}"
    );
}

#[test]
fn zsh_completion() {
    let dir = tempfile::tempdir().unwrap();
    let script = kswarm_ok(&["completions", "zsh"]);
    offers_the_command_line("zsh", &script);
    assert!(script.starts_with("#compdef kswarm"), "{script:.200}");
    if installed("zsh") {
        // As a file in $fpath: compinit finds it and binds it to kswarm.
        write(dir.path(), "_kswarm", &script);
        let out = run_shell(
            "zsh",
            dir.path(),
            &format!(
                "fpath=('{}' $fpath); autoload -U compinit; compinit -u -D; print -r -- $_comps[kswarm]",
                dir.path().display()
            ),
        );
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "_kswarm");
    } else {
        eprintln!("zsh is not installed: checked the script's content only");
    }
}

#[test]
fn fish_completion() {
    let dir = tempfile::tempdir().unwrap();
    let script = kswarm_ok(&["completions", "fish"]);
    offers_the_command_line("fish", &script);
    assert!(script.contains("complete -c kswarm"), "{script:.200}");
    if installed("fish") {
        let file = write(dir.path(), "kswarm.fish", &script);
        let out = run_shell(
            "fish",
            dir.path(),
            &format!("source '{file}'; complete -C 'kswarm pl'; complete -C 'kswarm plan --ap'"),
        );
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.lines().any(|l| l.starts_with("plan")), "{text}");
        assert!(text.lines().any(|l| l.starts_with("--apply")), "{text}");
    } else {
        eprintln!("fish is not installed: checked the script's content only");
    }
}

#[test]
fn a_shell_kswarm_has_no_completion_for_exits_2_naming_the_ones_it_has() {
    let out = support::kswarm()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("'tcsh'"), "names the value: {err}");
    assert!(err.contains("bash, zsh, fish"), "names the shells: {err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn man_page_renders_with_every_subcommand_and_flag() {
    let page = kswarm_ok(&["man"]);
    assert!(page.contains(".TH kswarm 1"), "{page:.300}");
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "kswarm.1", &page);
    // Rendered as `man` shows it (plain ASCII, so flags read as typed).
    let text = if installed("man") {
        let out = Command::new("man")
            .args(["-l", &file])
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .env("LANG", "C")
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(out.stdout)
    } else if installed("groff") {
        let out = Command::new("groff")
            .args(["-man", "-Tascii", "-P-c", "-P-b", "-P-u", &file])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(out.stdout)
    } else {
        eprintln!("neither man nor groff is installed: checked the roff source only");
        None
    };
    let text = match text {
        // man may still bold with backspaces when it thinks it has a terminal.
        Some(bytes) => strip_overstrike(&String::from_utf8_lossy(&bytes)),
        None => page.replace("\\-", "-"),
    };
    for want in [
        "KSWARM RUN",
        "KSWARM PLAN",
        "KSWARM STATUS",
        "KSWARM PRODUCE",
        "KSWARM COMPLETIONS",
        "--brokers",
        "--connect-timeout",
        "--exec-batch",
        "--apply",
        "--key-separator",
        "--log-level",
        "KSWARM_BROKERS",
        "EXIT STATUS",
    ] {
        assert!(text.contains(want), "the man page lacks {want}:\n{text}");
    }
    assert!(
        !text.contains("spawned"),
        "a hidden subcommand in the man page"
    );
}

/// Remove `x\bx` bold and `_\bx` underline.
fn strip_overstrike(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

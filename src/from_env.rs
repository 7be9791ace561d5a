//! Which flags took their value from a `KSWARM_*` variable, so that a usage
//! error about one names the variable too: a user who never typed
//! `--workers abc` looks for it on the command line, not in the environment.

use clap::parser::ValueSource;
use clap::{ArgMatches, Command, CommandFactory, FromArgMatches};

use crate::error::UsageError;

/// The flags of one invocation whose value came from the environment, as
/// (how messages name the flag, the variable): `("--workers", "KSWARM_WORKERS")`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FromEnv(Vec<(String, String)>);

/// Parse the command line like `Cli::parse`, and note which flags the
/// environment set.
pub fn parse() -> (crate::cli::Cli, FromEnv) {
    let cmd = crate::cli::Cli::command();
    let matches = cmd.clone().get_matches();
    let cli = crate::cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (cli, FromEnv::of(&cmd, &matches))
}

impl FromEnv {
    pub fn new(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|&(f, v)| (f.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// Walk the matches of `cmd` and its chosen subcommand.
    pub fn of(cmd: &Command, matches: &ArgMatches) -> Self {
        let mut out = Self::default();
        out.collect(cmd, matches);
        out
    }

    fn collect(&mut self, cmd: &Command, m: &ArgMatches) {
        for id in m.ids() {
            let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == id) else {
                continue; // an ArgGroup's id, or a global defined above
            };
            if m.value_source(id.as_str()) != Some(ValueSource::EnvVariable) {
                continue;
            }
            let (Some(var), Some(flag)) = (
                arg.get_env().and_then(|v| v.to_str()),
                arg.get_long()
                    .map(|l| format!("--{l}"))
                    .or_else(|| arg.get_short().map(|s| format!("-{s}"))),
            ) else {
                continue;
            };
            if !self.0.iter().any(|(f, _)| *f == flag) {
                self.0.push((flag, var.to_string()));
            }
        }
        if let Some((name, sub)) = m.subcommand() {
            if let Some(sub_cmd) = cmd.find_subcommand(name) {
                self.collect(sub_cmd, sub);
            }
        }
    }

    /// `message` with the variable named after the first mention of each
    /// flag it set: `--workers (from KSWARM_WORKERS): 'abc' is not ...`.
    pub fn name_vars(&self, message: &str) -> String {
        let mut out = message.to_string();
        for (flag, var) in &self.0 {
            if out.contains(var.as_str()) {
                continue; // the message names it already
            }
            if let Some(end) = mention(&out, flag) {
                out.insert_str(end, &format!(" (from {var})"));
            }
        }
        out
    }

    /// A usage error with [`Self::name_vars`] applied; other errors as they are.
    pub fn annotate(&self, e: anyhow::Error) -> anyhow::Error {
        match e.downcast_ref::<UsageError>() {
            Some(u) if !self.0.is_empty() => UsageError(self.name_vars(&u.0)).into(),
            _ => e,
        }
    }
}

/// Where the first whole-word mention of `flag` in `text` ends: `--max-in-flight`
/// is not mentioned by `--max-in-flight-bytes`.
fn mention(text: &str, flag: &str) -> Option<usize> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut from = 0;
    while let Some(i) = text[from..].find(flag).map(|i| i + from) {
        let end = i + flag.len();
        let before = text[..i].chars().next_back().is_none_or(|c| !word(c));
        let after = text[end..].chars().next().is_none_or(|c| !word(c));
        if before && after {
            return Some(end);
        }
        from = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_variable_after_the_flag() {
        let env = FromEnv::new(&[("--workers", "KSWARM_WORKERS")]);
        assert_eq!(
            env.name_vars("--workers: 'abc' is not a whole number"),
            "--workers (from KSWARM_WORKERS): 'abc' is not a whole number"
        );
        // Other flags' messages are left alone.
        assert_eq!(env.name_vars("--format: 'xml'"), "--format: 'xml'");
    }

    #[test]
    fn whole_flags_only_and_no_second_mention() {
        let env = FromEnv::new(&[
            ("--max-in-flight", "KSWARM_MAX_IN_FLIGHT"),
            ("-X", "KSWARM_X"),
        ]);
        assert_eq!(
            env.name_vars("--max-in-flight-bytes: bad, unlike --max-in-flight"),
            "--max-in-flight-bytes: bad, unlike --max-in-flight (from KSWARM_MAX_IN_FLIGHT)"
        );
        assert_eq!(
            env.name_vars("-X fetch.max.bytes: 'lots' is not a size"),
            "-X (from KSWARM_X) fetch.max.bytes: 'lots' is not a size"
        );
        // A message that names the variable itself is not told twice.
        let lvl = FromEnv::new(&[("--log-level", "KSWARM_LOG_LEVEL")]);
        let m = "--log-level/KSWARM_LOG_LEVEL: 'loud' is not a log level";
        assert_eq!(lvl.name_vars(m), m);
    }

    #[test]
    fn typed_flags_are_not_from_the_environment() {
        // (Values from the environment are covered by tests/first_use.rs,
        // which sets variables for a child process, not for this one.)
        let cmd = crate::cli::Cli::command();
        let m = cmd
            .clone()
            .try_get_matches_from(["kswarm", "plan", "-b", "h:1", "-t", "t", "-w", "3"])
            .unwrap();
        let env = FromEnv::of(&cmd, &m);
        assert!(
            !env.0
                .iter()
                .any(|(f, _)| f == "--workers" || f == "--brokers"),
            "{env:?}"
        );
    }

    #[test]
    fn usage_errors_are_annotated_and_others_kept() {
        let env = FromEnv::new(&[("--workers", "KSWARM_WORKERS")]);
        let e = env.annotate(UsageError("--workers: 'abc'".into()).into());
        assert_eq!(
            e.downcast_ref::<UsageError>().unwrap().0,
            "--workers (from KSWARM_WORKERS): 'abc'"
        );
        let e = env.annotate(anyhow::anyhow!("--workers: runtime"));
        assert!(e.downcast_ref::<UsageError>().is_none());
    }
}

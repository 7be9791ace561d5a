//! The README and the manual in docs/, checked as a reader meets them. No
//! broker needed, and fast:
//! - every relative link (and `#anchor`) in README.md, docs/*.md and
//!   scripts/bench/RESULTS.md leads to a file and heading that exist;
//! - the README fits on a screen or so (at most `README_MAX_LINES` lines) and
//!   keeps its two commands word for word (CI and readers look for them);
//! - every command the README's tour shows is run by a test: the broker-free
//!   ones here, each with the exit status its comment promises; a line
//!   marked `# run by tests/FILE.rs` must appear word for word in FILE; the
//!   output shown after commands run here must be what they printed;
//! - docs/flags.md has a table row for every flag `kswarm SUBCOMMAND --help`
//!   shows, and none for a flag that none of them has.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// "Fits on a screen": the README says what kswarm is, how to install it,
/// the two commands, the tour and the links; the rest lives in docs/.
const README_MAX_LINES: usize = 260;

/// The tour's heading in README.md.
const TOUR: &str = "## A five-minute tour";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The Markdown files whose links are checked.
fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("a docs/ directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files.push(root().join("scripts/bench/RESULTS.md"));
    files
}

/// The lines of `text` outside fenced code blocks, numbered from 1.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            out.push((i + 1, line));
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case; letters, digits, `-` and `_`
/// kept, spaces made `-`, everything else (backticks, colons, ..) dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Every anchor of a Markdown file, a repeated heading's as `slug-1`, `slug-2`..
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.len() - line.trim_start_matches('#').len();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The targets of the links `[text](target)` and images on a line, code
/// spans left out.
fn link_targets(line: &str) -> Vec<String> {
    let prose: String = line
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, part)| part)
        .collect::<Vec<_>>()
        .join("");
    prose
        .match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &prose[at + 2..];
            let end = rest.find(')')?;
            Some(
                rest[..end]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

/// What is wrong with the relative links of one Markdown file.
fn broken_links(file: &Path) -> Vec<String> {
    let text = read(file);
    let dir = file.parent().unwrap();
    let mut broken = Vec::new();
    for (n, line) in prose_lines(&text) {
        for target in link_targets(line) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.to_path_buf()
            } else {
                dir.join(path)
            };
            let at = format!("{}:{n}: ({target})", file.display());
            if !dest.exists() {
                broken.push(format!("{at}: no file {}", dest.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                if dest.extension().is_none_or(|x| x != "md") {
                    broken.push(format!("{at}: an anchor into a file that is not Markdown"));
                } else if !anchors(&read(&dest)).contains(anchor) {
                    broken.push(format!("{at}: no heading #{anchor} in {}", dest.display()));
                }
            }
        }
    }
    broken
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(
        slug(" Pipelines: exactly once (`--output-topic`)"),
        "pipelines-exactly-once---output-topic"
    );
    assert_eq!(slug(" Share groups (KIP-932)"), "share-groups-kip-932");
    assert_eq!(slug(" `kswarm status`"), "kswarm-status");
    let a = anchors("# A\n```\n# not a heading\n```\n## A\n#hashtag\n");
    assert_eq!(a, BTreeSet::from(["a".to_string(), "a-1".to_string()]));
    assert_eq!(
        link_targets("see [x](a.md#b), `[no](c.md)` and ![i](d.svg \"t\")"),
        ["a.md#b", "d.svg"]
    );
}

#[test]
fn every_relative_link_leads_to_a_file_and_heading_that_exist() {
    let files = doc_files();
    assert!(files.len() > 5, "README.md and the manual: {files:?}");
    let broken: Vec<String> = files.iter().flat_map(|f| broken_links(f)).collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_fits_on_a_screen_and_keeps_its_two_commands() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move the detail into docs/"
    );
    for (script, line) in [
        (
            "scripts/demo.sh",
            "scripts/demo.sh     # the main job end to end on a local Apache Kafka broker it starts itself",
        ),
        (
            "scripts/test.sh",
            "scripts/test.sh     # every test, against a local Apache Kafka broker it starts itself",
        ),
    ] {
        assert!(readme.lines().any(|l| l == line), "README.md lost: {line}");
        assert!(root().join(script).exists(), "{script} is gone");
    }
}

/// One command line of the tour and what its comment promises.
#[derive(Debug)]
enum Promise {
    /// `# run by tests/FILE.rs`: a test there runs it; it must appear there word for word.
    RunBy(String),
    /// `# exit N[, names TEXT]` (or no comment: exit 0): run here.
    Exit { code: i32, names: Option<String> },
}

/// The fenced blocks of the README's tour: (info string, lines).
fn tour_blocks(readme: &str) -> Vec<(String, Vec<String>)> {
    let start = readme.find(TOUR).expect("the README's tour");
    let rest = &readme[start + TOUR.len()..];
    let tour = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut blocks = Vec::new();
    let mut open: Option<(String, Vec<String>)> = None;
    for line in tour.lines() {
        let trimmed = line.trim_start();
        match (&mut open, trimmed.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_string(), Vec::new())),
            (Some(_), Some(_)) => blocks.push(open.take().unwrap()),
            (Some((_, lines)), None) => lines.push(trimmed.to_string()),
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed code block in the tour");
    blocks
}

/// A tour line split into its command and the promise of its comment
/// (the text after the first `  # `).
fn promise(line: &str) -> (String, Promise) {
    let (cmd, comment) = match line.split_once("  # ") {
        Some((c, note)) => (c.trim().to_string(), note.trim()),
        None => (line.trim().to_string(), ""),
    };
    let p = if let Some(file) = comment.strip_prefix("run by ") {
        Promise::RunBy(file.to_string())
    } else if let Some(exit) = comment.strip_prefix("exit ") {
        let (code, names) = match exit.split_once(", names ") {
            Some((c, n)) => (c, Some(n.to_string())),
            None => (exit, None),
        };
        let code = code
            .parse()
            .unwrap_or_else(|_| panic!("tour: `{line}`: write `# exit N[, names TEXT]`"));
        Promise::Exit { code, names }
    } else {
        Promise::Exit {
            code: 0,
            names: None,
        }
    };
    (cmd, p)
}

/// `sh -c cmd` with this build's kswarm first on the PATH, in an empty
/// directory, without the caller's KSWARM_* settings: (exit code, stdout, stderr).
fn run_shell(cmd: &str, dir: &Path) -> (Option<i32>, String, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_kswarm")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("sh");
    c.args(["-c", cmd])
        .current_dir(dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("KSWARM_") {
            c.env_remove(k);
        }
    }
    let mut child = c.spawn().expect("start sh");
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("tour: `{cmd}` ran for more than 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), s(&out.stdout), s(&out.stderr))
}

#[test]
fn every_command_of_the_tour_is_run_by_a_test() {
    let readme = read(&root().join("README.md"));
    let tmp = tempfile::tempdir().unwrap();
    let (mut here, mut elsewhere) = (0, 0);
    // What the last ```sh block printed, when this test ran all of it: a
    // ```text block after it shows lines of that, word for word.
    let mut printed: Option<String> = None;
    for (info, lines) in tour_blocks(&readme) {
        match info.as_str() {
            "sh" => {}
            "text" => {
                if let Some(out) = &printed {
                    for line in lines.iter().filter(|l| !l.is_empty()) {
                        assert!(
                            out.contains(line.as_str()),
                            "tour: no command printed `{line}`"
                        );
                    }
                }
                continue;
            }
            other => panic!("tour: a ```{other} block; use ```sh (commands) or ```text (output)"),
        }
        let mut out = Some(String::new());
        for line in lines
            .iter()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            match promise(line) {
                (cmd, Promise::RunBy(file)) => {
                    let test = read(&root().join(&file));
                    assert!(
                        test.contains(&cmd),
                        "tour: `{cmd}` is said to be run by {file}, which does not name it"
                    );
                    out = None;
                    elsewhere += 1;
                }
                (cmd, Promise::Exit { code, names }) => {
                    let (got, stdout, stderr) = run_shell(&cmd, tmp.path());
                    eprintln!("tour: `{cmd}` -> {got:?}\n{stderr}");
                    assert_eq!(got, Some(code), "tour: `{cmd}`\n{stdout}{stderr}");
                    if code == 0 {
                        assert!(!stdout.trim().is_empty(), "tour: `{cmd}` printed nothing");
                    }
                    if let Some(want) = names {
                        assert!(
                            stderr.contains(&want),
                            "tour: `{cmd}` must name {want}: {stderr}"
                        );
                    }
                    if let Some(o) = &mut out {
                        o.push_str(&stdout);
                        o.push_str(&stderr);
                    }
                    here += 1;
                }
            }
        }
        printed = out;
    }
    assert!(
        here >= 3 && elsewhere >= 1,
        "the tour runs {here} commands here and {elsewhere} elsewhere"
    );
}

/// The long flags `kswarm ARGS --help` lists.
fn help_flags(args: &[&str]) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_kswarm"))
        .args(args)
        .arg("--help")
        .output()
        .expect("start kswarm");
    assert!(out.status.success(), "kswarm {args:?} --help");
    let help = String::from_utf8_lossy(&out.stdout);
    help.lines()
        .filter(|l| l.trim_start().starts_with('-'))
        .flat_map(|l| long_flags(l.split("  ").find(|s| !s.is_empty()).unwrap_or("")))
        .collect()
}

/// The `--long-flag` words of a piece of text.
fn long_flags(text: &str) -> Vec<String> {
    text.match_indices("--")
        .filter(|(at, _)| *at == 0 || !text.as_bytes()[at - 1].is_ascii_alphanumeric())
        .map(|(at, _)| {
            let name: String = text[at + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            format!("--{name}")
        })
        .filter(|f| f.len() > 3)
        .collect()
}

#[test]
fn the_flags_reference_names_every_flag_and_no_other() {
    let mut shown = help_flags(&[]);
    for sub in ["run", "plan", "status", "produce", "completions", "man"] {
        shown.extend(help_flags(&[sub]));
    }
    assert!(
        shown.contains("--exec") && shown.contains("--key-separator"),
        "{shown:?}"
    );
    let reference = read(&root().join("docs/flags.md"));
    // The reference's entries: the flags in a table row's first cell.
    let entries: BTreeSet<String> = reference
        .lines()
        .filter_map(|l| l.strip_prefix('|')?.split('|').next())
        .flat_map(long_flags)
        .collect();
    let missing: Vec<_> = shown
        .iter()
        .filter(|f| !["--help", "--version"].contains(&f.as_str()) && !entries.contains(*f))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/flags.md has no row for these flags of `kswarm .. --help`: {missing:?}"
    );
    let unknown: Vec<_> = entries.difference(&shown).collect();
    assert!(
        unknown.is_empty(),
        "docs/flags.md has rows for flags kswarm does not show: {unknown:?}"
    );
}

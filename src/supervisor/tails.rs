//! The last stderr lines of each slot's current process, for the message
//! that ends a crash loop. Pure.

use std::collections::{HashMap, VecDeque};

use super::fleet::Pid;

/// Lines of each slot's stderr kept for the crash-loop message.
pub(super) const STDERR_TAIL: usize = 10;

/// One slot's last lines, and the process they came from.
#[derive(Debug)]
struct Tail {
    pid: Pid,
    lines: VecDeque<String>,
}

#[derive(Debug, Default)]
pub(super) struct Tails(HashMap<u32, Tail>);

impl Tails {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn keep(&mut self, slot: u32, pid: Pid, line: String) {
        let tail = self.0.entry(slot).or_insert_with(|| Tail {
            pid,
            lines: VecDeque::new(),
        });
        if tail.pid != pid {
            // a new process in this slot: its predecessor's lines are history
            tail.pid = pid;
            tail.lines.clear();
        }
        if tail.lines.len() == STDERR_TAIL {
            tail.lines.pop_front();
        }
        tail.lines.push_back(strip_ansi(&line));
    }

    pub fn get(&self, slot: u32) -> Option<&VecDeque<String>> {
        self.0.get(&slot).map(|t| &t.lines)
    }
}

/// Worker logs are colored for a terminal; an error message is not.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_last_lines_of_the_current_process() {
        let mut t = Tails::new();
        t.keep(0, 10, "old".into());
        t.keep(0, 11, "\u{1b}[31mERROR\u{1b}[0m new".into());
        for i in 0..STDERR_TAIL {
            t.keep(1, 20, format!("line {i}"));
        }
        t.keep(1, 20, "last".into());
        assert_eq!(
            t.get(0).unwrap(),
            &VecDeque::from(vec!["ERROR new".to_string()])
        );
        let one = t.get(1).unwrap();
        assert_eq!(one.len(), STDERR_TAIL);
        assert_eq!(one.back().unwrap(), "last");
        assert_eq!(one.front().unwrap(), "line 1");
    }
}

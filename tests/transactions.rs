//! read_committed on a broker with transactions (Apache Kafka; tansu has
//! none): records behind an open transaction wait until it ends, and the
//! records of an aborted one are never delivered. Before this suite ran on
//! Kafka, both were unit-tested only.
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{create_topic, numbered, produce_with, read_lines, wait_for, wait_members, Run};

/// A transaction left open on partition 0 (tests/peers/txn_producer.py).
struct OpenTxn(std::process::Child, BufReader<std::process::ChildStdout>);

impl OpenTxn {
    fn begin(brokers: &str, topic: &str, prefix: &str, n: usize) -> Self {
        Self::begin_with(brokers, &[topic, prefix, &n.to_string()])
    }

    /// The same, and the transaction holds `offset` as `group`'s next
    /// offset of partition 0 of `input`.
    fn with_offset(b: &str, out: &str, group: &str, input: &str, offset: i64) -> Self {
        Self::begin_with(b, &[out, "held", "1", group, input, &offset.to_string()])
    }

    fn begin_with(brokers: &str, args: &[&str]) -> Self {
        let mut child = Command::new(support::python())
            .arg(support::repo_root().join("tests/peers/txn_producer.py"))
            .arg(brokers)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start txn_producer.py");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "open", "the transaction is open");
        OpenTxn(child, out)
    }

    fn end(mut self, how: &str) {
        writeln!(self.0.stdin.as_mut().unwrap(), "{how}").unwrap();
        let mut line = String::new();
        self.1.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "done");
        assert!(self.0.wait().unwrap().success());
    }
}

#[test]
fn records_behind_an_open_transaction_wait_and_aborted_ones_never_come() {
    assert_eq!(
        support::broker_kind(),
        support::Broker::Kafka,
        "a Kafka-only test"
    );
    let b = support::brokers();
    let (topic, group) = (support::unique("txn"), support::unique("g-txn"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handled.txt");
    create_topic(&b, &topic, 1);
    produce_with(&b, &topic, &numbered("before", 50), &[]);
    let handler = format!(
        "while IFS= read -r l; do printf '%s\\n' \"$l\" >> {}; echo ok; done",
        file.display()
    );
    let mut run = Run::new(&topic, &group)
        .format("value")
        .exec(&handler)
        .state(dir.path())
        .spawn();
    wait_members(dir.path(), &group, &topic, 1, Duration::from_secs(60));
    wait_for(Duration::from_secs(30), "the records before", || {
        (read_lines(&file).len() >= 50).then_some(())
    });

    // An open transaction, then plain records behind it.
    let open = OpenTxn::begin(&b, &topic, "open", 20);
    produce_with(&b, &topic, &numbered("behind", 30), &[]);
    std::thread::sleep(Duration::from_secs(4));
    let now = read_lines(&file);
    assert_eq!(
        now.len(),
        50,
        "nothing past the open transaction: {:?}",
        &now[50.min(now.len())..]
    );
    open.end("commit");
    wait_for(
        Duration::from_secs(30),
        "the committed transaction and what stood behind it",
        || (read_lines(&file).len() >= 100).then_some(()),
    );

    // An aborted transaction: its records are skipped, what follows comes.
    let aborted = OpenTxn::begin(&b, &topic, "aborted", 20);
    aborted.end("abort");
    produce_with(&b, &topic, &numbered("after", 10), &[]);
    wait_for(
        Duration::from_secs(30),
        "the records after the aborted transaction",
        || {
            read_lines(&file)
                .iter()
                .any(|l| l == "after-9")
                .then_some(())
        },
    );
    assert_eq!(support::stop(&mut run), Some(0));
    let lines = read_lines(&file);
    let want: Vec<String> = numbered("before", 50)
        .lines()
        .chain(numbered("open", 20).lines())
        .chain(numbered("behind", 30).lines())
        .chain(numbered("after", 10).lines())
        .map(str::to_string)
        .collect();
    assert_eq!(lines, want, "in order, once, and no aborted record");
}

/// KIP-447: a group whose offsets sit in another producer's open
/// transaction (a consume-transform-produce app, or a kswarm worker stopped
/// between its offsets and its commit) is not read from the offset before
/// it: the new owner waits for the transaction to end, then starts where
/// it says. Reading without require_stable started at 0 here and redid 600
/// records that the transaction had made final.
#[test]
fn a_new_owner_waits_for_the_open_transaction_that_holds_its_offsets() {
    assert_eq!(
        support::broker_kind(),
        support::Broker::Kafka,
        "a Kafka-only test"
    );
    let b = support::brokers();
    let (topic, out, group) = (
        support::unique("unst"),
        support::unique("unst-out"),
        support::unique("g-unst"),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handled.txt");
    create_topic(&b, &topic, 1);
    create_topic(&b, &out, 1);
    produce_with(&b, &topic, &numbered("u", 1000), &[]);
    let open = OpenTxn::with_offset(&b, &out, &group, &topic, 600);
    let handler = format!(
        "while IFS= read -r l; do printf '%s\\n' \"$l\" >> {}; echo ok; done",
        file.display()
    );
    let mut run = Run::new(&topic, &group)
        .format("value")
        .exec(&handler)
        .state(dir.path())
        .spawn();
    wait_for(
        Duration::from_secs(60),
        "the wait for the transaction",
        || {
            run.stderr_text()
                .contains("waiting for an open transaction")
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        read_lines(&file),
        Vec::<String>::new(),
        "nothing before the commit"
    );
    open.end("commit");
    wait_for(
        Duration::from_secs(60),
        "the records after the offset",
        || (read_lines(&file).len() >= 400).then_some(()),
    );
    assert_eq!(support::stop(&mut run), Some(0));
    let want: Vec<String> = (600..1000).map(|i| format!("u-{i}")).collect();
    assert_eq!(
        read_lines(&file),
        want,
        "from the transaction's offset, once"
    );
}

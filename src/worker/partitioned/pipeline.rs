//! `--output-topic` in the partitioned worker: the transactional producer
//! started with the worker, the results of each record the handler
//! finished sent into the open transaction, and the commit that ends it
//! with the input offsets (see `worker::output`).

use super::Worker;
use crate::config::WorkerConfig;
use crate::handler::{Judged, Verdict};
use crate::record::OutRecord;
use crate::wire::txn::GroupMetadata;
use crate::worker::error::WorkerError;
use crate::worker::output::{Output, OutputSettings, TxnError};
use crate::worker::verdicts::Reroute;

/// The worker's transactional producer, if `--output-topic` is set.
pub(super) async fn start_output(cfg: &WorkerConfig) -> Result<Option<Output>, WorkerError> {
    let Some(out) = &cfg.consume.output else {
        return Ok(None);
    };
    let settings = OutputSettings {
        brokers: cfg.connect.brokers.clone(),
        client_id: crate::group_size::client_id(cfg.slot, cfg.host_workers, &cfg.host_id),
        connect_timeout: cfg.connect.connect_timeout,
        transactional_id: crate::group_size::transactional_id(
            &cfg.consume.group,
            &cfg.topic,
            &cfg.host_id,
            cfg.slot,
        ),
        transaction_timeout: out.transaction_timeout,
        output_topic: out.topic.clone(),
        dead_letter_topic: cfg
            .consume
            .verdicts
            .as_ref()
            .and_then(|v| v.dead_letter_topic.clone()),
        group: cfg.consume.group.clone(),
        input_topic: cfg.topic.clone(),
        window: out.transaction_timeout,
    };
    Output::start(settings).await.map(Some).map_err(txn_error)
}

/// A transaction failure for the worker's exit: a flag or a record at
/// fault is a configuration error; the rest are restarted.
pub(super) fn txn_error(e: TxnError) -> WorkerError {
    match e {
        TxnError::Fatal(m) => WorkerError::Config(format!("--output-topic: {m}")),
        TxnError::Aborted(m) | TxnError::GroupMoved(m) => WorkerError::Other(anyhow::anyhow!(
            "--output-topic: the transaction was aborted ({m}); its records are handled again by \
             whoever owns their partitions next, and none of its results are visible to \
             read_committed readers"
        )),
    }
}

impl Worker {
    /// The results of the records the handler finished `ok` go into the
    /// open transaction (those of a retried or rejected record are dropped).
    pub(super) async fn emit(&mut self, judged: &mut [Judged]) -> Result<(), WorkerError> {
        let Some(out) = self.output.as_mut() else {
            return Ok(());
        };
        for j in judged.iter_mut().filter(|j| j.verdict == Verdict::Ok) {
            let results = std::mem::take(&mut j.results);
            out.send(j.partition, results, false)
                .await
                .map_err(txn_error)?;
        }
        Ok(())
    }

    /// `--output-topic`: a dead-letter copy goes into the open transaction
    /// (so its original counts as done at once). False without output.
    pub(super) async fn dead_letter_in_txn(&mut self, d: &Reroute) -> Result<bool, WorkerError> {
        let Some(out) = self.output.as_mut() else {
            return Ok(false);
        };
        let copy = crate::worker::copies::copy_of(
            d,
            &self.core.cfg.topic,
            &self.core.cfg.consume.group,
            None,
        );
        let record = OutRecord {
            key: copy.key.map(Into::into),
            value: copy.value.map(Into::into),
            headers: copy
                .headers
                .into_iter()
                .map(|(k, v)| (k, Some(v.into())))
                .collect(),
        };
        out.send(d.record.partition, vec![record], true)
            .await
            .map_err(txn_error)?;
        Ok(true)
    }

    /// The member as TxnOffsetCommit must name it (KIP-447).
    pub(super) fn group_metadata(&self) -> GroupMetadata {
        GroupMetadata {
            group: self.core.cfg.consume.group.clone(),
            member_id: self.member.member_id().to_string(),
            generation: self.member.generation_id(),
            instance_id: self.member.settings().instance_id.clone(),
        }
    }

    /// The transaction failure that must stop the worker, if one happened.
    pub(super) fn output_failure(&self) -> Option<WorkerError> {
        let e = self.output.as_ref()?.failure()?;
        Some(txn_error(e.clone()))
    }
}

//! The one writer: takes rows from the bounded queue in batches (whatever has arrived, up to
//! `BATCH`) and writes each batch in one transaction. A request only ever does a `try_send`; when
//! the queue is full or the database fails, rows are dropped and counted, never waited for.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::store::Store;
use super::{DeploymentRow, Message, Row};

/// Rows per transaction at most: large enough that one commit serves thousands of cached answers.
const BATCH: usize = 2000;
/// How long the writer lets rows gather after the first of a batch: a transaction per few rows
/// costs more than the rows (BENCHMARKS.md); rows show in the history at most this much later.
const LINGER: std::time::Duration = Duration::from_millis(50);
/// After a failed write, the writer waits before the next try (doubling up to the maximum): a
/// database that is down is not hammered, and meanwhile the queue fills and rows are dropped.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// With no rows to write for this long, the writer checks the database is still there.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// Health stays "degraded" this long after the last dropped row.
const DEGRADED_FOR_MS: u64 = 10_000;

pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What the writer did, read by /health, /metrics and /system_status.
#[derive(Debug, Default)]
pub struct State {
    pub written: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_store_error: AtomicU64,
    pub pruned: AtomicU64,
    up: AtomicBool,
    migrated: AtomicBool,
    last_drop_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl State {
    pub fn dropped(&self, rows: u64, queue_full: bool) {
        let counter = if queue_full { &self.dropped_queue_full } else { &self.dropped_store_error };
        counter.fetch_add(rows, Ordering::Relaxed);
        self.last_drop_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Up, and no row dropped lately.
    pub fn healthy(&self) -> bool {
        self.up.load(Ordering::Relaxed)
            && now_ms().saturating_sub(self.last_drop_ms.load(Ordering::Relaxed)) > DEGRADED_FOR_MS
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("history state").clone()
    }

    fn went(&self, up: bool, error: Option<String>) {
        let was = self.up.swap(up, Ordering::Relaxed);
        match (&error, was != up) {
            (Some(e), true) => tracing::warn!(error = %e, "history store down: rows are dropped until it is back"),
            (None, true) => tracing::info!("history store up: rows are written again"),
            _ => {}
        }
        if error.is_some() {
            *self.last_error.lock().expect("history state") = error;
        }
    }
}

pub struct Writer {
    pub store: Store,
    pub state: std::sync::Arc<State>,
    pub receiver: mpsc::Receiver<Message>,
    pub replica: String,
    pub retention: Duration,
    pub max_rows: u64,
    pub prune_every: Duration,
}

impl Writer {
    /// Runs the schema's migrations if they have not run yet; true when the store is usable.
    pub async fn ready(&self) -> bool {
        if self.state.migrated.load(Ordering::Relaxed) {
            return true;
        }
        match self.store.migrate().await {
            Ok(()) => {
                self.state.migrated.store(true, Ordering::Relaxed);
                self.state.went(true, None);
                true
            }
            Err(e) => {
                self.state.went(false, Some(format!("cannot migrate the {} store: {e}", self.store.kind())));
                false
            }
        }
    }

    /// Until every sender is gone (the server stopped).
    pub async fn run(mut self) {
        let mut prune = tokio::time::interval(self.prune_every);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = FIRST_BACKOFF;
        // A full batch last time: rows are waiting already, no need to let them gather.
        let mut behind = false;
        loop {
            let message = tokio::select! {
                message = self.receiver.recv() => message,
                _ = prune.tick() => {
                    self.prune().await;
                    continue;
                }
                () = tokio::time::sleep(PROBE_EVERY) => {
                    self.probe().await;
                    continue;
                }
            };
            let Some(first) = message else { return };
            // What arrives within LINGER joins the batch. The writer sleeps meanwhile instead of
            // waiting on the queue, so senders do not wake it (a thread wake-up per row cost more
            // CPU than writing the row).
            if !behind && !matches!(first, Message::Flush(_)) {
                tokio::time::sleep(LINGER).await;
            }
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match self.receiver.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
            behind = batch.len() == BATCH;
            if self.write(batch).await {
                backoff = FIRST_BACKOFF;
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// False when the batch was dropped.
    async fn write(&self, batch: Vec<Message>) -> bool {
        let (mut rows, mut deployments, mut flushes): (Vec<Row>, Vec<DeploymentRow>, Vec<_>) = Default::default();
        for message in batch {
            match message {
                Message::Prediction(row) => rows.push(row),
                Message::Deployment(entry) => deployments.push(entry),
                Message::Flush(ack) => flushes.push(ack),
            }
        }
        let count = (rows.len() + deployments.len()) as u64;
        let mut ok = true;
        if count > 0 {
            ok = self.ready().await;
            if ok {
                match self.store.insert(&self.replica, &rows, &deployments).await {
                    Ok(()) => {
                        self.state.written.fetch_add(rows.len() as u64, Ordering::Relaxed);
                        self.state.went(true, None);
                    }
                    Err(e) => {
                        self.state.went(false, Some(format!("cannot write to the {} store: {e}", self.store.kind())));
                        ok = false;
                    }
                }
            }
            if !ok {
                self.state.dropped(count, false);
            }
        }
        for ack in flushes {
            let _ = ack.send(());
        }
        ok
    }

    async fn probe(&self) {
        if !self.ready().await {
            return;
        }
        match self.store.ping().await {
            Ok(()) => self.state.went(true, None),
            Err(e) => self.state.went(false, Some(format!("cannot reach the {} store: {e}", self.store.kind()))),
        }
    }

    async fn prune(&self) {
        if !self.ready().await {
            return;
        }
        let before_us = (now_ms().saturating_sub(self.retention.as_millis() as u64) as i64).saturating_mul(1000);
        match self.store.prune(before_us, self.max_rows.min(i64::MAX as u64) as i64).await {
            Ok(removed) => {
                self.state.pruned.fetch_add(removed, Ordering::Relaxed);
                if removed > 0 {
                    tracing::info!(removed, "history pruned");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot prune the history"),
        }
    }
}

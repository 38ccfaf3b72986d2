//! The inference history: every prediction (single, batch item, v2 input, shadow run) and every
//! deployment, in SQLite (default: a file in `--data-dir`) or PostgreSQL (`--history-url`, which
//! replicas share). Requests never wait for it: rows go through a bounded queue to one writer on a
//! thread of its own (with its own runtime, so the pool's connections live in one place whatever
//! actix-web's workers do). A full queue or a failing database drops rows and counts them; the
//! server keeps answering, `/health` says `history: degraded`, and writing resumes by itself.
pub mod row;
mod stats;
mod store;
mod target;
mod writer;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

pub use row::{Cursor, Filter, Role, Row, StoredRow, DEFAULT_LIMIT, MAX_LIMIT};
pub use stats::Stats;
use store::Store;
pub use target::{HistoryUrl, Target};
pub use writer::{now_ms, now_us};
use writer::{State, Writer};

#[derive(Debug, Clone)]
pub struct HistorySettings {
    pub target: Target,
    pub store_text: bool,
    pub retention: Duration,
    pub max_rows: u64,
    pub queue_capacity: usize,
    pub prune_every: Duration,
    /// Names this server in its rows (replicas sharing a store tell theirs apart).
    pub replica: String,
}

/// A deployment log entry as stored (and read back from every replica).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeploymentRow {
    pub at_ms: i64,
    /// The replica that acted (rows read from the store only).
    #[sqlx(default)]
    #[schema(required = false)]
    pub replica: String,
    #[serde(rename = "by")]
    pub by_whom: String,
    pub action: String,
    pub model: String,
    pub version: Option<String>,
    pub alias: Option<String>,
    #[serde(rename = "from")]
    pub from_version: Option<String>,
    pub reason: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
    pub duration_ms: f64,
}

pub enum Message {
    Prediction(Row),
    Deployment(DeploymentRow),
    /// Answered once everything queued before it is written (or dropped).
    Flush(oneshot::Sender<()>),
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("the inference history is off (--history-url off)")]
    Off,
    #[error("the history store cannot be read now: {0}")]
    Unavailable(String),
}

/// A page of `GET /inference/history`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page {
    pub rows: Vec<Entry>,
    /// Pass as `cursor` for the next (older) page; null on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Entry {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    #[serde(flatten)]
    pub row: StoredRow,
    /// The five most probable classes, `[{label, probability}]`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub top_k: Option<serde_json::Value>,
}

/// off, ok or degraded, as `/health` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Off,
    Ok,
    Degraded,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Counts {
    pub written: u64,
    pub dropped_queue_full: u64,
    pub dropped_store_error: u64,
    pub pruned: u64,
    pub queued: usize,
}

/// The handle the predictor and the routes hold; cheap to clone.
#[derive(Clone)]
pub struct History {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    queue: mpsc::Sender<Message>,
    state: Arc<State>,
    store: Store,
    runtime: tokio::runtime::Handle,
    store_text: bool,
    capacity: usize,
}

/// How long start-up waits for the store's first migration: a database that is down at start
/// makes the history degraded, not the server late.
const START_WAIT: Duration = Duration::from_secs(10);

impl History {
    pub fn off() -> Self {
        Self { shared: None }
    }

    /// Starts the writer's thread; returns once the store is migrated (or found down).
    pub async fn start(settings: HistorySettings) -> anyhow::Result<Self> {
        if settings.target == Target::Off {
            return Ok(Self::off());
        }
        let capacity = settings.queue_capacity.max(1);
        let (queue, receiver) = mpsc::channel(capacity);
        let (ready_tx, ready_rx) = oneshot::channel();
        let (target, store_text) = (settings.target.clone(), settings.store_text);
        let state = Arc::new(State::default());
        let writer_state = state.clone();
        std::thread::Builder::new().name("history".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return drop(ready_tx.send(Err(anyhow::anyhow!("cannot start the history runtime: {e}")))),
            };
            // The pool spawns its upkeep tasks: it is made inside the runtime it will live in.
            let store = runtime.block_on(async {
                match &target {
                    Target::Sqlite(path) => Store::sqlite(path),
                    Target::Postgres(url) => Store::postgres(url),
                    Target::Off => Err(sqlx::Error::Configuration("the history is off".into())),
                }
            });
            let store = match store {
                Ok(store) => store,
                Err(e) => return drop(ready_tx.send(Err(anyhow::anyhow!("cannot open the history store: {e}")))),
            };
            let writer = Writer {
                store: store.clone(),
                state: writer_state,
                receiver,
                replica: settings.replica,
                retention: settings.retention,
                max_rows: settings.max_rows,
                prune_every: settings.prune_every,
            };
            runtime.block_on(async {
                let _ = tokio::time::timeout(START_WAIT, writer.ready()).await;
                let _ = ready_tx.send(Ok((store, tokio::runtime::Handle::current())));
                writer.run().await;
            });
        })?;
        let (store, runtime) = ready_rx.await.map_err(|_| anyhow::anyhow!("the history thread ended at start"))??;
        match state.last_error() {
            None => tracing::info!(store = store.kind(), "history store open"),
            Some(e) => tracing::warn!(store = store.kind(), error = %e, "history store degraded at start"),
        }
        let shared = Shared { queue, state, store, runtime, store_text, capacity };
        Ok(Self { shared: Some(Arc::new(shared)) })
    }

    /// Never waits: a full queue drops the row (counted).
    pub fn record(&self, row: Row) {
        self.send(Message::Prediction(row), 1);
    }

    pub fn record_deployment(&self, entry: DeploymentRow) {
        self.send(Message::Deployment(entry), 1);
    }

    fn send(&self, message: Message, rows: u64) {
        let Some(shared) = &self.shared else { return };
        if shared.queue.try_send(message).is_err() {
            shared.state.dropped(rows, true);
        }
    }

    pub fn is_on(&self) -> bool {
        self.shared.is_some()
    }

    /// Whether rows may keep the request's text (`--history-store-text`).
    pub fn stores_text(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.store_text)
    }

    pub fn status(&self) -> Status {
        match &self.shared {
            None => Status::Off,
            Some(s) if s.state.healthy() => Status::Ok,
            Some(_) => Status::Degraded,
        }
    }

    pub fn store_kind(&self) -> Option<&'static str> {
        self.shared.as_ref().map(|s| s.store.kind())
    }

    pub fn last_error(&self) -> Option<String> {
        self.shared.as_ref().and_then(|s| s.state.last_error())
    }

    pub fn counts(&self) -> Option<Counts> {
        let s = self.shared.as_ref()?;
        Some(Counts {
            written: s.state.written.load(Ordering::Relaxed),
            dropped_queue_full: s.state.dropped_queue_full.load(Ordering::Relaxed),
            dropped_store_error: s.state.dropped_store_error.load(Ordering::Relaxed),
            pruned: s.state.pruned.load(Ordering::Relaxed),
            queued: s.capacity - s.queue.capacity(),
        })
    }

    /// Waits (up to `timeout`) until what was queued before is written: at shutdown, and in tests.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let Some(shared) = &self.shared else { return true };
        let (ack, done) = oneshot::channel();
        let flushed = async { shared.queue.send(Message::Flush(ack)).await.is_ok() && done.await.is_ok() };
        tokio::time::timeout(timeout, flushed).await.unwrap_or(false)
    }

    /// Runs a query on the history's own runtime, where its pool lives.
    async fn query<T: Send + 'static>(
        &self,
        run: impl FnOnce(Store) -> futures_util::future::BoxFuture<'static, Result<T, sqlx::Error>> + Send + 'static,
    ) -> Result<T, HistoryError> {
        let shared = self.shared.as_ref().ok_or(HistoryError::Off)?;
        let store = shared.store.clone();
        shared
            .runtime
            .spawn(async move { run(store).await })
            .await
            .map_err(|e| HistoryError::Unavailable(format!("the query task failed: {e}")))?
            .map_err(|e| HistoryError::Unavailable(e.to_string()))
    }

    /// One page, newest first; `limit` already checked (1..=1000).
    pub async fn page(&self, filter: Filter, cursor: Option<Cursor>, limit: u32) -> Result<Page, HistoryError> {
        let mut rows =
            self.query(move |store| Box::pin(async move { store.page(&filter, cursor, limit + 1).await })).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = rows.last().filter(|_| more).map(|last| Cursor { at_us: last.at_us, id: last.id }.encode());
        let rows = rows
            .into_iter()
            .map(|row| Entry {
                at_ms: row.at_us / 1000,
                top_k: row.top_k.as_deref().and_then(|t| serde_json::from_str(t).ok()),
                row,
            })
            .collect();
        Ok(Page { rows, next_cursor })
    }

    pub async fn stats(&self, since_ms: i64, until_ms: i64) -> Result<Stats, HistoryError> {
        self.query(move |store| Box::pin(async move { stats::compute(&store, since_ms, until_ms).await })).await
    }

    pub async fn deployments(&self, limit: i64) -> Result<Vec<DeploymentRow>, HistoryError> {
        self.query(move |store| Box::pin(async move { store.deployments(limit).await })).await
    }
}

//! The deployment log: every change to what the server serves (load, unload, alias, rollback,
//! reload, eviction), with its time, its caller and its outcome. Appended as JSON lines to a file
//! in the data folder, so it survives restarts; the last entries are kept in memory for
//! `GET /deployments`.
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Entries kept in memory (and read back at start).
pub const KEPT: usize = 1000;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deployment {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who asked: "token" or "loopback" and the peer address, or "server" for its own decisions.
    pub by: String,
    /// load, unload, evict, alias, unalias, rollback, routing, canary_abort, reload, import.
    pub action: String,
    pub model: String,
    pub version: Option<String>,
    pub alias: Option<String>,
    /// The version the alias pointed at before.
    pub from: Option<String>,
    /// Why the server acted on its own (a canary abort).
    #[serde(default)]
    pub reason: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
    pub duration_ms: f64,
}

/// Where else each entry goes (the history store, shared by replicas); the file stays the
/// replica's own record, written whatever becomes of the copy.
pub type AuditSink = Box<dyn Fn(&Deployment) + Send + Sync>;

pub struct AuditLog {
    path: PathBuf,
    recent: Mutex<VecDeque<Deployment>>,
    sink: Option<AuditSink>,
}

impl AuditLog {
    /// Reads the last entries back; lines that do not parse are skipped with a warning.
    pub fn open(path: &Path, sink: Option<AuditSink>) -> Self {
        let mut recent = VecDeque::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<Deployment>(line) {
                    Ok(entry) => {
                        if recent.len() == KEPT {
                            recent.pop_front();
                        }
                        recent.push_back(entry);
                    }
                    Err(e) => tracing::warn!(file = %path.display(), error = %e, "skipping a deployment log line"),
                }
            }
        }
        Self { path: path.to_path_buf(), recent: Mutex::new(recent), sink }
    }

    pub fn record(&self, entry: Deployment) {
        tracing::info!(action = %entry.action, model = %entry.model, version = ?entry.version, alias = ?entry.alias, by = %entry.by, ok = entry.ok, error = ?entry.error, "deployment");
        if let Err(e) = self.append(&entry) {
            tracing::error!(file = %self.path.display(), error = %e, "cannot write the deployment log");
        }
        if let Some(sink) = &self.sink {
            sink(&entry);
        }
        let mut recent = self.recent.lock().expect("audit lock");
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(entry);
    }

    fn append(&self, entry: &Deployment) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // One write of a whole line in append mode: lines never interleave.
        std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?.write_all(&line)
    }

    /// The newest `limit` entries, newest first.
    pub fn newest(&self, limit: usize) -> Vec<Deployment> {
        self.recent.lock().expect("audit lock").iter().rev().take(limit).cloned().collect()
    }
}

//! The second level of the prediction cache: Redis, shared by the replicas (`--redis-url`).
//!
//! Redis slow or down never fails a request: a lookup waits at most `--redis-timeout-ms`, a write
//! is handed over and never awaited, and after `TRIP_AFTER` failures in a row the breaker opens and
//! requests skip Redis for `OPEN_FOR` (one is let through then to see whether it is back).
//! The connection lives on a thread with its own runtime, as the history's pool does: actix-web
//! runs one runtime per worker, and a connection's driver belongs to the runtime that made it.
//!
//! Anyone who reaches Redis can write an entry, and anyone can compute a key (every answer shows
//! the model's fingerprint), so each value ends with an HMAC-SHA256 over its key and its bytes,
//! under the secret the replicas share (--cache-secret): an entry without a valid one, forged,
//! damaged or copied under another key, is a miss, counted as `forged`.
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};

/// Failures in a row that open the breaker, and how long it stays open.
const TRIP_AFTER: u32 = 3;
const OPEN_FOR: Duration = Duration::from_secs(5);
/// Lookups and writes waiting for the Redis thread; past it they are skipped (counted).
const QUEUE: usize = 4096;

#[derive(Clone)]
pub struct SharedSettings {
    pub url: String,
    pub timeout: Duration,
    pub ttl_seconds: u64,
    pub secret: crate::secret::Secret,
}

/// Bytes of the signature at the end of each value.
const TAG_BYTES: usize = 32;

enum Op {
    Get(String, oneshot::Sender<redis::RedisResult<Option<Vec<u8>>>>),
    Set(String, Vec<u8>),
}

/// What the shared level did, for /metrics.
#[derive(Debug, Default)]
pub struct SharedCounts {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    /// Lookups not sent: the breaker was open or the queue full.
    pub skipped: AtomicU64,
    /// Entries that did not decode (another format, or labels that are not the version's):
    /// treated as misses.
    pub undecodable: AtomicU64,
    /// Entries whose signature is not the shared secret's over their key and bytes: misses.
    pub forged: AtomicU64,
    pub written: AtomicU64,
    pub write_errors: AtomicU64,
    pub writes_skipped: AtomicU64,
}

/// Closed while Redis answers; open (requests skip it) for `OPEN_FOR` after `TRIP_AFTER` failures.
#[derive(Debug, Default)]
struct Breaker {
    failures: AtomicU32,
    // Milliseconds since `epoch` until which the breaker is open; 0: closed.
    open_until_ms: AtomicU64,
}

impl Breaker {
    fn allows(&self, now_ms: u64) -> bool {
        now_ms >= self.open_until_ms.load(Ordering::Relaxed)
    }

    fn succeeded(&self) {
        if self.failures.swap(0, Ordering::Relaxed) >= TRIP_AFTER {
            tracing::info!("shared cache (Redis) answers again: breaker closed");
        }
        self.open_until_ms.store(0, Ordering::Relaxed);
    }

    fn failed(&self, now_ms: u64, error: &dyn std::fmt::Display) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= TRIP_AFTER {
            // Half-open after the pause: the next request goes through, and one more failure reopens.
            self.open_until_ms.store(now_ms + OPEN_FOR.as_millis() as u64, Ordering::Relaxed);
            if failures == TRIP_AFTER {
                tracing::warn!(%error, "shared cache (Redis) failing: breaker open, requests use the local cache only");
            }
        }
    }
}

#[derive(Clone)]
pub struct SharedCache {
    ops: mpsc::Sender<Op>,
    breaker: Arc<Breaker>,
    pub counts: Arc<SharedCounts>,
    timeout: Duration,
    epoch: Instant,
    mac: Hmac<Sha256>,
}

impl SharedCache {
    /// Starts the Redis thread; nothing is connected yet (the first request connects), so a Redis
    /// that is down at start delays nothing.
    pub fn start(settings: SharedSettings) -> anyhow::Result<Self> {
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| anyhow::anyhow!("--redis-url is not a Redis URL: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(settings.timeout))
            // Reconnects are retried by the next request, not in a loop that holds one.
            .set_number_of_retries(1);
        let (ops, receiver) = mpsc::channel(QUEUE);
        let cache = Self {
            ops,
            breaker: Arc::default(),
            counts: Arc::default(),
            timeout: settings.timeout,
            epoch: Instant::now(),
            mac: Hmac::new_from_slice(settings.secret.digest()).expect("HMAC takes a key of any length"),
        };
        let (breaker, counts, epoch, ttl) =
            (cache.breaker.clone(), cache.counts.clone(), cache.epoch, settings.ttl_seconds);
        std::thread::Builder::new().name("redis".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("redis runtime");
            runtime.block_on(async move {
                let manager = match ConnectionManager::new_lazy_with_config(client, config) {
                    Ok(manager) => manager,
                    Err(e) => return tracing::error!(error = %e, "shared cache (Redis) cannot start: off"),
                };
                serve(receiver, manager, Outcomes { breaker, counts, epoch, ttl }).await;
            });
        })?;
        Ok(cache)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Up while the breaker is closed.
    pub fn up(&self) -> bool {
        self.breaker.failures.load(Ordering::Relaxed) < TRIP_AFTER
    }

    /// The value under `key`, or None (a miss, Redis down, slow or skipped: all the same to the caller).
    pub async fn get(&self, key: String) -> Option<Vec<u8>> {
        let counts = &self.counts;
        if !self.breaker.allows(self.now_ms()) {
            counts.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let signed = self.signer(&key);
        let (reply, answer) = oneshot::channel();
        if self.ops.try_send(Op::Get(key, reply)).is_err() {
            counts.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(Ok(None))) => {
                counts.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            Ok(Ok(Ok(Some(mut value)))) => {
                let Some(body) = value.len().checked_sub(TAG_BYTES) else {
                    counts.forged.fetch_add(1, Ordering::Relaxed);
                    return None;
                };
                let tag = value.split_off(body);
                let mut signed = signed;
                signed.update(&value);
                if signed.verify_slice(&tag).is_err() {
                    counts.forged.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                counts.hits.fetch_add(1, Ordering::Relaxed);
                Some(value)
            }
            Ok(Ok(Err(_))) | Ok(Err(_)) => {
                counts.errors.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(_) => {
                // The Redis thread's own response timeout (the same) counts it for the breaker.
                counts.timeouts.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// The MAC with `key` (length first, so that no key and value can be cut another way) fed in.
    fn signer(&self, key: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(&(key.len() as u64).to_le_bytes());
        mac.update(key.as_bytes());
        mac
    }

    /// Stores `value`, signed, under `key` with the TTL, in the background.
    pub fn set(&self, key: String, mut value: Vec<u8>) {
        let mut signed = self.signer(&key);
        signed.update(&value);
        value.extend(signed.finalize().into_bytes());
        if !self.breaker.allows(self.now_ms()) || self.ops.try_send(Op::Set(key, value)).is_err() {
            self.counts.writes_skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the Redis thread reports into.
#[derive(Clone)]
struct Outcomes {
    breaker: Arc<Breaker>,
    counts: Arc<SharedCounts>,
    epoch: Instant,
    ttl: u64,
}

impl Outcomes {
    fn record<T>(&self, result: &redis::RedisResult<T>) {
        match result {
            Ok(_) => self.breaker.succeeded(),
            Err(e) => {
                tracing::debug!(error = %e, "shared cache (Redis) command failed");
                self.breaker.failed(self.epoch.elapsed().as_millis() as u64, e);
            }
        }
    }
}

/// Each command on its own task: the connection pipelines them, so a slow one holds no other.
async fn serve(mut receiver: mpsc::Receiver<Op>, manager: ConnectionManager, outcomes: Outcomes) {
    while let Some(op) = receiver.recv().await {
        let (mut connection, outcomes) = (manager.clone(), outcomes.clone());
        tokio::spawn(async move {
            match op {
                Op::Get(key, reply) => {
                    let result: redis::RedisResult<Option<Vec<u8>>> = connection.get(&key).await;
                    outcomes.record(&result);
                    let _ = reply.send(result);
                }
                Op::Set(key, value) => {
                    let result: redis::RedisResult<()> = connection.set_ex(&key, value, outcomes.ttl).await;
                    outcomes.record(&result);
                    let counter = if result.is_ok() { &outcomes.counts.written } else { &outcomes.counts.write_errors };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_three_failures_and_lets_one_through_after_the_pause() {
        let breaker = Breaker::default();
        let open = OPEN_FOR.as_millis() as u64;
        breaker.failed(0, &"x");
        breaker.failed(1, &"x");
        assert!(breaker.allows(2), "two failures: still closed");
        breaker.failed(2, &"x");
        assert!(!breaker.allows(3) && !breaker.allows(2 + open - 1), "open for the pause");
        assert!(breaker.allows(2 + open), "half-open after it");
        breaker.failed(2 + open, &"x");
        assert!(!breaker.allows(3 + open), "one more failure reopens");
        breaker.succeeded();
        assert!(breaker.allows(4 + open) && breaker.failures.load(Ordering::Relaxed) == 0);
    }
}

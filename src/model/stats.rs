//! A loaded version's own statistics: requests, errors, cache hits, latency quantiles since load
//! and over the last five minutes (HdrHistogram: 3 significant digits in a few KB, whatever the
//! traffic), the labels it answered and its mean confidence. They live in the loaded model, so they
//! start at its load and go with it.
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// The recent window is kept as slots of this many seconds: "last 5 minutes" is the last ten.
const SLOT_SECONDS: u64 = 30;
const WINDOW_SLOTS: u64 = 10;

pub struct VersionStats {
    started: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    all: Counts,
    /// (slot number since load, counts in it), oldest first.
    recent: VecDeque<(u64, Counts)>,
    labels: BTreeMap<String, u64>,
    confidence_sum: f64,
}

#[derive(Clone)]
struct Counts {
    requests: u64,
    errors: u64,
    cache_hits: u64,
    latency_us: Histogram<u64>,
}

impl Counts {
    fn new() -> Self {
        // 1 µs to 10 min: every latency a request can have within the largest deadline.
        let latency_us = Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds");
        Self { requests: 0, errors: 0, cache_hits: 0, latency_us }
    }
}

/// One prediction's outcome, as the stats see it.
pub enum Recorded<'a> {
    Answer { latency: Duration, cache_hit: bool, label: &'a str, confidence: f32 },
    Error,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsReport {
    pub since_load: WindowReport,
    pub last_5_minutes: WindowReport,
    /// Answers per top label since load.
    pub labels: BTreeMap<String, u64>,
    /// Mean confidence of the top label over the answers since load; null before the first.
    pub mean_confidence: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WindowReport {
    /// Predictions asked of this version (answers and errors).
    pub requests: u64,
    pub errors: u64,
    pub cache_hits: u64,
    /// Quantiles of answered predictions' latency (from the upload's arrival to the answer);
    /// null without answers.
    pub latency_ms: Option<Quantiles>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Quantiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Default for VersionStats {
    fn default() -> Self {
        let inner = Inner { all: Counts::new(), recent: VecDeque::new(), labels: BTreeMap::new(), confidence_sum: 0.0 };
        Self { started: Instant::now(), inner: Mutex::new(inner) }
    }
}

impl VersionStats {
    pub fn record(&self, outcome: Recorded) {
        let slot = self.started.elapsed().as_secs() / SLOT_SECONDS;
        let mut inner = self.inner.lock().expect("stats lock");
        if inner.recent.back().is_none_or(|(s, _)| *s != slot) {
            inner.recent.push_back((slot, Counts::new()));
            while inner.recent.front().is_some_and(|(s, _)| s + WINDOW_SLOTS <= slot) {
                inner.recent.pop_front();
            }
        }
        let Inner { all, recent, labels, confidence_sum } = &mut *inner;
        let current = &mut recent.back_mut().expect("a current slot").1;
        for counts in [all, current] {
            counts.requests += 1;
            match &outcome {
                Recorded::Error => counts.errors += 1,
                Recorded::Answer { latency, cache_hit, .. } => {
                    counts.cache_hits += u64::from(*cache_hit);
                    counts.latency_us.saturating_record(latency.as_micros().max(1) as u64);
                }
            }
        }
        if let Recorded::Answer { label, confidence, .. } = outcome {
            *labels.entry(label.to_string()).or_default() += 1;
            *confidence_sum += f64::from(confidence);
        }
    }

    pub fn report(&self) -> StatsReport {
        let slot = self.started.elapsed().as_secs() / SLOT_SECONDS;
        let inner = self.inner.lock().expect("stats lock");
        let mut recent = Counts::new();
        for (_, counts) in inner.recent.iter().filter(|(s, _)| s + WINDOW_SLOTS > slot) {
            recent.requests += counts.requests;
            recent.errors += counts.errors;
            recent.cache_hits += counts.cache_hits;
            let _ = recent.latency_us.add(&counts.latency_us);
        }
        let answers = inner.all.requests - inner.all.errors;
        StatsReport {
            since_load: window(&inner.all),
            last_5_minutes: window(&recent),
            labels: inner.labels.clone(),
            mean_confidence: (answers > 0).then(|| inner.confidence_sum / answers as f64),
        }
    }
}

fn window(counts: &Counts) -> WindowReport {
    let h = &counts.latency_us;
    let at = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    WindowReport {
        requests: counts.requests,
        errors: counts.errors,
        cache_hits: counts.cache_hits,
        latency_ms: (!h.is_empty()).then(|| Quantiles { p50: at(0.5), p95: at(0.95), p99: at(0.99) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_quantiles_add_up() {
        let stats = VersionStats::default();
        for ms in 1..=100u64 {
            let label = if ms % 4 == 0 { "pizza" } else { "espresso" };
            let answer = Recorded::Answer {
                latency: Duration::from_millis(ms),
                cache_hit: ms % 10 == 0,
                label,
                confidence: 0.5,
            };
            stats.record(answer);
        }
        stats.record(Recorded::Error);
        let report = stats.report();
        let all = &report.since_load;
        assert_eq!((all.requests, all.errors, all.cache_hits), (101, 1, 10));
        let latency = all.latency_ms.as_ref().unwrap();
        assert!((49.0..=51.0).contains(&latency.p50) && (98.0..=100.1).contains(&latency.p99), "{latency:?}");
        assert_eq!(report.last_5_minutes.requests, 101);
        assert_eq!((report.labels["pizza"], report.labels["espresso"]), (25, 75));
        assert_eq!(report.mean_confidence, Some(0.5));
    }
}

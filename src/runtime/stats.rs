//! A loaded version's own statistics: requests, errors, cache hits, latency quantiles since load
//! and over the last five minutes (HdrHistogram: 3 significant digits in a few KB, whatever the
//! traffic), the labels it answered and its mean confidence. They live in the loaded model, so they
//! start at its load and go with it.
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// Counts and summed durations as Triton's statistics extension reports them.
    protocol: ProtocolTotals,
    last_answer_unix_ms: u64,
    /// (slot number since load, counts in it), oldest first.
    recent: VecDeque<(u64, Counts)>,
    labels: BTreeMap<String, u64>,
    confidence_sum: f64,
    /// Shadow comparisons this version took part in: (its role, the other version) -> counts.
    pairs: BTreeMap<(&'static str, String), Pair>,
    /// The latest outcomes (failed, latency ms) and shadow agreements, for the canary check.
    latest: VecDeque<(bool, f64)>,
    latest_agreement: VecDeque<bool>,
}

/// The most a canary window can judge.
const LATEST: usize = 1000;

/// A canary's latest `size` predictions and shadow comparisons, as the abort check sees them:
/// each part only once there are that many.
#[derive(Debug)]
pub struct Window {
    /// (error rate, p95 latency in ms) over the latest predictions.
    pub predictions: Option<(f64, f64)>,
    /// Top-1 agreement over the latest comparisons.
    pub agreement: Option<f64>,
}

#[derive(Default)]
struct Pair {
    compared: u64,
    agreed: u64,
    /// Sum of (shadow's top-1 confidence - primary's).
    confidence_difference: f64,
}

/// A version's comparisons with another one, on mirrored requests.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PairReport {
    /// This version's role in the pair: primary (answered the client) or shadow (the mirror).
    pub role: &'static str,
    pub other_version: String,
    pub compared: u64,
    /// Share of comparisons where both gave the same top-1 label.
    pub top1_agreement: f64,
    /// Mean of the shadow's top-1 confidence minus the primary's.
    pub mean_confidence_difference: f64,
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
    Answer { latency: Duration, cache_hit: bool, label: &'a str, confidence: f32, stages: Stages },
    Error { latency: Duration },
}

/// The stages a prediction went through (none for a cache hit): queue wait, preprocessing, forward pass.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stages {
    pub queue: Option<Duration>,
    pub preprocess: Option<Duration>,
    pub inference: Option<Duration>,
}

/// A count and the time it took in all, in nanoseconds (the statistics extension's `{count, ns}`).
#[derive(Debug, Default, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub count: u64,
    pub ns: u64,
}

impl Totals {
    fn add(&mut self, took: Duration) {
        self.count += 1;
        self.ns += took.as_nanos() as u64;
    }
}

/// What Triton's statistics extension reports for a model version.
#[derive(Debug, Default, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct ProtocolTotals {
    pub success: Totals,
    pub fail: Totals,
    pub queue: Totals,
    pub compute_input: Totals,
    pub compute_infer: Totals,
    pub compute_output: Totals,
    pub cache_hit: Totals,
    pub cache_miss: Totals,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsReport {
    pub since_load: WindowReport,
    pub last_5_minutes: WindowReport,
    /// Answers per top label since load.
    pub labels: BTreeMap<String, u64>,
    /// Mean confidence of the top label over the answers since load; null before the first.
    pub mean_confidence: Option<f64>,
    /// Shadow comparisons (mirrored requests are not counted in `since_load` or `labels`).
    pub shadow: Vec<PairReport>,
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
        let inner = Inner {
            all: Counts::new(),
            protocol: ProtocolTotals::default(),
            last_answer_unix_ms: 0,
            recent: VecDeque::new(),
            labels: BTreeMap::new(),
            confidence_sum: 0.0,
            pairs: BTreeMap::new(),
            latest: VecDeque::new(),
            latest_agreement: VecDeque::new(),
        };
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
        let Inner { all, recent, labels, confidence_sum, protocol, last_answer_unix_ms, latest, .. } = &mut *inner;
        if latest.len() == LATEST {
            latest.pop_front();
        }
        latest.push_back(match &outcome {
            Recorded::Error { latency } => (true, latency.as_secs_f64() * 1e3),
            Recorded::Answer { latency, .. } => (false, latency.as_secs_f64() * 1e3),
        });
        match &outcome {
            Recorded::Error { latency } => protocol.fail.add(*latency),
            Recorded::Answer { latency, cache_hit, stages, .. } => {
                protocol.success.add(*latency);
                *last_answer_unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                if *cache_hit {
                    protocol.cache_hit.add(*latency);
                } else {
                    protocol.cache_miss.add(Duration::ZERO);
                }
                for (total, took) in [
                    (&mut protocol.queue, stages.queue),
                    (&mut protocol.compute_input, stages.preprocess),
                    (&mut protocol.compute_infer, stages.inference),
                ] {
                    if let Some(took) = took {
                        total.add(took);
                    }
                }
            }
        }
        let current = &mut recent.back_mut().expect("a current slot").1;
        for counts in [all, current] {
            counts.requests += 1;
            match &outcome {
                Recorded::Error { .. } => counts.errors += 1,
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

    /// One comparison of a mirrored request: `role` is this version's ("primary" or "shadow").
    pub fn record_comparison(&self, role: &'static str, other: &str, agreed: bool, confidence_difference: f32) {
        let mut inner = self.inner.lock().expect("stats lock");
        let pair = inner.pairs.entry((role, other.to_string())).or_default();
        pair.compared += 1;
        pair.agreed += u64::from(agreed);
        pair.confidence_difference += f64::from(confidence_difference);
        if inner.latest_agreement.len() == LATEST {
            inner.latest_agreement.pop_front();
        }
        inner.latest_agreement.push_back(agreed);
    }

    /// The shadow comparisons alone (what /metrics needs, without merging the latency histograms).
    pub fn pairs(&self) -> Vec<PairReport> {
        pair_reports(&self.inner.lock().expect("stats lock"))
    }

    /// The latest `size` predictions and comparisons.
    pub fn window(&self, size: usize) -> Window {
        let inner = self.inner.lock().expect("stats lock");
        let predictions = (size > 0 && inner.latest.len() >= size).then(|| {
            let latest: Vec<(bool, f64)> = inner.latest.iter().rev().take(size).copied().collect();
            let mut latencies: Vec<f64> = latest.iter().map(|(_, ms)| *ms).collect();
            latencies.sort_by(f64::total_cmp);
            let errors = latest.iter().filter(|(failed, _)| *failed).count() as f64 / size as f64;
            (errors, latencies[(size * 95).div_ceil(100) - 1])
        });
        let agreement = (size > 0 && inner.latest_agreement.len() >= size)
            .then(|| inner.latest_agreement.iter().rev().take(size).filter(|a| **a).count() as f64 / size as f64);
        Window { predictions, agreement }
    }

    /// The statistics extension's totals, and the time of the last answer (ms since the Unix epoch).
    pub fn protocol_totals(&self) -> (ProtocolTotals, u64) {
        let inner = self.inner.lock().expect("stats lock");
        (inner.protocol, inner.last_answer_unix_ms)
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
            shadow: pair_reports(&inner),
        }
    }
}

fn pair_reports(inner: &Inner) -> Vec<PairReport> {
    inner
        .pairs
        .iter()
        .map(|((role, other), pair)| PairReport {
            role,
            other_version: other.clone(),
            compared: pair.compared,
            top1_agreement: pair.agreed as f64 / pair.compared.max(1) as f64,
            mean_confidence_difference: pair.confidence_difference / pair.compared.max(1) as f64,
        })
        .collect()
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
                stages: Stages::default(),
            };
            stats.record(answer);
        }
        stats.record(Recorded::Error { latency: Duration::from_millis(1) });
        let report = stats.report();
        let all = &report.since_load;
        assert_eq!((all.requests, all.errors, all.cache_hits), (101, 1, 10));
        let latency = all.latency_ms.as_ref().unwrap();
        assert!((49.0..=51.0).contains(&latency.p50) && (98.0..=100.1).contains(&latency.p99), "{latency:?}");
        assert_eq!(report.last_5_minutes.requests, 101);
        assert_eq!((report.labels["pizza"], report.labels["espresso"]), (25, 75));
        assert_eq!(report.mean_confidence, Some(0.5));
        let (totals, _) = stats.protocol_totals();
        assert_eq!((totals.success.count, totals.fail.count, totals.cache_hit.count), (100, 1, 10));
        assert_eq!(totals.success.ns, (1..=100u64).sum::<u64>() * 1_000_000);
    }
}

//! Versions compared on labelled photos: per version accuracy, top-k accuracy, per-class precision
//! and recall, latency and errors; per pair the top-1 agreement and McNemar's exact test of whether
//! their accuracies differ. Photos run one at a time per version, as clients' jobs (the queue's
//! places, never a burst), and are not counted in the versions' own statistics.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::outcome::PredictError;
use super::predictor::Predictor;
use crate::domain::PredictUpload;
use crate::runtime::{InferError, Lane, LoadedModel};

pub struct Sample {
    pub name: String,
    pub upload: PredictUpload,
    pub label: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CompareReport {
    pub samples: usize,
    pub top_k: usize,
    pub versions: BTreeMap<String, VersionResult>,
    pub pairs: Vec<PairResult>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionResult {
    pub answered: usize,
    pub errors: usize,
    /// Share of the photos whose top-1 label is theirs (errors count as wrong).
    pub accuracy: f64,
    /// Share whose label is among the top k.
    pub top_k_accuracy: f64,
    pub per_class: BTreeMap<String, ClassResult>,
    /// Over answers the model computed (cache hits excluded); null without any.
    pub latency_ms: Option<Latency>,
    pub cache_hits: usize,
    /// Each photo's top-1 label (null for an error), in the order sent.
    pub answers: Vec<Option<String>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClassResult {
    /// Photos with this label.
    pub support: usize,
    /// Of the photos answered with this label, the share that have it; null if none was.
    pub precision: Option<f64>,
    /// Of the photos with this label, the share answered with it; null without any.
    pub recall: Option<f64>,
}

/// Named apart from the history's `Latency` (its quantiles may be null): one name, one schema.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = CompareLatency)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PairResult {
    pub a: String,
    pub b: String,
    /// Share of the photos both answered with the same top-1 label.
    pub agreement: f64,
    /// Photos only `a` got right, and only `b`.
    pub only_a_correct: usize,
    pub only_b_correct: usize,
    /// McNemar's exact (binomial) test on those two counts: a small value says the accuracies
    /// really differ; 1 when they never disagree.
    pub mcnemar_p_value: f64,
}

/// One photo's outcome on one version.
struct Answered {
    top: Vec<String>,
    latency: Option<Duration>,
}

impl Predictor {
    /// Runs every photo on every version and reports.
    pub async fn compare(&self, versions: &[Arc<LoadedModel>], samples: &[Sample], top_k: usize) -> CompareReport {
        let mut results: BTreeMap<String, Vec<Option<Answered>>> = BTreeMap::new();
        for model in versions {
            let mut answers = Vec::with_capacity(samples.len());
            for sample in samples {
                answers.push(self.answer_for_comparison(model, &sample.upload, top_k).await);
            }
            results.insert(model.id.version.clone(), answers);
        }
        let labels: Vec<&str> = samples.iter().map(|s| s.label.as_str()).collect();
        let versions_report =
            results.iter().map(|(version, answers)| (version.clone(), version_result(&labels, answers))).collect();
        let names: Vec<&String> = results.keys().collect();
        let mut pairs = Vec::new();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                pairs.push(pair_result(a, b, &labels, &results[*a], &results[*b]));
            }
        }
        CompareReport { samples: samples.len(), top_k, versions: versions_report, pairs }
    }

    /// Within the deadline; a full queue is waited out (a comparison is not in a hurry).
    async fn answer_for_comparison(
        &self,
        model: &Arc<LoadedModel>,
        upload: &PredictUpload,
        k: usize,
    ) -> Option<Answered> {
        let deadline = Instant::now() + Duration::from_millis(self.deadline_ms());
        let image_sha256 = crate::cache::digest_of(&upload.image).await.ok()?;
        loop {
            let started = Instant::now();
            match self.run(model.clone(), upload, &image_sha256, Lane::Primary).await {
                Ok(outcome) => {
                    let top = outcome.answer.combined.top(k).iter().map(|c| c.label.clone()).collect();
                    return Some(Answered { top, latency: (!outcome.cache_hit).then(|| started.elapsed()) });
                }
                Err(PredictError::Infer(InferError::QueueFull)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(_) => return None,
            }
        }
    }
}

fn version_result(labels: &[&str], answers: &[Option<Answered>]) -> VersionResult {
    let n = labels.len().max(1) as f64;
    let top1 = |a: &Option<Answered>| a.as_ref().and_then(|a| a.top.first().cloned());
    let correct = labels.iter().zip(answers).filter(|(l, a)| top1(a).as_deref() == Some(**l)).count();
    let in_top_k =
        labels.iter().zip(answers).filter(|(l, a)| a.as_ref().is_some_and(|a| a.top.iter().any(|t| t == *l))).count();
    let classes: BTreeSet<&str> = labels.iter().copied().collect();
    let per_class = classes
        .into_iter()
        .map(|class| {
            let support = labels.iter().filter(|l| **l == class).count();
            let predicted = answers.iter().filter(|a| top1(a).as_deref() == Some(class)).count();
            let hits =
                labels.iter().zip(answers).filter(|(l, a)| **l == class && top1(a).as_deref() == Some(class)).count();
            let share = |part: usize, whole: usize| (whole > 0).then(|| part as f64 / whole as f64);
            (
                class.to_string(),
                ClassResult { support, precision: share(hits, predicted), recall: share(hits, support) },
            )
        })
        .collect();
    let mut latencies: Vec<f64> =
        answers.iter().flatten().filter_map(|a| a.latency).map(|d| d.as_secs_f64() * 1e3).collect();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1];
    let answered = answers.iter().flatten().count();
    VersionResult {
        answered,
        errors: answers.len() - answered,
        accuracy: correct as f64 / n,
        top_k_accuracy: in_top_k as f64 / n,
        per_class,
        latency_ms: (!latencies.is_empty()).then(|| Latency { p50: at(0.5), p95: at(0.95) }),
        cache_hits: answers.iter().flatten().filter(|a| a.latency.is_none()).count(),
        answers: answers.iter().map(top1).collect(),
    }
}

fn pair_result(a: &str, b: &str, labels: &[&str], on_a: &[Option<Answered>], on_b: &[Option<Answered>]) -> PairResult {
    let top1 = |x: &Option<Answered>| x.as_ref().and_then(|x| x.top.first().cloned());
    let (mut same, mut only_a, mut only_b) = (0, 0, 0);
    for ((label, x), y) in labels.iter().zip(on_a).zip(on_b) {
        let (x, y) = (top1(x), top1(y));
        same += usize::from(x.is_some() && x == y);
        let (x_ok, y_ok) = (x.as_deref() == Some(*label), y.as_deref() == Some(*label));
        only_a += usize::from(x_ok && !y_ok);
        only_b += usize::from(y_ok && !x_ok);
    }
    PairResult {
        a: a.to_string(),
        b: b.to_string(),
        agreement: same as f64 / labels.len().max(1) as f64,
        only_a_correct: only_a,
        only_b_correct: only_b,
        mcnemar_p_value: mcnemar_exact(only_a, only_b),
    }
}

/// Two-sided exact McNemar test: under "no difference", the discordant photos split as a fair
/// coin would; the chance of a split at least as uneven as (b, c).
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    // P(X <= min(b, c)) for X ~ Binomial(n, 1/2), by the recurrence C(n, k+1) = C(n, k)(n-k)/(k+1),
    // in logarithms so that large n does not underflow.
    let (mut log_term, mut tail) = (-(n as f64) * std::f64::consts::LN_2, 0.0);
    for k in 0..=b.min(c) {
        tail += log_term.exp();
        log_term += ((n - k) as f64).ln() - ((k + 1) as f64).ln();
    }
    (2.0 * tail).min(1.0)
}

/// Comparisons that run as jobs: `202`, then `GET` the result. The latest few are kept.
#[derive(Default)]
pub struct CompareJobs {
    next: AtomicU64,
    jobs: Mutex<BTreeMap<u64, Option<Arc<CompareReport>>>>,
}

const JOBS_KEPT: usize = 16;

impl CompareJobs {
    pub fn start(&self) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut jobs = self.jobs.lock().expect("jobs lock");
        jobs.insert(id, None);
        while jobs.len() > JOBS_KEPT {
            jobs.pop_first();
        }
        id
    }

    pub fn finish(&self, id: u64, report: CompareReport) {
        if let Some(slot) = self.jobs.lock().expect("jobs lock").get_mut(&id) {
            *slot = Some(Arc::new(report));
        }
    }

    /// None: no such job (or an old one, forgotten); Some(None): still running.
    pub fn get(&self, id: u64) -> Option<Option<Arc<CompareReport>>> {
        self.jobs.lock().expect("jobs lock").get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::mcnemar_exact;

    #[test]
    fn mcnemar_matches_the_binomial_tables() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert!((mcnemar_exact(0, 5) - 0.0625).abs() < 1e-12, "2 x 0.5^5");
        assert!((mcnemar_exact(1, 9) - 0.021484375).abs() < 1e-12, "2 x (1 + 10) / 1024");
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert!(mcnemar_exact(0, 2000) < 1e-300 && mcnemar_exact(1000, 1000) == 1.0);
    }
}

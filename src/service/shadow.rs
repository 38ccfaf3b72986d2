//! The shadow lane's runner: mirrors handed over (`mirrors.rs`) run on the shadow version through
//! the same pipeline as clients' requests, and each answer is compared with the primary's.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::mirrors::Mirror;
use super::outcome::PredictError;
use super::predictor::Predictor;
use super::record::Asked;
use crate::history::Role;
use crate::preprocess::ImageError;
use crate::runtime::{InferError, Lane};

impl Predictor {
    /// Runs the mirrors handed over, a few at a time, until the server stops. Spawn it once.
    pub async fn run_mirrors(self: Arc<Self>) {
        let Some(mut receiver) = self.mirrors().receiver.lock().expect("mirrors lock").take() else { return };
        let running = Arc::new(Semaphore::new(self.mirrors().capacity));
        while let Some(mirror) = receiver.recv().await {
            let Ok(permit) = running.clone().acquire_owned().await else { return };
            let predictor = self.clone();
            tokio::spawn(async move {
                predictor.run_mirror(mirror).await;
                drop(permit);
            });
        }
    }

    async fn run_mirror(&self, mirror: Mirror) {
        let deadline = Duration::from_millis(self.deadline_ms());
        let started = std::time::Instant::now();
        let run = self.run(mirror.shadow.clone(), &mirror.upload, &mirror.image_sha256, Lane::Shadow);
        let counts = &self.mirrors().counts;
        let outcome = tokio::time::timeout(deadline, run)
            .await
            .unwrap_or(Err(PredictError::Deadline(deadline.as_millis() as u64)));
        let ran = match outcome {
            Err(PredictError::Infer(InferError::QueueFull)) => {
                counts.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(PredictError::Image(ImageError::Busy(_))) => {
                counts.dropped_memory.fetch_add(1, Ordering::Relaxed);
                return;
            }
            ran => ran,
        };
        // A mirror that ran, answered or failed, is history; one dropped for room never ran.
        let asked = Asked { upload: &mirror.upload, image_sha256: &mirror.image_sha256, call: &mirror.call };
        self.recorder().remember(&mirror.shadow, &asked, Role::Shadow, ran.as_ref(), started.elapsed());
        let outcome = match ran {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(version = %mirror.shadow.id.version, error = %e, "shadow prediction failed");
                counts.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let (primary, shadow) = (mirror.answer.combined.best(), outcome.answer.combined.best());
        let agreed = primary.label == shadow.label;
        let difference = shadow.probability - primary.probability;
        mirror.primary.stats.record_comparison("primary", &mirror.shadow.id.version, agreed, difference);
        mirror.shadow.stats.record_comparison("shadow", &mirror.primary.id.version, agreed, difference);
        counts.compared.fetch_add(1, Ordering::Relaxed);
        self.table().check_canary(&mirror.shadow);
    }
}

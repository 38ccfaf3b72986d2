//! Shadow (mirror) traffic: a share of requests, as the model's routing policy says, also runs on
//! another version once its answer is ready. The client never waits for the mirror nor sees it: the
//! request is handed over with `try_send` (a full hand-over queue drops the mirror and counts it),
//! mirrors run on the inference threads' shadow lane (their own places, only when no client's job
//! waits), and their decode memory comes from the same budget as everyone's (none free: dropped).
//! Each mirror's answer is compared with the primary's: top-1 agreement and the confidence
//! difference, in both versions' statistics.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};

use crate::admission::Reservation;
use crate::cache::InputKey;
use crate::domain::PredictUpload;
use crate::history::Role;
use crate::model::{InferError, Lane, LoadedModel};
use crate::predictor::{Answer, Asked, Call, PredictError, Predictor};
use crate::preprocess::ImageError;

pub struct Mirror {
    primary: Arc<LoadedModel>,
    shadow: Arc<LoadedModel>,
    upload: PredictUpload,
    image_sha256: InputKey,
    answer: Arc<Answer>,
    /// The primary request's, for the history.
    call: Call,
    /// The upload's bytes, held from the memory budget until the mirror is done.
    _memory: Reservation,
}

/// The hand-over queue and what became of the mirrors.
pub struct Mirrors {
    queue: mpsc::Sender<Mirror>,
    receiver: Mutex<Option<mpsc::Receiver<Mirror>>>,
    capacity: usize,
    pub counts: MirrorCounts,
}

#[derive(Debug, Default, Serialize)]
pub struct MirrorCounts {
    pub compared: AtomicU64,
    /// The hand-over queue or the shadow lane was full.
    pub dropped_queue_full: AtomicU64,
    /// The memory budget had no room for the mirror's upload or decode.
    pub dropped_memory: AtomicU64,
    /// The shadow version failed or missed the deadline.
    pub failed: AtomicU64,
}

impl Mirrors {
    pub fn new(capacity: usize) -> Self {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        Self { queue, receiver: Mutex::new(Some(receiver)), capacity: capacity.max(1), counts: MirrorCounts::default() }
    }
}

impl Predictor {
    /// After `model` answered `upload`: mirrors the request if its model's policy draws it. Never waits.
    pub(crate) fn maybe_mirror(&self, model: &Arc<LoadedModel>, asked: &Asked<'_>, answer: &Arc<Answer>) {
        let (upload, image_sha256, call) = (asked.upload, asked.image_sha256, asked.call);
        let Some(shadow) = self.table().shadow_for(model) else { return };
        let counts = &self.mirrors().counts;
        let Ok(memory) = self.admission().reserve(upload.image.bytes().len() as u64) else {
            counts.dropped_memory.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mirror = Mirror {
            primary: model.clone(),
            shadow,
            upload: upload.clone(),
            image_sha256: *image_sha256,
            answer: answer.clone(),
            call: call.clone(),
            _memory: memory,
        };
        if self.mirrors().queue.try_send(mirror).is_err() {
            counts.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

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
            Err(PredictError::Infer(InferError::QueueFull { .. })) => {
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
        self.remember(&mirror.shadow, &asked, Role::Shadow, ran.as_ref(), started.elapsed());
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

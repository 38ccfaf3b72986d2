//! Shadow (mirror) traffic: a share of requests, as the model's routing policy says, also runs on
//! another version once its answer is ready. The client never waits for the mirror nor sees it: the
//! request is handed over with `try_send` (a full hand-over queue drops the mirror and counts it),
//! mirrors run on the inference threads' shadow lane (their own places, only when no client's job
//! waits), and their decode memory comes from the same budget as everyone's (none free: dropped).
//! Each mirror's answer is compared with the primary's: top-1 agreement and the confidence
//! difference, in both versions' statistics.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::mpsc;

use super::answer::Answer;
use super::record::{Asked, Call};
use crate::cache::InputKey;
use crate::domain::PredictUpload;
use crate::limits::{Admission, Reservation};
use crate::runtime::LoadedModel;
use crate::versions::ModelTable;

/// A request handed over to the shadow lane.
pub(super) struct Mirror {
    pub(super) primary: Arc<LoadedModel>,
    pub(super) shadow: Arc<LoadedModel>,
    pub(super) upload: PredictUpload,
    pub(super) image_sha256: InputKey,
    pub(super) answer: Arc<Answer>,
    /// The primary request's, for the history.
    pub(super) call: Call,
    /// The upload's bytes, held from the memory budget until the mirror is done.
    _memory: Reservation,
}

/// The hand-over queue and what became of the mirrors.
pub struct Mirrors {
    queue: mpsc::Sender<Mirror>,
    pub(super) receiver: Mutex<Option<mpsc::Receiver<Mirror>>>,
    pub(super) capacity: usize,
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

    /// After `model` answered: mirrors the request if its model's policy draws it. Never waits.
    pub fn offer(
        &self,
        table: &ModelTable,
        admission: &Admission,
        model: &Arc<LoadedModel>,
        asked: &Asked<'_>,
        answer: &Arc<Answer>,
    ) {
        let (upload, image_sha256, call) = (asked.upload, asked.image_sha256, asked.call);
        let Some(shadow) = table.shadow_for(model) else { return };
        let counts = &self.counts;
        let Ok(memory) = admission.reserve(upload.image.bytes().len() as u64) else {
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
        if self.queue.try_send(mirror).is_err() {
            counts.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

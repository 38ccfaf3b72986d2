//! The inference thread: the only thread that runs forward passes, fed by a bounded queue.
//!
//! libtorch's OpenMP threads fight when several threads run parallel ops at once, so one thread
//! owns the forward passes and uses every intra-op thread. A full queue is refused at once (503)
//! rather than waited on.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{LoadedModel, Work};
use crate::error::ApiError;

struct Job {
    model: Arc<LoadedModel>,
    work: Work,
    queued_at: Instant,
    reply: oneshot::Sender<Result<Inference, String>>,
    span: tracing::Span,
}

/// What the model returned for the work (see `Work`), with where the time went.
pub struct Inference {
    pub output: Vec<f32>,
    pub queue_wait: Duration,
    pub forward: Duration,
}

pub struct InferenceWorker {
    queue: mpsc::Sender<Job>,
    alive: Arc<AtomicBool>,
    /// Answer a full queue with 429 rather than 503.
    full_is_429: bool,
}

impl InferenceWorker {
    pub fn spawn(queue_capacity: usize, torch_threads: usize, full_is_429: bool) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel(queue_capacity.max(1));
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || {
                run(jobs, torch_threads);
                flag.store(false, Ordering::SeqCst);
            })?;
        Ok(Self { queue, alive, full_is_429 })
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Jobs waiting for the thread right now.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Runs `work` on `model`. The caller's `Arc` keeps that model alive even if a
    /// reload swaps another in meanwhile: a request finishes on the model it started with.
    pub async fn infer(&self, model: Arc<LoadedModel>, work: Work) -> Result<Inference, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job = Job { model, work, queued_at: Instant::now(), reply, span: tracing::Span::current() };
        self.queue.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ApiError::Overloaded { too_many_requests: self.full_is_429 },
            mpsc::error::TrySendError::Closed(_) => ApiError::ModelUnavailable,
        })?;
        let result = answer.await.map_err(|_| ApiError::ModelUnavailable)?;
        result.map_err(|e| ApiError::Internal(anyhow::anyhow!("forward pass failed: {e}")))
    }
}

fn run(mut jobs: mpsc::Receiver<Job>, torch_threads: usize) {
    tch::set_num_threads(torch_threads as i32);
    let _no_grad = tch::no_grad_guard();
    while let Some(job) = jobs.blocking_recv() {
        let _entered = job.span.enter();
        let queue_wait = job.queued_at.elapsed();
        let started = Instant::now();
        // A panic inside one forward pass must not take the thread, and so the server, down.
        let outcome = catch_unwind(AssertUnwindSafe(|| job.model.run(&job.work)));
        let result = match outcome {
            Ok(Ok(output)) => Ok(Inference { output, queue_wait, forward: started.elapsed() }),
            Ok(Err(e)) => Err(e.to_string().lines().next().unwrap_or_default().to_string()),
            Err(_) => Err("panic in the forward pass".to_string()),
        };
        // The client may have gone away; its answer is then simply dropped.
        let _ = job.reply.send(result);
    }
}

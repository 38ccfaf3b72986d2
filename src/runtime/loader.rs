//! The one thread that loads every model and frees every one that is unloaded or replaced.
//! Loading on whichever blocking-pool thread was free scattered each model's tensors over the
//! allocator's per-thread arenas among the traffic's buffers, and RSS crept up with every reload
//! under traffic (bench/soak.py); it also keeps libtorch off the actix workers.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;

pub struct Loader {
    jobs: mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl Loader {
    pub fn spawn(torch_threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new().name("model-loader".into()).spawn(move || {
            // OpenMP's thread count is per calling thread: set where the warm-ups run.
            super::set_torch_threads(torch_threads);
            for job in queue {
                // A panic inside libtorch fails that load, not every later one.
                if catch_unwind(AssertUnwindSafe(job)).is_err() {
                    tracing::error!("panic on the model loader thread");
                }
            }
        })?;
        Ok(Self { jobs })
    }

    /// Runs `work` on the loader thread; None if it panicked.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs.send(Box::new(move || drop(reply.send(work())))).ok()?;
        answer.await.ok()
    }

    /// Drops `value` on the loader thread (after the jobs before it).
    pub fn drop_later(&self, value: impl Send + 'static) {
        let _ = self.jobs.send(Box::new(move || drop(value)));
    }
}

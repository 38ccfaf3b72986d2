//! The inference threads: the only threads that run forward passes, fed by one bounded queue.
//!
//! libtorch's OpenMP threads fight when several threads run parallel ops at once, so a fixed set
//! of inference threads (one per core by default) owns the forward passes, and under load
//! inference threads x intra-op threads = cores. A full queue is refused at once (503) rather than
//! waited on.
//!
//! A place in the queue is a semaphore permit held by the waiting request (as in
//! text-embeddings-inference), not a slot in the channel: a request that gives up (deadline,
//! client gone) frees its place at that moment, and the thread skips its job without a forward.
//!
//! Mirrored (shadow) requests have a lane of their own: their own places and channel, so they never
//! take a client's place; a thread takes a shadow job when no client's job waits, and otherwise
//! at most every tenth time.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{LoadedModel, Slot, Work};

struct Job {
    model: Arc<LoadedModel>,
    work: Work,
    lane: Lane,
    queued_at: Instant,
    reply: oneshot::Sender<Result<Inference, InferError>>,
    span: tracing::Span,
}

/// What the model returned for the work (see `Work`), with where the time went.
pub struct Inference {
    pub output: Vec<f32>,
    pub queue_wait: Duration,
    pub forward: Duration,
}

/// Which queue a job waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Clients' requests.
    Primary,
    /// Mirrored requests: run only when no client's job waits.
    Shadow,
}

/// The receiving ends, shared by the inference threads.
struct Queues {
    primary: mpsc::Receiver<Job>,
    shadow: mpsc::Receiver<Job>,
}

pub struct InferenceWorker {
    queue: mpsc::Sender<Job>,
    shadow_queue: mpsc::Sender<Job>,
    /// One permit per request allowed to wait for or run on the model.
    places: Arc<Semaphore>,
    shadow_places: Semaphore,
    capacity: usize,
    stats: Arc<WorkerStats>,
    /// Inference threads still running.
    alive: Arc<AtomicUsize>,
    threads: usize,
}

#[derive(Default)]
pub struct WorkerStats {
    /// Forward passes run.
    pub completed: AtomicU64,
    /// Jobs whose request had given up before the thread reached them: never run.
    pub skipped: AtomicU64,
    /// Inference threads bound to cores with their libtorch team (`ThreadLayout::bind`).
    pub bound: AtomicUsize,
    /// Passes whose output the model's manifest does not describe (width, non-finite values).
    pub bad_outputs: AtomicU64,
}

/// How forward passes share the cores: `inference_threads` x `torch.shared` = cores under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadLayout {
    pub inference_threads: usize,
    pub torch: TorchThreads,
    /// Bind each inference thread and its libtorch team to cores (`bind_torch_team`): inference
    /// thread n to the n-th core, its team's other threads to the cores after it.
    pub bind: bool,
}

/// Intra-op threads (libtorch's, or ONNX Runtime's per session) for one forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TorchThreads {
    /// While other requests wait or run: inference threads x shared = cores, the most images/s.
    pub shared: usize,
    /// When this request is the only one: all cores on one image, the shortest answer.
    pub alone: usize,
}

impl TorchThreads {
    /// For a forward pass while `in_use` places are taken (this job's own included).
    pub fn for_load(&self, in_use: usize) -> usize {
        if in_use <= 1 {
            self.alone
        } else {
            self.shared
        }
    }
}

/// Why the model did not answer; `error.rs` says what each means over HTTP.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InferError {
    #[error("the model queue is full")]
    QueueFull,
    #[error("the inference threads have stopped")]
    Stopped,
    #[error("forward pass failed: {0}")]
    Failed(String),
    /// The model ran but gave what its manifest does not describe: the answer is refused.
    #[error("{0}")]
    BadOutput(String),
}

/// Jobs given up on still sit in the channel until the thread reaches them (it skips them at no
/// cost, but only between forward passes); this bounds how many, and so their memory.
const CHANNEL_PER_PLACE: usize = 4;

impl InferenceWorker {
    /// `shadow_capacity`: places of the shadow lane.
    pub fn spawn(queue_capacity: usize, shadow_capacity: usize, layout: ThreadLayout) -> std::io::Result<Self> {
        let (capacity, threads, torch) = (queue_capacity.max(1), layout.inference_threads.max(1), layout.torch);
        let shadow_capacity = shadow_capacity.max(1);
        let (queue, primary) = mpsc::channel(capacity * CHANNEL_PER_PLACE);
        let (shadow_queue, shadow) = mpsc::channel(shadow_capacity * CHANNEL_PER_PLACE);
        let jobs = Arc::new(Mutex::new(Queues { primary, shadow }));
        let alive = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(WorkerStats::default());
        let places = Arc::new(Semaphore::new(capacity));
        // Each thread says when it is placed, so that what /system_status reports is settled.
        let (placed, all_placed) = std::sync::mpsc::channel();
        for n in 0..threads {
            let (jobs, alive, stats, places) = (jobs.clone(), alive.clone(), stats.clone(), places.clone());
            let placed = placed.clone();
            alive.fetch_add(1, Ordering::SeqCst);
            std::thread::Builder::new().name(format!("inference-{n}")).spawn(move || {
                // A lone request's team, asleep since the last one, is otherwise woken onto this
                // thread's own core: its pass after idle time took 2.3x as long (BENCHMARKS.md).
                if layout.bind {
                    if super::bind_torch_team(n, torch.alone.max(torch.shared)) {
                        stats.bound.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tracing::warn!(thread = n, "could not bind the inference thread's OpenMP team to cores");
                    }
                }
                let _ = placed.send(());
                drop(placed);
                // In use: places taken by requests waiting for or running on the model.
                let in_use = || capacity - places.available_permits();
                run(&jobs, n, torch, in_use, &stats);
                alive.fetch_sub(1, Ordering::SeqCst);
            })?;
        }
        drop(placed);
        // A few ms at start. Ends early only if a thread died before it was placed.
        for _ in 0..threads {
            if all_placed.recv().is_err() {
                break;
            }
        }
        let shadow_places = Semaphore::new(shadow_capacity);
        Ok(Self { queue, shadow_queue, places, shadow_places, capacity, stats, alive, threads })
    }

    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// Whether every inference thread still runs.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst) == self.threads
    }

    /// Places in the queue (--queue-capacity).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Requests waiting for or running on the model right now.
    pub fn queued(&self) -> usize {
        self.capacity - self.places.available_permits()
    }

    /// Runs `work` on `model`. The caller's `Arc` keeps that model alive even if a
    /// reload swaps another in meanwhile: a request finishes on the model it started with.
    /// Dropping the returned future (deadline, client gone) gives up the place in the queue.
    pub async fn infer(&self, model: Arc<LoadedModel>, work: Work, lane: Lane) -> Result<Inference, InferError> {
        let (places, queue) = match lane {
            Lane::Primary => (&*self.places, &self.queue),
            Lane::Shadow => (&self.shadow_places, &self.shadow_queue),
        };
        let _place = places.try_acquire().map_err(|_| InferError::QueueFull)?;
        let (reply, answer) = oneshot::channel();
        let job = Job { model, work, lane, queued_at: Instant::now(), reply, span: tracing::Span::current() };
        queue.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => InferError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => InferError::Stopped,
        })?;
        answer.await.map_err(|_| InferError::Stopped)?
    }
}

/// Under contention, a mirrored job gets every this-many-th forward pass of a thread: shadow
/// traffic costs at most about a tenth of the throughput, and is not starved (measured in
/// BENCHMARKS.md: with strict priority, 96% of a 10% shadow was dropped at concurrency 16).
const SHADOW_TURN: usize = 10;

/// The next job: a client's if one waits (unless mirrors waited `SHADOW_TURN` client jobs long),
/// else a mirrored one, else the first to arrive. `since_shadow` counts this thread's client jobs
/// since its last mirrored one.
fn next_job(queues: &mut Queues, waiter: &tokio::runtime::Runtime, since_shadow: &mut usize) -> Option<Job> {
    let job = if *since_shadow >= SHADOW_TURN {
        queues.shadow.try_recv().or_else(|_| queues.primary.try_recv()).ok()
    } else {
        queues.primary.try_recv().or_else(|_| queues.shadow.try_recv()).ok()
    };
    let job = job.or_else(|| {
        waiter.block_on(async {
            tokio::select! {
                biased;
                job = queues.primary.recv() => job,
                job = queues.shadow.recv() => job,
            }
        })
    })?;
    *since_shadow = if job.lane == Lane::Shadow { 0 } else { *since_shadow + 1 };
    Some(job)
}

fn run(jobs: &Mutex<Queues>, thread: usize, torch: TorchThreads, in_use: impl Fn() -> usize, stats: &WorkerStats) {
    let _no_grad = super::no_grad();
    // Only to wait on two channels at once: no I/O, no timers, this thread only.
    let Ok(waiter) = tokio::runtime::Builder::new_current_thread().build() else { return };
    let (mut current, mut since_shadow) = (0, 0);
    loop {
        // The lock is held only while waiting for the next job, never during a forward pass.
        let next = jobs.lock().map_or(None, |mut jobs| next_job(&mut jobs, &waiter, &mut since_shadow));
        let Some(job) = next else { break };
        if job.reply.is_closed() {
            stats.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let _entered = job.span.enter();
        let queue_wait = job.queued_at.elapsed();
        // OpenMP's thread count is per calling thread, so each inference thread sets its own: all
        // cores when this job's request is the only one in the system, its share otherwise. An
        // ONNX model has a session of each kind instead (the slot picks it).
        // ... but only where that was measured to be faster, at load, for this model on this CPU.
        let alone = job.lane == Lane::Primary && job.model.alone_pays && torch.for_load(in_use()) == torch.alone;
        let wanted = if alone { torch.alone } else { torch.shared };
        if wanted != current {
            super::set_torch_threads(wanted);
            current = wanted;
        }
        let slot = Slot { thread, alone };
        let started = Instant::now();
        // A panic inside one forward pass must not take the thread, and so the server, down.
        let outcome = catch_unwind(AssertUnwindSafe(|| job.model.run(&job.work, slot)));
        let result = match outcome {
            Ok(Ok(output)) => Ok(Inference { output, queue_wait, forward: started.elapsed() }),
            Ok(Err(e)) => {
                if matches!(e, InferError::BadOutput(_)) {
                    stats.bad_outputs.fetch_add(1, Ordering::Relaxed);
                }
                Err(e)
            }
            Err(_) => Err(InferError::Failed("panic in the forward pass".to_string())),
        };
        stats.completed.fetch_add(1, Ordering::Relaxed);
        // The request may have given up meanwhile; its answer is then simply dropped.
        let _ = job.reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::TorchThreads;

    #[test]
    fn a_lone_request_gets_every_core_and_a_busy_server_shares_them() {
        let layout = TorchThreads { shared: 1, alone: 2 };
        assert_eq!(layout.for_load(1), 2);
        assert_eq!(layout.for_load(0), 2, "a job whose place was just released");
        assert_eq!(layout.for_load(2), 1);
        assert_eq!(layout.for_load(64), 1);
    }
}

//! The image model on ONNX Runtime (manifest `"format": "onnx"`), through `ort` with the library
//! loaded at run time: the PyPI `onnxruntime` wheel's `libonnxruntime.so`, which scripts/setup.sh
//! links at `.venv/libonnxruntime.so` (`ORT_DYLIB_PATH` overrides). On this CPU it runs
//! EfficientNet-Lite0 about twice as fast as libtorch (BENCHMARKS.md).
//!
//! A session's intra-op thread count is fixed when it is made, and `Session::run` takes
//! `&mut self`, so each inference thread gets its own session with its share of the cores, plus
//! sessions on every core for a request that is alone (`TorchThreads`, `SessionPool`). The text
//! encoder may be ONNX too (its manifest's `format`), which is what a build without libtorch serves.
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use super::{LoadError, ThreadLayout};

/// Where `libonnxruntime.so` was linked when this binary was built (build.rs).
const BUILT_WITH: Option<&str> = option_env!("FOOD_API_ORT_DYLIB");

/// Which session a forward pass may use.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    /// Index of the inference thread (the loader's warm-ups use 0).
    pub thread: usize,
    /// The request is the only one in: it may have every core.
    pub alone: bool,
}

/// Sessions of one ONNX file: one per inference thread, each with `TorchThreads::shared` intra-op
/// threads, and, where asked, sessions on every core for a request that is alone.
pub struct SessionPool {
    shared: Vec<Mutex<Session>>,
    /// With `TorchThreads::alone` threads; empty when not asked or the same count as `shared`. Where
    /// the inference threads are bound to cores (`ThreadLayout::bind`), one per inference thread,
    /// its pool threads bound to the cores after that thread's; otherwise one, unbound.
    alone: Vec<Mutex<Session>>,
}

impl SessionPool {
    /// `with_alone`: also a session on every core (each session holds its own copy of the weights).
    pub fn load(path: &Path, bytes: &[u8], layout: ThreadLayout, with_alone: bool) -> Result<Self, LoadError> {
        super::onnx_check::check(bytes).map_err(|reason| LoadError::new(path, reason))?;
        let environment = runtime().map_err(|reason| LoadError::new(path, reason))?;
        let session = |threads: usize, spinning: Spinning, cpus: &[usize]| {
            new_session(environment, bytes, threads, spinning, cpus)
                .map(Mutex::new)
                .map_err(|e| LoadError::new(path, format!("not a loadable ONNX model: {e}")))
        };
        // Only the lone request's session spins, and only within a run: its pool thread would
        // otherwise sleep between the model's ~60 parallel steps and be woken for each. It runs
        // only when no other request is in, so the core it spins on is idle anyway; the shared
        // sessions do not, as a spinning pool thread would take the other inference thread's core
        // under load. The gain depends on the VM (benches/model_limit.rs -- lone): 12.6 -> 8.3 ms
        // after idle on one, up to 0.7 ms at p50 (with a worse p90) on a faster one (BENCHMARKS.md).
        let shared = (0..layout.inference_threads.max(1))
            .map(|_| session(layout.torch.shared, Spinning::Off, &[]))
            .collect::<Result<_, _>>()?;
        // Inference thread n runs on the n-th allowed CPU (worker.rs); its lone session's pool
        // threads go to the next ones. Unbound, a pool thread woken after idle time may land on
        // the calling thread's core, which a bound thread cannot leave: 4.4 -> 11.7 ms p50
        // (BENCHMARKS.md, "The lone request on ONNX").
        let cpus = if layout.bind { super::allowed_cpus() } else { Vec::new() };
        let lone_sessions = if cpus.is_empty() { 1 } else { layout.inference_threads.max(1) };
        let alone = if with_alone && layout.torch.alone != layout.torch.shared {
            (0..lone_sessions)
                .map(|n| {
                    let pool: Vec<usize> = if cpus.is_empty() {
                        Vec::new()
                    } else {
                        (1..layout.torch.alone).map(|t| cpus[(n + t) % cpus.len()]).collect()
                    };
                    session(layout.torch.alone, Spinning::WithinRun, &pool)
                })
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        Ok(Self { shared, alone })
    }

    /// Every session, so that warm-ups reach them all.
    pub fn slots(&self) -> impl Iterator<Item = Slot> {
        let alone = (0..self.alone.len()).map(|thread| Slot { thread, alone: true });
        (0..self.shared.len()).map(|thread| Slot { thread, alone: false }).chain(alone)
    }

    /// The session `slot` may run on: the lone request's (this inference thread's, where each has
    /// one), unless a request that gave up is still running on it, else the inference thread's own.
    pub fn session(&self, slot: Slot) -> Result<MutexGuard<'_, Session>, String> {
        let alone = (slot.alone && !self.alone.is_empty()).then(|| &self.alone[slot.thread % self.alone.len()]);
        if let Some(session) = alone.and_then(|s| s.try_lock().ok()) {
            return Ok(session);
        }
        self.shared[slot.thread % self.shared.len()].lock().map_err(|_| "session lock poisoned".to_string())
    }
}

pub struct OnnxImageModel {
    sessions: SessionPool,
}

impl OnnxImageModel {
    pub fn load(path: &Path, bytes: &[u8], layout: ThreadLayout) -> Result<Self, LoadError> {
        Ok(Self { sessions: SessionPool::load(path, bytes, layout, true)? })
    }

    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.sessions.slots()
    }

    /// Logits `[1, N]` of one CHW image, flattened.
    pub fn logits(&self, chw: &[f32], size: usize, slot: Slot) -> Result<Vec<f32>, String> {
        let mut session = self.sessions.session(slot)?;
        let input = TensorRef::from_array_view(([1usize, 3, size, size], chw)).map_err(|e| e.to_string())?;
        let outputs = session.run(ort::inputs![input]).map_err(|e| e.to_string())?;
        let (shape, logits) = outputs[0].try_extract_tensor::<f32>().map_err(|e| format!("output 0: {e}"))?;
        if shape.len() != 2 || shape[0] != 1 {
            return Err(format!("expected logits [1, N], got {:?}", &shape[..]));
        }
        Ok(logits.to_vec())
    }
}

/// The sentence encoder as ONNX: (input_ids, attention_mask) int64 [1, L] -> embedding [1, dim].
/// No session on every core: a text's forward pass is a few milliseconds, and each session would
/// hold another 90 MB copy of the weights.
pub struct OnnxTextModel {
    sessions: SessionPool,
}

impl OnnxTextModel {
    pub fn load(path: &Path, bytes: &[u8], layout: ThreadLayout) -> Result<Self, LoadError> {
        Ok(Self { sessions: SessionPool::load(path, bytes, layout, false)? })
    }

    pub fn embed(&self, ids: &[i64], slot: Slot) -> Result<Vec<f32>, String> {
        let mask = vec![1i64; ids.len()];
        let mut session = self.sessions.session(slot)?;
        let input_ids = TensorRef::from_array_view(([1usize, ids.len()], ids)).map_err(|e| e.to_string())?;
        let attention_mask = TensorRef::from_array_view(([1usize, ids.len()], &mask[..])).map_err(|e| e.to_string())?;
        let outputs = session.run(ort::inputs![input_ids, attention_mask]).map_err(|e| e.to_string())?;
        let (_, embedding) = outputs[0].try_extract_tensor::<f32>().map_err(|e| format!("output 0: {e}"))?;
        Ok(embedding.to_vec())
    }
}

/// How a session's intra-op pool threads wait for their next piece of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spinning {
    /// They sleep at once and are woken for each parallel step.
    Off,
    /// They spin for a while before sleeping, but only within a run: when it returns they sleep,
    /// instead of spinning on a core the next request's decoding (or wrk) could use.
    WithinRun,
    /// ONNX Runtime's default: they spin after a run too (benches/model_limit.rs compares).
    Always,
}

/// A session as the server makes them (benches/model_limit.rs measures the same). `pool_cpus`:
/// where given, the CPU each of the session's own pool threads (threads - 1: the caller is the
/// first) is bound to.
pub fn new_session(
    environment: &Environment,
    bytes: &[u8],
    threads: usize,
    spinning: Spinning,
    pool_cpus: &[usize],
) -> ort::Result<Session> {
    let builder = Session::builder(environment)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_threads(threads.max(1))?
        .with_intra_op_spinning(spinning != Spinning::Off)?;
    let builder = match spinning {
        Spinning::WithinRun => builder.with_config_entry("session.force_spinning_stop", "1")?,
        Spinning::Off | Spinning::Always => builder,
    };
    let mut builder = if pool_cpus.is_empty() {
        builder
    } else {
        // ONNX Runtime numbers logical processors from 1; ";" separates its pool threads.
        let cpus: Vec<String> = pool_cpus.iter().map(|cpu| (cpu + 1).to_string()).collect();
        builder.with_config_entry("session.intra_op_thread_affinities", cpus.join(";"))?
    };
    builder.commit_from_memory(bytes)
}

/// Loads ONNX Runtime once per process; a failure is kept and reported on every later load.
pub fn runtime() -> Result<&'static Environment, String> {
    static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();
    let loaded = RUNTIME.get_or_init(|| {
        let path = std::env::var("ORT_DYLIB_PATH").ok().or(BUILT_WITH.map(String::from)).ok_or_else(|| {
            "ONNX Runtime's library is not known to this build: set ORT_DYLIB_PATH to libonnxruntime.so".to_string()
        })?;
        if !Path::new(&path).exists() {
            return Err(format!(
                "ONNX Runtime's library {path} is missing: run scripts/setup.sh or set ORT_DYLIB_PATH"
            ));
        }
        let environment = ort::init_from(&path).map_err(|e| format!("cannot load ONNX Runtime from {path}: {e}"))?;
        environment
            .with_name("food-api")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    });
    loaded.as_ref().map_err(Clone::clone)
}

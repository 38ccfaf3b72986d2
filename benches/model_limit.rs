//! The limit a server cannot beat: the image model's own forward pass, in-process, on this CPU,
//! for each backend the server has (libtorch on the TorchScript file, ONNX Runtime on the ONNX
//! export), and ONNX Runtime on the set-up's int8 version (models-int8/, a model of its own).
//! Prints images/s for each batch size and thread layout, then each backend's best.
//!
//!   cargo bench --bench model_limit                 # after scripts/setup.sh; every backend
//!   cargo bench --bench model_limit -- onnx         # one backend (torchscript, onnx or int8)
//!   cargo bench --bench model_limit -- lone         # only a lone request's forward pass
//!   FOOD_API_NO_ONEDNN_FUSION=1 cargo bench ...     # TorchScript without oneDNN Graph fusion
//!   MODEL_LIMIT_BIND=0 cargo bench ...              # a lone pass's threads left to the scheduler
//!   MODEL_LIMIT_TORCHSCRIPT=f.pt MODEL_LIMIT_ONNX=f.onnx cargo bench ...   # another 224 px model's
//!                                                   # files (bench/run.py --own: an imported one)
//!
//! Then a lone request's forward pass (batch 1) back to back and after 50 and 200 ms of idle
//! time, for each intra-op thread count (and, on ONNX Runtime, with its pool threads spinning or
//! not): what sparse traffic pays over the figure a busy server sees. As in the server, the thread
//! and its OpenMP team are bound to cores, and an ONNX session's pool thread to the next core.
//!
//! Every shape is warmed up first: TorchScript's profiling executor makes the first calls of a
//! new input shape 5-50x slower, and ONNX Runtime plans its memory on the first call.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use food_api::runtime::{enable_onednn_fusion, fusing, onnx_runtime, onnx_session, Spinning};
use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;
use tch::{CModule, Device, Tensor};

const SIZE: usize = 224;
const WARMUP: usize = 5;
const BATCHES: [usize; 4] = [1, 2, 4, 8];

/// Seconds per measurement: MODEL_LIMIT_SECONDS, 4 by default (bench/run.py --quick uses 1).
fn measure_for() -> Duration {
    let seconds = std::env::var("MODEL_LIMIT_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4.0);
    Duration::from_secs_f64(seconds)
}

fn checkpoint(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints").join(file)
}

/// The image model's file for a backend: the bundled one unless the environment names another.
fn model_file(variable: &str, bundled: &str) -> PathBuf {
    std::env::var_os(variable).map_or_else(|| checkpoint(bundled), PathBuf::from)
}

/// The ONNX file of the int8 version scripts/export_model.py writes beside the float model's
/// version, as that version's manifest names it.
fn int8_file() -> PathBuf {
    let read = |path: PathBuf| -> serde_json::Value {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", path.display()));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let version = read(checkpoint("manifest.json"))["version"].as_str().expect("a version").to_string();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("models-int8/food/{version}-int8"));
    let weights = read(dir.join("manifest.json"))["weights"].as_str().expect("the weights' file name").to_string();
    dir.join(weights)
}

/// One backend's forward pass, made on the thread that runs it with `intra` intra-op threads.
#[derive(Clone, Copy, PartialEq)]
enum Backend {
    TorchScript,
    Onnx,
    Int8,
}

enum Runner<'m> {
    Torch(&'m CModule),
    Onnx(Session),
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::TorchScript => "torchscript",
            Backend::Onnx => "onnx",
            Backend::Int8 => "int8",
        }
    }

    fn runner<'m>(self, module: Option<&'m CModule>, environment: Option<&Environment>, intra: usize) -> Runner<'m> {
        self.runner_spinning(module, environment, intra, Spinning::Off, &[])
    }

    fn runner_spinning<'m>(
        self,
        module: Option<&'m CModule>,
        environment: Option<&Environment>,
        intra: usize,
        spinning: Spinning,
        pool_cpus: &[usize],
    ) -> Runner<'m> {
        match self {
            Backend::TorchScript => {
                // OpenMP's thread count belongs to the calling thread.
                tch::set_num_threads(intra as i32);
                Runner::Torch(module.expect("the TorchScript module"))
            }
            Backend::Onnx | Backend::Int8 => {
                let path = if self == Backend::Onnx {
                    model_file("MODEL_LIMIT_ONNX", "efficientnet_lite0.onnx")
                } else {
                    int8_file()
                };
                let bytes =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", path.display()));
                let session = onnx_session(environment.expect("ONNX Runtime"), &bytes, intra, spinning, pool_cpus)
                    .expect("an ONNX Runtime session");
                Runner::Onnx(session)
            }
        }
    }
}

impl Runner<'_> {
    fn forward(&mut self, input: &[f32], batch: usize) {
        match self {
            Runner::Torch(module) => {
                let x = Tensor::from_slice(input).view([batch as i64, 3, SIZE as i64, SIZE as i64]);
                // Fused by oneDNN Graph as the server's image forward pass is, unless turned off.
                let _fusing = fusing();
                let _ = module.forward_ts(&[x]).expect("forward");
            }
            Runner::Onnx(session) => {
                let x = TensorRef::from_array_view(([batch, 3, SIZE, SIZE], input)).expect("input tensor");
                let _ = session.run(ort::inputs![x]).expect("forward");
            }
        }
    }
}

struct Row {
    layout: String,
    batch: usize,
    images_per_s: f64,
}

/// Images/s of `threads` threads, each with a runner of `intra` intra-op threads, summed; each
/// thread is timed from the end of its own warm-up.
fn measure(
    backend: Backend,
    module: Option<&CModule>,
    environment: Option<&Environment>,
    threads: usize,
    intra: usize,
    batch: usize,
) -> f64 {
    let input: Vec<f32> = (0..batch * 3 * SIZE * SIZE).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let input = &input;
                scope.spawn(move || {
                    let _no_grad = tch::no_grad_guard();
                    let mut runner = backend.runner(module, environment, intra);
                    for _ in 0..WARMUP {
                        runner.forward(input, batch);
                    }
                    let (started, mut images) = (Instant::now(), 0usize);
                    while started.elapsed() < measure_for() {
                        runner.forward(input, batch);
                        images += batch;
                    }
                    images as f64 / started.elapsed().as_secs_f64()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("bench thread")).sum()
    })
}

fn limit(backend: Backend, environment: Option<&Environment>, cores: usize) {
    let module = (backend == Backend::TorchScript).then(|| {
        let path = model_file("MODEL_LIMIT_TORCHSCRIPT", "efficientnet_lite0.pt");
        CModule::load_on_device(&path, Device::Cpu)
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", path.display()))
    });
    let mut rows = Vec::new();
    // One thread with every core, one with each core, and between.
    for (threads, intra) in [(1, cores), (cores, 1)].into_iter().chain((cores > 2).then_some((1, 1))) {
        for batch in BATCHES {
            let images_per_s = measure(backend, module.as_ref(), environment, threads, intra, batch);
            let layout = format!("{threads} x {intra} threads");
            println!("{} {layout} batch {batch}: {images_per_s:.1} images/s", backend.name());
            rows.push(Row { layout, batch, images_per_s });
        }
    }
    rows.sort_by(|a, b| b.images_per_s.total_cmp(&a.images_per_s));
    let best = &rows[0];
    println!(
        "limit {}: {:.1} images/s at batch {}, {} ({cores} cores)",
        backend.name(),
        best.images_per_s,
        best.batch,
        best.layout
    );
    for row in &rows {
        println!("  {} batch {}: {:.2}x the limit", row.layout, row.batch, row.images_per_s / best.images_per_s);
    }
}

/// Median and 90th percentile, in ms.
fn percentiles(mut times: Vec<f64>) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2] * 1e3, times[times.len() * 9 / 10] * 1e3)
}

/// A lone request's forward pass (batch 1) on a thread of its own, as the server's inference
/// threads are: back to back, then each after 50 and 200 ms of idle time. Every variant runs in
/// turn within each round, so a VM's drift falls on all of them alike.
fn lone(variants: &mut [(String, Runner<'_>, usize)], bind: bool) {
    const RUNS: usize = 30;
    let input: Vec<f32> = (0..3 * SIZE * SIZE).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect();
    let _no_grad = tch::no_grad_guard();
    if bind {
        let cores = variants.iter().map(|v| v.2).max().unwrap_or(1);
        println!("lone: OpenMP team bound to cores: {}", food_api::runtime::bind_torch_team(0, cores));
    }
    let forward = |runner: &mut Runner<'_>, intra: usize| {
        // OpenMP's thread count belongs to the calling thread, which all variants share here.
        tch::set_num_threads(intra as i32);
        let started = Instant::now();
        runner.forward(&input, 1);
        started.elapsed().as_secs_f64()
    };
    for (_, runner, intra) in variants.iter_mut() {
        for _ in 0..WARMUP {
            forward(runner, *intra);
        }
    }
    for gap in [0u64, 50, 200] {
        let mut times = vec![Vec::new(); variants.len()];
        for _ in 0..RUNS {
            for (times, (_, runner, intra)) in times.iter_mut().zip(variants.iter_mut()) {
                // Back to back, the last pass (another variant's) has just ended on this thread.
                std::thread::sleep(Duration::from_millis(gap));
                times.push(forward(runner, *intra));
            }
        }
        let when = if gap == 0 { "back to back".to_string() } else { format!("after {gap} ms idle") };
        for (times, (name, _, _)) in times.into_iter().zip(variants.iter()) {
            let (p50, p90) = percentiles(times);
            println!("lone {name}, {when}: {p50:.1} ms (p90 {p90:.1})");
        }
    }
}

fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let only_lone = wanted.iter().any(|w| w == "lone");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let included = |backend: Backend| wanted.iter().all(|w| w == "lone") || wanted.iter().any(|w| w == backend.name());
    let environment =
        (included(Backend::Onnx) || included(Backend::Int8)).then(|| onnx_runtime().unwrap_or_else(|e| panic!("{e}")));
    // As the server: TorchScript fused by oneDNN Graph unless FOOD_API_NO_ONEDNN_FUSION is set.
    let fused = std::env::var_os("FOOD_API_NO_ONEDNN_FUSION").is_none();
    if fused {
        enable_onednn_fusion();
    }
    println!("torchscript: oneDNN Graph fusion {}", if fused { "on (the server's default)" } else { "off" });
    if !only_lone {
        for backend in [Backend::TorchScript, Backend::Onnx, Backend::Int8].into_iter().filter(|&b| included(b)) {
            // The server's own loading of ONNX Runtime (ORT_DYLIB_PATH, else the one setup linked).
            limit(backend, environment, cores);
        }
    }
    let module = included(Backend::TorchScript).then(|| {
        CModule::load_on_device(model_file("MODEL_LIMIT_TORCHSCRIPT", "efficientnet_lite0.pt"), Device::Cpu)
            .expect("the TorchScript module")
    });
    // As the server's first inference thread (unless MODEL_LIMIT_BIND=0): this thread and its
    // OpenMP team on the first cores, a lone ONNX session's pool thread on the next (its sessions
    // are made here, so where they bind is decided here; an unbound pool thread woke on the bound
    // caller's core and made a pass after idle time 2.6x as long, BENCHMARKS.md).
    let bind = std::env::var("MODEL_LIMIT_BIND").map_or(true, |v| v != "0");
    let cpus = food_api::runtime::allowed_cpus();
    let mut variants = Vec::new();
    for intra in [1, cores] {
        if let Some(module) = &module {
            variants.push((format!("torchscript {intra} threads"), Runner::Torch(module), intra));
        }
        // Spinning only matters where the session has a pool (more than one intra-op thread).
        let spins: &[Spinning] = if environment.is_none() {
            &[]
        } else if intra > 1 {
            &[Spinning::Off, Spinning::WithinRun, Spinning::Always]
        } else {
            &[Spinning::Off]
        };
        for &spinning in spins {
            let spin = match spinning {
                Spinning::Off => "pool not spinning",
                Spinning::WithinRun => "pool spinning within a run (the server's)",
                Spinning::Always => "pool spinning after a run too",
            };
            let pool_cpus = if bind { cpus.get(1..intra).unwrap_or_default() } else { &[] };
            let runner = Backend::Onnx.runner_spinning(None, environment, intra, spinning, pool_cpus);
            variants.push((format!("onnx {intra} threads, {spin}"), runner, intra));
        }
    }
    lone(&mut variants, bind);
}

//! The limit a server cannot beat: the image model's own forward pass, in-process, on this CPU.
//! Prints images/s and ms per batch for each batch size and intra-op thread count, best first.
//!
//!   cargo bench --bench model_limit            # after scripts/setup.sh
//!
//! Every shape is warmed up first: TorchScript's profiling executor makes the first calls of a
//! new input shape 5-50x slower.
use std::time::{Duration, Instant};

use tch::{CModule, Device, Kind, Tensor};

const WEIGHTS: &str = "checkpoints/efficientnet_lite0.pt";
const WARMUP: usize = 5;

/// Seconds per measurement: MODEL_LIMIT_SECONDS, 4 by default (bench/run.py --quick uses 1).
fn measure_for() -> Duration {
    let seconds = std::env::var("MODEL_LIMIT_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4.0);
    Duration::from_secs_f64(seconds)
}

fn main() {
    let _no_grad = tch::no_grad_guard();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(WEIGHTS);
    let module = CModule::load_on_device(&path, Device::Cpu).unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", path.display()));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    for threads in (1..=cores).rev() {
        tch::set_num_threads(threads as i32);
        for batch in [1_i64, 2, 4, 8] {
            let input = Tensor::randn([batch, 3, 224, 224], (Kind::Float, Device::Cpu));
            for _ in 0..WARMUP {
                let _ = module.forward_ts(&[&input]).expect("forward");
            }
            let (started, mut calls) = (Instant::now(), 0u32);
            let mut times = Vec::new();
            while started.elapsed() < measure_for() {
                let call = Instant::now();
                let _ = module.forward_ts(&[&input]).expect("forward");
                times.push(call.elapsed().as_secs_f64() * 1e3);
                calls += 1;
            }
            times.sort_by(f64::total_cmp);
            let images_per_s = f64::from(calls) * batch as f64 / started.elapsed().as_secs_f64();
            rows.push((threads, batch, images_per_s, times[times.len() / 2], times[times.len() * 99 / 100]));
            println!("threads {threads} batch {batch}: {images_per_s:.1} images/s, p50 {:.1} ms, p99 {:.1} ms per call", times[times.len() / 2], times[times.len() * 99 / 100]);
        }
    }
    // The other layout: one inference thread per core, each with one intra-op thread.
    for batch in [1_i64, 4] {
        let images_per_s = parallel_single_threaded(&module, cores, batch);
        println!("{cores} threads x 1 intra-op, batch {batch}: {images_per_s:.1} images/s");
        rows.push((1, batch, images_per_s, 0.0, 0.0));
        let last = rows.len() - 1;
        rows[last].0 = 100 + cores; // shown as "N x 1" below
    }
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    let layout = |t: usize| if t > 100 { format!("{} x 1 threads", t - 100) } else { format!("1 x {t} threads") };
    let (threads, batch, best, ..) = rows[0];
    println!("limit: {best:.1} images/s at batch {batch}, {} ({cores} cores)", layout(threads));
    for (t, b, ips, ..) in &rows {
        println!("  {} batch {b}: {:.2}x the limit", layout(*t), ips / best);
    }
}

/// Images/s summed over the threads, each timed from the end of its own warm-up.
fn parallel_single_threaded(module: &CModule, threads: usize, batch: i64) -> f64 {
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let _no_grad = tch::no_grad_guard();
                    tch::set_num_threads(1);
                    let input = Tensor::randn([batch, 3, 224, 224], (Kind::Float, Device::Cpu));
                    for _ in 0..WARMUP {
                        let _ = module.forward_ts(&[&input]).expect("forward");
                    }
                    let (started, mut images) = (Instant::now(), 0u64);
                    while started.elapsed() < measure_for() {
                        let _ = module.forward_ts(&[&input]).expect("forward");
                        images += batch as u64;
                    }
                    images as f64 / started.elapsed().as_secs_f64()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("bench thread")).sum()
    })
}

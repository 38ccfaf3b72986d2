//! Where a forward pass runs: an inference thread's libtorch (OpenMP) team bound to cores of their
//! own, and a TorchScript image model fused for the thread count of the pass it serves (a fused
//! graph keeps the count it was compiled under: one core's share under load, every core for a
//! lone request). A test binary of its own: it measures threads' CPU time, which the API tests'
//! load on the same cores would blur. The real model from checkpoints/ (scripts/setup.sh).
use std::collections::BTreeMap;

use food_api::runtime::{
    allowed_cpus, bind_torch_team, enable_onednn_fusion, no_grad, onnx_runtime, onnx_session, set_torch_threads,
    Device, LoadedModel, ModelPaths, Slot, Spinning, ThreadLayout, TorchThreads, Work,
};

fn repo_path(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The threads of this process whose name is `name` (OpenMP's team threads take the name of the
/// thread that made them): tid -> (time on a CPU in ns, the CPUs it may run on).
fn threads_named(name: &str) -> BTreeMap<String, (u64, String)> {
    let mut threads = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let schedstat = std::fs::read_to_string(dir.join("schedstat")).unwrap();
        let on_cpu = schedstat.split_whitespace().next().unwrap().parse().unwrap();
        let status = std::fs::read_to_string(dir.join("status")).unwrap();
        let cpus = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_string();
        threads.insert(task.file_name().to_string_lossy().into_owned(), (on_cpu, cpus));
    }
    threads
}

/// CPU time of `name`'s threads other than `master` while `work` runs, and the master's own.
fn team_cpu(name: &str, master: &str, work: impl FnOnce()) -> (f64, f64) {
    let before = threads_named(name);
    work();
    let after = threads_named(name);
    let spent = |tid: &String| (after[tid].0 - before.get(tid).map_or(0, |b| b.0)) as f64 / 1e6;
    let others = after.keys().filter(|tid| *tid != master).map(spent).sum();
    (others, spent(&master.to_string()))
}

#[test]
fn a_lone_request_runs_on_every_core_and_a_shared_pass_on_one() {
    let cores = std::thread::available_parallelism().unwrap().get();
    assert!(cores >= 2, "this test needs 2 cores or more to tell one core's share from every core ({cores} here)");
    const NAME: &str = "team-under-test";
    std::thread::Builder::new()
        .name(NAME.into())
        .spawn(move || {
            let master = unsafe { libc::gettid() }.to_string();
            enable_onednn_fusion();
            let _no_grad = no_grad();
            let layout = ThreadLayout { inference_threads: cores, torch: TorchThreads { shared: 1, alone: cores }, bind: false };
            let paths = ModelPaths { model_dir: repo_path("checkpoints"), class_mapping: repo_path("class_mapping.json") };
            set_torch_threads(1);
            let model = LoadedModel::load(&paths, Device::Cpu, layout, 1).unwrap();

            // Bound: this thread to the first CPU it may use, its team's other threads each to one of
            // the next, all different.
            assert!(bind_torch_team(0, cores));
            let team = threads_named(NAME);
            assert!(team[&master].1.parse::<usize>().is_ok(), "this thread on one CPU: {team:?}");
            let one_cpu: std::collections::BTreeSet<&String> =
                team.values().map(|(_, cpus)| cpus).filter(|c| c.parse::<usize>().is_ok()).collect();
            assert_eq!(one_cpu.len(), cores, "the team's {cores} threads each on a CPU of its own: {team:?}");

            let image = Work::Image((0..3 * 224 * 224).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect());
            let passes = |alone: bool, threads: usize| {
                team_cpu(NAME, &master, || {
                    set_torch_threads(threads);
                    for _ in 0..30 {
                        model.run(&image, Slot { thread: 0, alone }).unwrap();
                    }
                })
            };
            // Under load (one core's share) first: the team's threads may still spin a few ms after
            // the load's passes on every core; that is the only CPU time they may take here.
            let (others, shared) = passes(false, 1);
            assert!(
                others < 0.1 * shared,
                "a shared pass must leave the other cores to the other inference threads: team {others:.1} ms, this thread {shared:.1} ms"
            );
            // The team's threads spin at every barrier, so their CPU time says little; this thread's
            // own work does: with the work shared out it does a part of it. (On one copy fused
            // under one thread, the 2-thread pass left it all here: 271 vs 270 ms for 30 passes.)
            let (_, alone) = passes(true, cores);
            assert!(
                alone < 0.85 * shared,
                "a lone request's pass must share its work with the other cores: this thread {alone:.1} ms for 30 passes against {shared:.1} ms alone on one"
            );
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn an_onnx_sessions_pool_thread_is_bound_to_the_cpu_it_is_given() {
    // ONNX Runtime numbers CPUs from 1 (the server gives it its own numbers + 1): the last CPU this
    // process may use, so that an off-by-one would name a CPU that is not there or another one.
    let last = *allowed_cpus().last().expect("the CPUs this process may use");
    const NAME: &str = "onnx-under-test";
    std::thread::Builder::new()
        .name(NAME.into())
        .spawn(move || {
            let bytes = std::fs::read(repo_path("checkpoints/efficientnet_lite0.onnx")).unwrap();
            let environment = onnx_runtime().unwrap();
            let _session = onnx_session(environment, &bytes, 2, Spinning::WithinRun, &[last]).unwrap();
            // The session's pool thread, made by this thread, has its name.
            let pool: Vec<String> = threads_named(NAME).into_values().map(|(_, cpus)| cpus).collect();
            assert!(pool.contains(&last.to_string()), "a pool thread bound to CPU {last} alone: {pool:?}");
        })
        .unwrap()
        .join()
        .unwrap();
}

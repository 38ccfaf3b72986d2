//! Picking the device, making CUDA visible to libtorch where there is a GPU, and the few calls
//! into libtorch outside the models themselves (thread counts, gradients), so that a build without
//! the `torch` feature (ONNX only) has them as no-ops in one place.
#[cfg(feature = "torch")]
pub use tch::Device;

/// Where models run. Without libtorch, ONNX Runtime's CPU provider: the CPU.
#[cfg(not(feature = "torch"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
}

/// `--device`: where the models run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

#[cfg(not(feature = "torch"))]
pub fn resolve_device(choice: DeviceChoice) -> anyhow::Result<Device> {
    match choice {
        DeviceChoice::Cpu | DeviceChoice::Auto => Ok(Device::Cpu),
        DeviceChoice::Cuda => anyhow::bail!("--device cuda was asked for, but this build has no libtorch (ONNX only)"),
    }
}

#[cfg(feature = "torch")]
pub fn resolve_device(choice: DeviceChoice) -> anyhow::Result<Device> {
    if choice != DeviceChoice::Cpu {
        load_cuda_backend();
    }
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => anyhow::bail!("--device cuda was asked for, but libtorch sees no CUDA device"),
    }
}

pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        #[cfg(feature = "torch")]
        Device::Cuda(i) => format!("cuda:{i}"),
        #[cfg(feature = "torch")]
        other => format!("{other:?}").to_lowercase(),
    }
}

/// libtorch's intra-op thread count, which is per calling thread (OpenMP). ONNX Runtime's is per
/// session, fixed when it is made.
pub fn set_torch_threads(threads: usize) {
    #[cfg(feature = "torch")]
    tch::set_num_threads(threads as i32);
    #[cfg(not(feature = "torch"))]
    let _ = threads;
}

/// The CPUs the calling thread may run on, in order (empty where that cannot be read).
pub fn allowed_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is plain data, filled in by sched_getaffinity for this thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return Vec::new();
            }
            (0..libc::CPU_SETSIZE as usize).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect()
        }
    }
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

/// OpenMP's binding variables, when the environment sets one: libgomp, loaded with libtorch,
/// reads them before `main` runs (OMP_PROC_BIND other than false, OMP_PLACES, GOMP_CPU_AFFINITY).
#[cfg(all(feature = "torch", target_os = "linux"))]
fn openmp_binding_asked() -> Option<(&'static str, String)> {
    ["OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY"].into_iter().find_map(|name| {
        let value = std::env::var(name).ok()?;
        let off = name == "OMP_PROC_BIND" && value.trim().eq_ignore_ascii_case("false");
        (!off).then_some((name, value))
    })
}

/// Undoes what OpenMP's binding variables do to this server. libgomp acts on them before `main`:
/// it pins the process's first thread to one place, and every thread made after it inherits that
/// pin, so the server counted one core and ran every thread on it (measured with
/// OMP_PROC_BIND=true, which PyTorch tuning guides recommend: one inference thread, every thread
/// on CPU 0, half the throughput on 2 cores, and no word of it). The server binds its own threads
/// (`bind_torch_team`), so the first thread gets back every CPU the kernel allows it (its cpuset),
/// which must happen before any other thread exists. Returns what was done, for the log.
pub fn undo_openmp_pin() -> Option<String> {
    #[cfg(all(feature = "torch", target_os = "linux"))]
    {
        let (name, value) = openmp_binding_asked()?;
        let before = allowed_cpus();
        // Every CPU there is: the kernel keeps those this process's cpuset allows.
        if !set_this_thread_cpus(0..libc::CPU_SETSIZE as usize) {
            let error = std::io::Error::last_os_error();
            return Some(format!(
                "{name}={value} pinned the server to CPUs {before:?} ({error} widening it): unset {name}"
            ));
        }
        let after = allowed_cpus();
        (after != before).then(|| {
            format!(
                "{name}={value} made libgomp pin the server to CPUs {before:?}: widened back to {after:?}; \
                 the server binds its own threads (--no-thread-binding turns that off): unset {name}"
            )
        })
    }
    #[cfg(not(all(feature = "torch", target_os = "linux")))]
    None
}

/// Binds the calling thread and the OpenMP team libtorch gives it for `threads` intra-op threads
/// to cores (src/runtime/omp_affinity.cpp): the team's thread t to the (first + t)-th CPU this thread
/// may run on. True when every thread of the team was bound. Without libtorch, only the calling
/// thread, to the first-th CPU (ONNX Runtime's lone sessions bind their pool threads to the next).
pub fn bind_torch_team(first: usize, threads: usize) -> bool {
    #[cfg(feature = "torch")]
    {
        let cpus = allowed_cpus();
        // SAFETY: runs one OpenMP region that sets each team thread's own affinity; reads `cpus`
        // (pointer and length of a live Vec) only during the call.
        unsafe {
            omp::food_api_bind_omp_team(cpus.as_ptr(), cpus.len(), first as i32, threads as i32) == threads as i32
        }
    }
    #[cfg(not(feature = "torch"))]
    {
        let _ = threads;
        bind_this_thread(first)
    }
}

#[cfg(not(feature = "torch"))]
fn bind_this_thread(first: usize) -> bool {
    let cpus = allowed_cpus();
    if cpus.is_empty() {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        set_this_thread_cpus([cpus[first % cpus.len()]])
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Sets the calling thread's CPUs to `cpus`; the kernel keeps those its cpuset allows.
#[cfg(target_os = "linux")]
fn set_this_thread_cpus(cpus: impl IntoIterator<Item = usize>) -> bool {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0) sets the calling thread's mask.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

#[cfg(feature = "torch")]
mod omp {
    extern "C" {
        pub fn food_api_bind_omp_team(cpus: *const usize, n: usize, first: i32, threads: i32) -> i32;
    }
}

/// Turns on oneDNN Graph fusion (src/runtime/onednn_fusion.cpp) for the process: from now on, graphs
/// that a thread optimizes inside `fusing()` are fused. Idempotent; a no-op without libtorch.
pub fn enable_onednn_fusion() {
    #[cfg(feature = "torch")]
    {
        // SAFETY: registers a pass with libtorch's pass manager, once; takes and returns nothing.
        unsafe { onednn::food_api_onednn_fusion_register() }
        ONEDNN_FUSION.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(feature = "torch")]
static ONEDNN_FUSION: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether `enable_onednn_fusion` was called, and how many graphs were fused since: the first
/// optimisation of the image model's forward pass fuses one.
pub fn onednn_fusion() -> (bool, u64) {
    #[cfg(feature = "torch")]
    {
        // SAFETY: reads an atomic counter.
        let fused = unsafe { onednn::food_api_onednn_fused_graphs() };
        (ONEDNN_FUSION.load(std::sync::atomic::Ordering::Relaxed), fused)
    }
    #[cfg(not(feature = "torch"))]
    (false, 0)
}

/// While the guard lives, TorchScript graphs the calling thread optimizes are fused, if
/// `enable_onednn_fusion` was called; the image model's forward pass runs inside one.
pub struct Fusing(());

pub fn fusing() -> Fusing {
    #[cfg(feature = "torch")]
    // SAFETY: sets a thread-local flag.
    unsafe {
        onednn::food_api_onednn_fusion_here(true)
    }
    Fusing(())
}

impl Drop for Fusing {
    fn drop(&mut self) {
        #[cfg(feature = "torch")]
        // SAFETY: as in `fusing`.
        unsafe {
            onednn::food_api_onednn_fusion_here(false)
        }
    }
}

#[cfg(feature = "torch")]
mod onednn {
    extern "C" {
        pub fn food_api_onednn_fusion_register();
        pub fn food_api_onednn_fusion_here(on: bool);
        pub fn food_api_onednn_fused_graphs() -> u64;
    }
}

/// Gradients off for as long as the guard lives (libtorch records them otherwise).
pub struct NoGrad {
    #[cfg(feature = "torch")]
    _guard: tch::NoGradGuard,
}

pub fn no_grad() -> NoGrad {
    NoGrad {
        #[cfg(feature = "torch")]
        _guard: tch::no_grad_guard(),
    }
}

#[cfg(feature = "torch")]
/// Nothing in the binary uses a symbol of libtorch_cuda, so the linker drops it and libtorch would
/// never see a GPU. Linking it anyway costs about 170 MB of RSS on every CPU-only machine, so it
/// is loaded here instead, and only where an NVIDIA driver is installed.
fn load_cuda_backend() {
    let (Some(lib_dir), true) =
        (option_env!("FOOD_API_LIBTORCH_LIB"), std::path::Path::new("/proc/driver/nvidia/version").exists())
    else {
        return;
    };
    let path = std::path::Path::new(lib_dir).join("libtorch_cuda.so");
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
    // SAFETY: libtorch_cuda's initialisers only register its CUDA hooks with the libtorch already
    // loaded; the library stays loaded for the life of the process.
    match unsafe { libloading::os::unix::Library::open(Some(&path), flags) } {
        Ok(library) => std::mem::forget(library),
        Err(e) => {
            tracing::warn!(error = %e, "an NVIDIA driver is present but libtorch_cuda did not load; using the CPU")
        }
    }
}

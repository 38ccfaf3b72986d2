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

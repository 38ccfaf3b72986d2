//! Picking the device, and making CUDA visible to libtorch where there is a GPU.
use std::path::Path;

use tch::Device;

/// `--device`: where the models run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

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
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Nothing in the binary uses a symbol of libtorch_cuda, so the linker drops it and libtorch would
/// never see a GPU. Linking it anyway costs about 170 MB of RSS on every CPU-only machine, so it
/// is loaded here instead, and only where an NVIDIA driver is installed.
fn load_cuda_backend() {
    let (Some(lib_dir), true) =
        (option_env!("FOOD_API_LIBTORCH_LIB"), Path::new("/proc/driver/nvidia/version").exists())
    else {
        return;
    };
    let path = Path::new(lib_dir).join("libtorch_cuda.so");
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

//! Uploaded weights are untrusted: libtorch's loader is not safe on untrusted input (it may crash
//! the process), and a TorchScript or ONNX file is a program. So a new version is first loaded and
//! warmed up in a child process, the binary itself run as `food-api validate <folder>`, with a time
//! limit and an address-space limit, inside a sandbox it enters before reading the folder
//! (src/sandbox.rs: it reads only the folder and the libraries, writes nothing, opens no network
//! socket), and with the server's own settings (oneDNN fusion, thread counts, device), so that it
//! runs the code path the server will. A file that crashes, hangs, balloons or breaks out of the
//! child is refused, and the server carries on.
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::runtime::{Device, Fingerprint, LoadError, LoadedModel, ModelPaths, ThreadLayout, TorchThreads};
use crate::versions::CLASS_MAPPING_FILE;

/// The server's settings that change how a model runs, handed to the child.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RunSettings {
    pub fusion: bool,
    pub inference_threads: usize,
    pub shared_threads: usize,
    pub alone_threads: usize,
    /// None: the CPU; Some(n): CUDA device n.
    pub cuda: Option<usize>,
}

impl RunSettings {
    pub fn of(device: Device, layout: ThreadLayout, fusion: bool) -> Self {
        #[cfg(feature = "torch")]
        let cuda = match device {
            Device::Cuda(n) => Some(n),
            _ => None,
        };
        #[cfg(not(feature = "torch"))]
        let cuda = {
            let _ = device;
            None
        };
        let TorchThreads { shared, alone } = layout.torch;
        Self { fusion, inference_threads: layout.inference_threads, shared_threads: shared, alone_threads: alone, cuda }
    }

    fn device(&self) -> Device {
        #[cfg(feature = "torch")]
        if let Some(n) = self.cuda {
            return Device::Cuda(n);
        }
        Device::Cpu
    }

    /// Not bound to cores: the child must not take the serving threads' cores.
    fn layout(&self) -> ThreadLayout {
        let torch = TorchThreads { shared: self.shared_threads.max(1), alone: self.alone_threads.max(1) };
        ThreadLayout { inference_threads: self.inference_threads.max(1), torch, bind: false }
    }
}

const SETTINGS_ENV: &str = "FOOD_API_VALIDATE_SETTINGS";

/// What the child checked, and how: the upload's answer shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Validated {
    /// SHA-256 over the version's files, hex
    #[schema(value_type = String)]
    pub fingerprint: Fingerprint,
    /// What held of the sandbox (src/sandbox.rs `enter`).
    pub sandbox: String,
    /// oneDNN Graph fusion on, as in the server, and the graphs it fused during the warm-up.
    pub fusion: bool,
    pub fused_graphs: u64,
    /// libtorch's (or ONNX Runtime's) threads for a pass under load and for a lone request.
    pub threads: [usize; 2],
}

/// `food-api validate <folder>`: one JSON line on stdout, exit code 0 if the folder is a model.
/// Call before any thread is started: the sandbox is entered first, and holds for every thread.
pub fn run(folder: Option<&std::ffi::OsStr>) -> ! {
    let Some(folder) = folder.map(PathBuf::from) else {
        eprintln!("usage: food-api validate <version folder>");
        std::process::exit(2);
    };
    // Without the server's settings (run by hand): one thread, no fusion, the CPU.
    let settings: RunSettings =
        std::env::var(SETTINGS_ENV).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(RunSettings {
            fusion: false,
            inference_threads: 1,
            shared_threads: 1,
            alone_threads: 1,
            cuda: None,
        });
    let sandbox = crate::sandbox::enter(&folder);
    let layout = settings.layout();
    crate::runtime::set_torch_threads(layout.torch.shared);
    if settings.fusion {
        crate::runtime::enable_onednn_fusion();
    }
    let paths = ModelPaths { class_mapping: folder.join(CLASS_MAPPING_FILE), model_dir: folder };
    match LoadedModel::load(&paths, settings.device(), layout, 0) {
        Ok(model) => {
            let validated = Validated {
                fingerprint: model.id.fingerprint,
                sandbox,
                fusion: settings.fusion,
                fused_graphs: crate::runtime::onednn_fusion().1,
                threads: [layout.torch.shared, layout.torch.alone],
            };
            println!("{}", json!({ "ok": true, "validated": validated }));
            std::process::exit(0)
        }
        Err(e) => {
            let file = e.file.file_name().map(|n| n.to_string_lossy().to_string());
            println!("{}", json!({ "ok": false, "file": file, "reason": e.reason }));
            std::process::exit(1)
        }
    }
}

#[derive(Debug, Clone)]
pub struct ValidationLimits {
    /// The binary to run as the validator (this one, unless told otherwise).
    pub binary: PathBuf,
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub settings: RunSettings,
}

/// Validates `folder` in a child process. Blocking: call it off the async workers.
pub fn in_child(folder: &Path, limits: &ValidationLimits) -> Result<Validated, LoadError> {
    let refuse = |reason: String| LoadError::new(folder, reason);
    let mut command = Command::new(&limits.binary);
    command
        .arg("validate")
        .arg(folder)
        .env("RUST_LOG", "off")
        .env(SETTINGS_ENV, serde_json::to_string(&limits.settings).unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let memory = limits.memory_bytes;
    // SAFETY: only an async-signal-safe call between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: memory, rlim_max: memory };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child =
        command.spawn().map_err(|e| refuse(format!("cannot start the validator {}: {e}", limits.binary.display())))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| refuse(format!("cannot wait for the validator: {e}")))? {
            Some(status) => break status,
            None if started.elapsed() > limits.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(refuse(format!(
                    "loading and warming up did not finish within {} s: refused",
                    limits.timeout.as_secs()
                )));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut out = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout.take(64 * 1024).read_to_string(&mut out);
    }
    if let Some(signal) = status.signal() {
        return Err(refuse(format!(
            "these files crashed the validator (signal {signal}); refused, nothing was loaded into the server"
        )));
    }
    let answer: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
    if status.success() && answer["ok"] == true {
        let validated: Validated = serde_json::from_value(answer["validated"].clone())
            .map_err(|e| refuse(format!("the validator's answer is not understood: {e}")))?;
        if validated.sandbox != "landlock+seccomp" {
            tracing::warn!(sandbox = validated.sandbox, "the validator ran without its full sandbox");
        }
        return Ok(validated);
    }
    let file = answer["file"].as_str().map_or_else(|| folder.to_path_buf(), |f| folder.join(f));
    let reason = answer["reason"].as_str().map_or_else(
        || format!("the validator failed ({status}), out of memory perhaps (limit {} MB)", memory >> 20),
        str::to_string,
    );
    Err(LoadError::new(&file, reason))
}

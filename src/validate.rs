//! Uploaded weights are untrusted, and libtorch's loader is not safe on untrusted input (it may
//! crash the process). So a new version is first loaded and warmed up in a child process, the
//! binary itself run as `food-api validate <folder>`, with a time limit and an address-space
//! limit: a file that crashes, hangs or balloons the child is refused, and the server carries on.
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::model::Device;
use serde_json::json;

use crate::model::{Fingerprint, LoadError, LoadedModel, ModelPaths, ThreadLayout, TorchThreads, CLASS_MAPPING_FILE};

/// `food-api validate <folder>`: one JSON line on stdout, exit code 0 if the folder is a model.
pub fn run(folder: Option<&std::ffi::OsStr>) -> ! {
    let Some(folder) = folder.map(PathBuf::from) else {
        eprintln!("usage: food-api validate <version folder>");
        std::process::exit(2);
    };
    let paths = ModelPaths { class_mapping: folder.join(CLASS_MAPPING_FILE), model_dir: folder };
    let layout = ThreadLayout { inference_threads: 1, torch: TorchThreads { shared: 1, alone: 1 }, bind: false };
    match LoadedModel::load(&paths, Device::Cpu, layout, 0) {
        Ok(model) => {
            println!("{}", json!({ "ok": true, "fingerprint": model.id.fingerprint }));
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
}

/// Validates `folder` in a child process. Blocking: call it off the async workers.
pub fn in_child(folder: &Path, limits: &ValidationLimits) -> Result<Fingerprint, LoadError> {
    let refuse = |reason: String| LoadError::new(folder, reason);
    let mut command = Command::new(&limits.binary);
    command
        .arg("validate")
        .arg(folder)
        .env("RUST_LOG", "off")
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
        return answer["fingerprint"]
            .as_str()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| refuse("the validator gave no fingerprint".into()));
    }
    let file = answer["file"].as_str().map_or_else(|| folder.to_path_buf(), |f| folder.join(f));
    let reason = answer["reason"].as_str().map_or_else(
        || format!("the validator failed ({status}), out of memory perhaps (limit {} MB)", memory >> 20),
        str::to_string,
    );
    Err(LoadError::new(&file, reason))
}

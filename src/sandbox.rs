//! The validator's sandbox: a process that loads and runs a model nobody has vetted yet limits
//! itself, before it reads the model, to reading its version folder and the libraries and system
//! facts a model needs, writing nothing, and opening no network socket and no other program.
//! Linux's unprivileged means, no root needed: Landlock (file system, TCP, signals and abstract
//! sockets outside the sandbox) and seccomp (sockets other than Unix ones, exec). Landlock is
//! best effort: a kernel without it (before 5.13, or turned off) leaves the file system open, and
//! the status says so; seccomp holds wherever the kernel has it (every kernel since 3.5).
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};

/// What held, reported by the validator to the server (which warns unless it is everything):
/// "landlock+seccomp", or what is missing and why. A part that this system refuses (a kernel
/// without Landlock, a container whose seccomp profile forbids its calls) is left out rather than
/// failing every validation: the server's own checks (operator allowlist, ONNX external data) and
/// the child's limits still hold.
pub fn enter(folder: &Path) -> String {
    let landlock = match restrict_files(folder) {
        Ok(RulesetStatus::FullyEnforced) => "landlock".to_string(),
        Ok(RulesetStatus::PartiallyEnforced) => "landlock (partly: an older kernel)".to_string(),
        Ok(RulesetStatus::NotEnforced) => "no landlock (not in this kernel: the file system is open)".to_string(),
        Err(e) => format!("no landlock ({e}: the file system is open)"),
    };
    match restrict_syscalls() {
        Ok(()) => format!("{landlock}+seccomp"),
        Err(e) => format!("{landlock}+no seccomp ({e}: sockets and exec are open)"),
    }
}

/// Read-only places besides the folder: the runtime's libraries (ONNX Runtime is opened at run
/// time), the CPU and cgroup facts thread counts come from, and the loader's own files.
fn readable(folder: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> =
        ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/proc", "/sys/devices/system", "/sys/fs/cgroup", "/dev/null"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
    paths.push(folder.to_path_buf());
    let ort =
        std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).or(option_env!("FOOD_API_ORT_DYLIB").map(PathBuf::from));
    let torch = option_env!("FOOD_API_LIBTORCH_LIB").map(PathBuf::from);
    // The links' targets: Landlock checks the file that is opened, not the link's name.
    for library in ort.into_iter().chain(torch) {
        if let Ok(real) = std::fs::canonicalize(&library) {
            paths.extend(real.parent().map(Path::to_path_buf));
        }
    }
    paths
}

fn restrict_files(folder: &Path) -> Result<RulesetStatus, String> {
    let abi = ABI::V6;
    let failed = |e: landlock::RulesetError| format!("cannot set up Landlock: {e}");
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(failed)?
        .handle_access(AccessNet::from_all(abi))
        .map_err(failed)?
        .scope(Scope::from_all(abi))
        .map_err(failed)?
        .create()
        .map_err(failed)?;
    for path in readable(folder) {
        // A place this system lacks (no /lib64, no cgroup mount) is simply not granted.
        // A file (ld.so.cache) takes only a file's rights: directory ones would make the rule partial.
        let access = match path.is_dir() {
            true => AccessFs::from_read(abi),
            false => AccessFs::from_read(abi) & AccessFs::from_file(abi),
        };
        if let Ok(fd) = PathFd::new(&path) {
            ruleset = ruleset.add_rule(PathBeneath::new(fd, access)).map_err(failed)?;
        }
    }
    Ok(ruleset.restrict_self().map_err(failed)?.ruleset)
}

/// Sockets other than Unix ones, and running another program, fail with EPERM.
fn restrict_syscalls() -> Result<(), String> {
    let failed = |e: seccompiler::Error| format!("cannot set up seccomp: {e}");
    let not_unix = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, libc::AF_UNIX as u64)
        .map_err(|e| failed(e.into()))?;
    let rules = [
        (libc::SYS_socket, vec![SeccompRule::new(vec![not_unix]).map_err(|e| failed(e.into()))?]),
        (libc::SYS_execve, vec![]),
        (libc::SYS_execveat, vec![]),
    ];
    let arch = std::env::consts::ARCH.try_into().map_err(|e: seccompiler::BackendError| failed(e.into()))?;
    let filter = SeccompFilter::new(
        rules.into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| failed(e.into()))?;
    let program: seccompiler::BpfProgram =
        filter.try_into().map_err(|e: seccompiler::BackendError| failed(e.into()))?;
    seccompiler::apply_filter_all_threads(&program).map_err(failed)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::Command;

    const CHILD: &str = "FOOD_API_SANDBOX_TEST_FOLDER";

    /// Run by `contains_files_network_and_programs` in a child process: enters the sandbox and
    /// tries what a hostile model would, printing one line per attempt.
    #[test]
    fn sandboxed_child() {
        let Some(folder) = std::env::var_os(CHILD) else { return };
        let folder = std::path::PathBuf::from(folder);
        let status = super::enter(&folder);
        let outside = folder.parent().unwrap().join("outside.txt");
        let attempts = [
            ("status", status),
            ("read inside", format!("{:?}", std::fs::read_to_string(folder.join("weights.pt")).is_ok())),
            ("read outside", format!("{:?}", std::fs::read_to_string(&outside).is_ok())),
            (
                "read the project",
                format!("{:?}", std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).is_ok()),
            ),
            ("write inside", format!("{:?}", std::fs::write(folder.join("new"), b"x").is_ok())),
            ("write outside", format!("{:?}", std::fs::write(folder.parent().unwrap().join("new"), b"x").is_ok())),
            (
                "connect",
                format!(
                    "{:?}",
                    std::net::TcpStream::connect(std::env::var("FOOD_API_SANDBOX_TEST_PORT").unwrap()).is_ok()
                ),
            ),
            ("udp", format!("{:?}", std::net::UdpSocket::bind("127.0.0.1:0").is_ok())),
            ("exec", format!("{:?}", Command::new("/bin/true").status().is_ok())),
        ];
        let mut out = std::io::stdout().lock();
        for (what, outcome) in attempts {
            writeln!(out, "SANDBOX {what}: {outcome}").unwrap();
        }
    }

    #[test]
    fn contains_files_network_and_programs() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("version");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("weights.pt"), b"weights").unwrap();
        std::fs::write(dir.path().join("outside.txt"), b"secret").unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sandbox::tests::sandboxed_child", "--nocapture", "--test-threads=1"])
            .env(CHILD, &folder)
            .env("FOOD_API_SANDBOX_TEST_PORT", listener.local_addr().unwrap().to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = stdout.lines().filter_map(|l| l.split_once("SANDBOX ").map(|(_, line)| line)).collect();
        assert_eq!(
            lines,
            [
                "status: landlock+seccomp",
                "read inside: true",
                "read outside: false",
                "read the project: false",
                "write inside: false",
                "write outside: false",
                "connect: false",
                "udp: false",
                "exec: false",
            ],
            "this kernel has Landlock (ABI 7 on these machines): every line must hold\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!dir.path().join("new").exists() && !folder.join("new").exists());
    }
}

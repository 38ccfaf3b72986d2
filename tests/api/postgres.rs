//! A real PostgreSQL server (Debian's `postgresql` package, which `scripts/setup.sh --test`
//! installs) for one test: its own cluster in a temporary folder, on a free loopback port, stopped
//! (and removed) when dropped. A test can stop and start it again on the same port.
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
}

/// The newest installed server's programs; a missing package fails loudly, naming the fix.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).expect(
        "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb): the history tests need it; \
         scripts/test.sh installs it (apt-get install postgresql)",
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// PostgreSQL refuses to run as root: as root, its programs run as the package's `postgres` user.
fn command(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str, log: &Path) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    if !output.status.success() {
        panic!(
            "{what} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

impl Postgres {
    pub async fn start() -> Self {
        tokio::task::spawn_blocking(|| {
            let dir = tempfile::Builder::new().prefix("food-api-pg").tempdir().unwrap();
            if is_root() {
                let mut chown = Command::new("chown");
                chown.arg("postgres:").arg(dir.path());
                run(chown, "chown", Path::new(""));
            }
            let bin = bin_dir();
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let server = Self { dir, bin, port };
            let mut initdb = command(&server.bin.join("initdb"));
            initdb.arg("-D").arg(server.data()).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
            run(initdb, "initdb", &server.log());
            server.start_blocking();
            server
        })
        .await
        .unwrap()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut pg_ctl = command(&self.bin.join("pg_ctl"));
        pg_ctl.arg("-D").arg(self.data()).arg("-l").arg(self.log()).args(args);
        pg_ctl
    }

    fn start_command(&self) -> Command {
        // Durability off: a test's cluster is thrown away, and the writer's speed is not judged here.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        self.pg_ctl(&["-w", "-o", &options, "start"])
    }

    fn start_blocking(&self) {
        run(self.start_command(), "pg_ctl start", &self.log());
    }

    /// Starts the stopped server again, on the same port and data.
    pub async fn resume(&self) {
        let (start, log) = (self.start_command(), self.log());
        tokio::task::spawn_blocking(move || run(start, "pg_ctl start", &log)).await.unwrap();
    }

    /// Stops the server (fast shutdown: connections are cut, as when a database goes down).
    pub async fn stop(&self) {
        let (stop, log) = (self.pg_ctl(&["-w", "-m", "fast", "stop"]), self.log());
        tokio::task::spawn_blocking(move || run(stop, "pg_ctl stop", &log)).await.unwrap();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-w", "-m", "immediate", "stop"]).output();
    }
}

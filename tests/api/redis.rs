//! A real Redis server (Debian's `redis-server`, which `scripts/setup.sh --test` installs) for one
//! test: on a free loopback port, nothing persisted, stopped when dropped. A test can stop it and
//! start it again on the same port, or make it stall (`DEBUG SLEEP`).
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    port: u16,
    child: Option<Child>,
    /// Set by `require_password`: every command then authenticates first.
    password: Option<String>,
}

impl Redis {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = Self { port, child: None, password: None };
        redis.resume();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on its port, and waits until it answers.
    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local", "--dir", &std::env::temp_dir().to_string_lossy()])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: the shared cache tests need it; scripts/test.sh installs it (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command("PING").as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server did not answer on port {} within 10 s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// From now on the server asks for `password` (CONFIG SET requirepass).
    pub fn require_password(&mut self, password: &str) {
        assert_eq!(self.command(&format!("CONFIG SET requirepass {password}")).as_deref(), Some("+OK"));
        self.password = Some(password.to_string());
    }

    /// One inline command (after AUTH when a password is required); its first reply line, or None
    /// when the server does not answer.
    pub fn command(&self, command: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let auth = self.password.as_ref().map(|p| format!("AUTH {p}\r\n")).unwrap_or_default();
        stream.write_all(format!("{auth}{command}\r\n").as_bytes()).ok()?;
        let (mut reply, mut got) = ([0u8; 512], 0);
        let lines = if auth.is_empty() { 1 } else { 2 };
        while String::from_utf8_lossy(&reply[..got]).matches("\r\n").count() < lines {
            let n = stream.read(&mut reply[got..]).ok()?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Some(String::from_utf8_lossy(&reply[..got]).lines().nth(lines - 1)?.to_string())
    }

    /// True when the server takes longer than 200 ms to answer a PING (a `DEBUG SLEEP` holds it).
    pub fn stalled(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        stream.write_all(b"PING\r\n").unwrap();
        stream.read(&mut [0u8; 16]).is_err()
    }

    /// The keys the server holds.
    pub fn keys(&self) -> usize {
        let reply = self.command("DBSIZE").expect("redis answers");
        reply.trim_start_matches(':').parse().unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

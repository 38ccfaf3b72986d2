//! `food-api healthcheck`: GET /health on this container's own port, exit 0 on 200. The image's
//! HEALTHCHECK runs it, so the runtime image needs no curl (nor its libraries).
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub fn run() -> ! {
    let port = std::env::var("FOOD_API_PORT").ok().and_then(|p| p.parse::<u16>().ok()).unwrap_or(8000);
    match check(port) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("unhealthy: {e}");
            std::process::exit(1);
        }
    }
}

fn check(port: u16) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut head = [0u8; 16];
    let n = stream.read(&mut head)?;
    match std::str::from_utf8(&head[..n]).unwrap_or("").split(' ').nth(1) {
        Some("200") => Ok(()),
        status => Err(std::io::Error::other(format!("GET /health answered {status:?}"))),
    }
}

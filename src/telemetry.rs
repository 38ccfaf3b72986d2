//! Logs through `tracing`: RUST_LOG picks the levels, info by default.
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init_subscriber() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second call (several apps in one test binary) keeps the first subscriber.
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

//! The process allocator: jemalloc, for Rust and (unprefixed) for libtorch's C++ alike.
//!
//! A model is a few hundred MB of tensors that libtorch allocates with `malloc`. Under glibc, each
//! reload under traffic stranded more of them in fragmented arenas: bench/soak.py measured +198%
//! RSS in 5 minutes, still +21% with two arenas and a `malloc_trim` after every swap, while the
//! same reloads without traffic stayed flat. jemalloc (also what Intel's PyTorch CPU tuning guide
//! recommends for inference) returns freed pages by itself; see RELIABILITY.md for the figures.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Read by jemalloc at start: a background thread hands freed pages back to the OS within about
/// a second (the default is 10 s, which lets two models' worth of pages linger after a reload).
/// An operator's `MALLOC_CONF` still overrides it.
#[allow(non_upper_case_globals)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000\0";

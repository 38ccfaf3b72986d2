//! glibc allocator settings that keep RSS flat while models come and go.
//!
//! A model is a few hundred MB of tensors allocated by libtorch through `malloc`. Without these
//! settings each reload under traffic left tens of MB behind in glibc's per-thread arenas
//! (bench/soak.py: +198% RSS in 5 minutes): the memory was free, but never handed back.

/// Caps glibc at two malloc arenas (the default is 8 per core, one per thread that allocates:
/// actix workers, the inference thread, OpenMP workers and loader threads each strand freed
/// model memory in their own). Measured here: same latency, ~50 MB lower RSS, flat across reloads.
/// Call first thing in `main`, before any thread starts. An operator's own `GLIBC_TUNABLES` or
/// `MALLOC_ARENA_MAX` wins.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() && std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator parameters; called before other threads exist.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    }
}

/// Hands the free pages of every arena back to the OS. Called when a model has been freed and
/// before a new one loads. It takes a few milliseconds with a model's worth of free memory.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let started = std::time::Instant::now();
        // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
        unsafe { libc::malloc_trim(0) };
        tracing::debug!(ms = started.elapsed().as_secs_f64() * 1e3, "malloc_trim");
    }
}

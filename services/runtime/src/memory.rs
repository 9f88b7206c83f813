//! How a service starts: glibc's malloc arenas capped, then the Tokio runtime.
//!
//! glibc gives each thread that allocates its own malloc arena, up to eight
//! per core, and an arena keeps the memory it once held. A stage runs a
//! librdkafka thread per broker beside Tokio's workers, so while it drains a
//! backlog each of them grows an arena of its own. Two arenas are enough for
//! a service whose work is one batch at a time.
//!
//! Measured together with the smaller consumer read-ahead of the same change
//! (`runner::client`'s `CONSUMER_MEMORY`), while draining 1,000,000 records,
//! four runs each, alternating with neither: the aggregator peaked at 46–48 MB
//! instead of 58–64 MB, and the processor at 72–76 MB instead of 88–92 MB, at
//! the same drain rate. The cap alone took 3–13 MB off in shorter drains
//! (`docs/benchmarks.md`, "What a draining stage's memory is made of").

use std::future::Future;

/// The most malloc arenas a service's threads share.
pub const MALLOC_ARENAS: i32 = 2;

/// Runs a service's `main` on a multi-threaded Tokio runtime, with the malloc
/// arenas capped before any thread exists (glibc only counts the cap when it
/// would create an arena, so it must come first).
pub fn service_main<F>(main: F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    cap_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(main)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn cap_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists. It returns 0 on failure, which leaves glibc's
    // default: more memory, nothing else.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn cap_malloc_arenas() {}

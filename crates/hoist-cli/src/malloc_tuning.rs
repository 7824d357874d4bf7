//! glibc malloc tuning for hoist's client commands.
//!
//! glibc raises its mmap threshold each time it frees an mmapped block (up to
//! 32 MiB): after the first layer buffer of a few MiB is freed, every later buffer of
//! that size comes from the per-thread arenas instead, and each runtime or blocking
//! thread keeps its own arena's freed megabytes. At 150 services `hoist ci` held
//! ~34 MB of anonymous memory for a heap that never exceeded ~13 MB. A fixed
//! threshold (which also turns the dynamic adjustment off) gives big buffers back to
//! the kernel when they are freed: ~16 MB anonymous at the same heap peak.
//!
//! Not for `hoist image` and `hoist registry`: one-shot commands (their memory is gone
//! when they exit; the long-lived dev loop's is what the tuning is for) that move blobs,
//! whose HTTP buffers and 256 KiB upload pieces would each be mmapped and unmapped. A
//! 150 MB copy took ~13,000 page faults with the fixed threshold and ~4,000 with glibc's
//! dynamic one, ~10 ms of CPU apart. A 1 MiB threshold for every command was tried too:
//! `hoist ci`'s peak RSS went from 31 to 44 MB.

/// glibc's own default, made fixed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Call before any thread starts (allocator settings are process-wide).
pub fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called on the main
    // thread before other threads exist.
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 {
            tracing::debug!("mallopt(M_MMAP_THRESHOLD) was refused");
        }
    }
}

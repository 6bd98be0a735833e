//! Process-wide settings of the CPU runtime that the model's speed depends on: how candle
//! spreads element-wise work over threads, and how freed tensor buffers go back to the system.

/// Keeps candle's element-wise ops on the calling thread unless `CANDLE_NUM_THREADS` says
/// otherwise, fixes the matmul thread count once, and keeps freed tensor buffers in the
/// allocator's heap.
///
/// candle 0.11 runs element-wise ops on a spinning worker pool of its own beside rayon's
/// matmul workers; the spinning workers take cores from the matmuls that follow. glibc
/// returns every buffer above its mmap threshold to the kernel on free, and the next training
/// step maps and zero-fills the same megabytes again page by page (4.4 million page faults
/// in 4 steps of SmolLM2 training, 0.8 million with the buffers kept; measured with
/// `perf stat -e page-faults`). [`release_freed_memory`] gives the memory back after a job.
///
/// # Safety
/// Sets an environment variable: call it before any other thread exists, first thing in `main`.
pub unsafe fn configure() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: the caller guarantees no other thread is running.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Without it candle counts the physical cores again for every matmul, reading
        // /proc/cpuinfo each time (5% of f32 decoding in `perf`); the count does not change.
        let threads = candle_core::utils::get_num_threads().to_string();
        // SAFETY: the caller guarantees no other thread is running.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads) };
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const KEEP_BELOW: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes allocator parameters; both values are in range.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, KEEP_BELOW);
            libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP_BELOW);
        }
    }
}

/// Returns the free memory of the allocator's heap to the system: after a training or
/// evaluation job, so that the workbench does not keep the job's peak while it sits idle.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory that no allocation holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

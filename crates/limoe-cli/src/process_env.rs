//! The environment training runs best in, set by the binary itself at start-up, so that
//! `limoe run`, `just run`, `limoe bench` and sweep trials (child processes, which inherit
//! it) all train alike. A user's own setting of either knob wins.

/// Frees below this size stay in glibc's heap instead of being unmapped: every candle op
/// allocates a fresh output, and with glibc's defaults its large buffers are mmap'd and
/// unmapped op after op, so each step pays page faults. The same as
/// `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;
/// Free memory at the top of the heap is returned to the system only above this size.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 1 << 30;

/// candle's own elementwise ops stay on the calling thread: its spinning barrier pool costs
/// more than it gains, since limoe's fused ops and matmuls already use every core.
const CANDLE_THREADS: &str = "1";

/// Launcher variables holding how many ranks share this machine (Open MPI, MPICH).
const LOCAL_RANKS: [&str; 2] = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"];

/// Tunes the allocator, candle's threads and, when a launcher put several ranks on this
/// machine, each rank's share of the cores (rayon's pool, which the kernels use), so that
/// ranks do not each start a thread per core. Must run first in `main`, before any thread
/// exists (it sets environment variables) and before candle's or rayon's pool starts.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
        // SAFETY: mallopt only changes allocator parameters; no allocation is in flight
        // on another thread at start-up.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: called at the start of `main`, while the process has one thread.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", CANDLE_THREADS) };
    }
    let local_ranks = (LOCAL_RANKS.iter())
        .find_map(|var| std::env::var(var).ok()?.parse::<usize>().ok())
        .filter(|&n| n > 1);
    if let Some(ranks) = local_ranks
        && std::env::var_os("RAYON_NUM_THREADS").is_none()
    {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let threads = (cores / ranks).max(1).to_string();
        // SAFETY: as above, the process has one thread.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads) };
    }
}

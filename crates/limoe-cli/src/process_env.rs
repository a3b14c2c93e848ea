//! The environment training runs best in, set by the binary itself at start-up, so that
//! `limoe run`, `just run`, `limoe bench` and sweep trials (child processes, which inherit
//! it) all train alike. A user's own setting of either knob wins.

/// No allocation is mmap'd: every one comes from glibc's heap, where a freed buffer is
/// reused. Every candle op allocates a fresh output, and an mmap'd buffer is unmapped when
/// freed, so the next one of its size pays a page fault per 4 KiB page. glibc caps its mmap
/// threshold at 32 MiB, so raising the threshold cannot keep tensors of 32 MiB and more in
/// the heap (S/16's expert weights and their gradients are exactly 32 MiB; every L/16 weight
/// is larger): with the threshold at its cap, an S/16 LIMoE step took 145k page faults
/// (590 MB of fresh pages), with no mmap 600. Threads other than the main one (the step runs
/// on rayon's) take their memory from arenas that grow in heaps of 64 MiB, so glibc still
/// maps a buffer larger than that. The same as `GLIBC_TUNABLES=glibc.malloc.mmap_max=0`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_MAX: libc::c_int = 0;
/// Free memory at the top of the heap is returned to the system only above this size.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 1 << 30;

/// Free memory kept at the top of a heap: a thread's arena deletes (unmaps) a heap that
/// holds nothing, whatever the trim threshold, unless this padding would not fit in it. So it
/// is one whole heap (64 MiB). Without it the rayon threads' heaps came and went: in
/// `limoe bench torch`, where each S/16 step follows a pause, the page faults per step grew
/// from 50k to 170k and the step from 1.4 to 1.9 s.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_PAD: libc::c_int = 64 << 20;

/// Sets [`MMAP_MAX`], [`TRIM_THRESHOLD`] and [`TOP_PAD`].
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters (under glibc's own lock).
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, MMAP_MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
    }
}

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
        tune_allocator();
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

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Once tuned, a buffer above glibc's largest mmap threshold (32 MiB) comes from the
    /// heap: the bytes glibc holds in mmap'd chunks do not grow by it. 48 MiB: this test's
    /// thread allocates from an arena whose heaps hold at most 64 MiB.
    #[test]
    fn large_buffers_come_from_the_heap() {
        super::tune_allocator();
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let mapped = || unsafe { libc::mallinfo2() }.hblkhd;
        let before = mapped();
        let buffer = std::hint::black_box(vec![1u8; 48 << 20]);
        let during = mapped();
        drop(buffer);
        assert!(
            during <= before,
            "a 48 MiB buffer was mmap'd ({before} -> {during} bytes)"
        );
    }

    /// Once tuned, a thread's arena keeps its heaps when everything in them is freed: the
    /// bytes the arenas hold do not drop by the 192 MiB freed.
    #[test]
    fn freed_heaps_of_a_thread_stay() {
        super::tune_allocator();
        std::thread::spawn(|| {
            // SAFETY: mallinfo2 only reads the allocator's statistics.
            let held = || unsafe { libc::mallinfo2() }.arena;
            let buffers: Vec<Vec<u8>> = (0..48)
                .map(|_| std::hint::black_box(vec![1u8; 4 << 20]))
                .collect();
            let during = held();
            drop(buffers);
            let after = held();
            assert!(
                after + (32 << 20) >= during,
                "freed heaps were unmapped ({during} -> {after} bytes)"
            );
        })
        .join()
        .unwrap();
    }
}

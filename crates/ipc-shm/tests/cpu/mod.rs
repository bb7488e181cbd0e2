//! CPU pinning for the tests that place threads on one CPU (pub-sub, pattern waiters).

/// The first CPU this thread may run on.
pub(crate) fn first_cpu() -> usize {
    let allowed = rustix::thread::sched_getaffinity(None).unwrap();
    (0..rustix::thread::CpuSet::MAX_CPU)
        .find(|&c| allowed.is_set(c))
        .unwrap()
}

/// Pins the calling thread to `cpu`.
pub(crate) fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).unwrap();
}

/// Whether this thread may run on more than one CPU (so another CPU can serve its waits, and
/// ends it opens are pinned to none); says why on stderr when not, for the tests that skip.
#[allow(dead_code)] // Not every test binary sharing this module needs it.
pub(crate) fn two_cpus() -> bool {
    let n = rustix::thread::sched_getaffinity(None).unwrap().count();
    if n < 2 {
        eprintln!("skipped: this thread may run on {n} CPU only");
    }
    n >= 2
}

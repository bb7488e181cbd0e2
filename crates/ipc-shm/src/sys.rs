//! The System V shared-memory calls rustix does not wrap (`shmget`, `shmat`, `shmdt`,
//! `shmctl(IPC_STAT)`), made through libc and exposed as a small safe(ish) API to `sysv.rs`.

use std::ptr::NonNull;

use rustix::io::Errno;

fn errno() -> Errno {
    Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO)
}

/// `shmget(key, size, flags)`: the id of the segment.
pub(crate) fn shmget(key: libc::key_t, size: usize, flags: libc::c_int) -> Result<i32, Errno> {
    // SAFETY: shmget takes plain integers and touches no memory of ours.
    let id = unsafe { libc::shmget(key, size, flags) };
    if id < 0 { Err(errno()) } else { Ok(id) }
}

/// What `shmctl(IPC_STAT)` says about a segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ShmStat {
    /// The segment's size in bytes, as created (`shm_segsz`).
    pub(crate) size: usize,
    /// The owner's user id (`shm_perm.uid`).
    pub(crate) uid: u32,
    /// The creator's user id (`shm_perm.cuid`).
    pub(crate) cuid: u32,
    /// The time of the last change of its owner or mode, or of its creation (`shm_ctime`).
    pub(crate) ctime: libc::time_t,
    /// The creator's process id (`shm_cpid`).
    pub(crate) cpid: libc::pid_t,
}

impl ShmStat {
    /// Whether `other` reports the same segment as far as an attach relies on it: the same
    /// size (what gets mapped), owner and creator (what the policy checked), and creator pid
    /// and change time, which tell a replacement at a reused id apart even of the same shape
    /// (an `IPC_SET` in between counts as a change too: the attach is then made again).
    pub(crate) fn same_segment(&self, other: &ShmStat) -> bool {
        (self.size, self.uid, self.cuid, self.ctime, self.cpid)
            == (other.size, other.uid, other.cuid, other.ctime, other.cpid)
    }
}

/// `shmctl(id, IPC_STAT)`.
pub(crate) fn shm_stat(id: i32) -> Result<ShmStat, Errno> {
    // SAFETY: an all-zero `shmid_ds` is a valid value of this plain C struct.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a writable `shmid_ds` that outlives the call; IPC_STAT only fills it.
    let r = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) };
    if r < 0 {
        return Err(errno());
    }
    Ok(ShmStat {
        size: ds.shm_segsz,
        uid: ds.shm_perm.uid,
        cuid: ds.shm_perm.cuid,
        ctime: ds.shm_ctime,
        cpid: ds.shm_cpid,
    })
}

/// `shmat(id, NULL, read_only ? SHM_RDONLY : 0)`: maps the segment at an address the kernel
/// picks.
pub(crate) fn shmat(id: i32, read_only: bool) -> Result<NonNull<u8>, Errno> {
    let flags = if read_only { libc::SHM_RDONLY } else { 0 };
    // SAFETY: with a null address the kernel chooses where to map, so no existing mapping of
    // this process is replaced.
    let p = unsafe { libc::shmat(id, std::ptr::null(), flags) };
    if p as isize == -1 {
        return Err(errno());
    }
    NonNull::new(p.cast::<u8>()).ok_or(Errno::FAULT)
}

/// `shmdt(addr)`: unmaps a segment attached with [`shmat`].
///
/// # Safety
///
/// - `addr` was returned by [`shmat`] and has not been detached yet;
/// - nothing uses memory of that attachment afterwards.
pub(crate) unsafe fn shmdt(addr: NonNull<u8>) -> Result<(), Errno> {
    // SAFETY: the caller guarantees `addr` is a live attachment nobody uses any more.
    let r = unsafe { libc::shmdt(addr.as_ptr().cast()) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

/// The number of CPUs online (`sysconf(_SC_NPROCESSORS_ONLN)`), computed once. Not limited by
/// this thread's affinity: a process pinned to one CPU can still have a peer running on another.
pub(crate) fn online_cpus() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        // SAFETY: sysconf takes an integer and touches no memory of ours.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        usize::try_from(n).unwrap_or(1).max(1)
    })
}

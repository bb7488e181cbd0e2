//! A small `/dev/shm` of a child's own, for the tests that prove a full `/dev/shm` is a typed
//! error at creation, never a `SIGBUS` at first touch.
//!
//! [`small_dev_shm`] moves the calling thread (a role's, in a child process) into a new mount
//! namespace (`unshare(CLONE_NEWNS)`) with a tmpfs of the given size on `/dev/shm`: nothing
//! else on the machine, and no test running beside it, sees that mount, and it vanishes with
//! the child. Where that is not permitted (no `CAP_SYS_ADMIN`), it prints [`SKIP`] and the test
//! skips.

/// The line a child prints when it cannot make a private mount namespace.
pub const SKIP: &str = "skipped: no private mount namespace";

/// Moves the calling thread into a new mount namespace with a tmpfs of `bytes` on `/dev/shm`;
/// false (after printing [`SKIP`] and why) if that is not permitted.
pub fn small_dev_shm(bytes: usize) -> bool {
    dev_shm_with(&format!("size={bytes}"))
}

/// [`small_dev_shm`] with the tmpfs mount `options` given whole (`size=1M,nr_inodes=4`).
pub fn dev_shm_with(options: &str) -> bool {
    // SAFETY: CLONE_NEWNS only gives this thread its own copy of the mount table (and of its
    // filesystem attributes); no memory is shared with the call.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        let e = std::io::Error::last_os_error();
        eprintln!("{SKIP}: unshare(CLONE_NEWNS): {e}");
        return false;
    }
    // Private first, so the tmpfs below cannot propagate back to the namespace we left.
    // SAFETY: every pointer is a NUL-terminated literal or null, valid for the call.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_PRIVATE | libc::MS_REC,
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    let size = std::ffi::CString::new(options).expect("no NUL");
    // SAFETY: as above; `size` outlives the call.
    let r = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            c"/dev/shm".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            size.as_ptr().cast(),
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        eprintln!("{SKIP}: mount tmpfs on /dev/shm: {e}");
        return false;
    }
    true
}

/// The names in `/dev/shm`, sorted.
pub fn names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .expect("read /dev/shm")
        .map(|e| {
            e.expect("a /dev/shm entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// Asserts that `e` is the error of a full `/dev/shm`: `LimitExceeded` naming it.
pub fn assert_no_room(e: &ipc_core::Error) {
    assert_eq!(e.kind(), ipc_core::ErrorKind::LimitExceeded, "{e}");
    let l = e.limit_info().expect("a limit detail");
    assert!(l.knob.contains("/dev/shm"), "{e}");
}

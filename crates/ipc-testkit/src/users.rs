//! Two users in a private System V IPC namespace, for the squatting attacks on System V objects
//! (a key taken by one user before another, the object then given away): root plays both with
//! `seteuid`, in a namespace of its own so nothing it makes outlives the role.

/// The user who takes a key first (neither user is root).
pub const SQUATTER: u32 = 65534;
/// The user whose key it is.
pub const VICTIM: u32 = 54321;

/// What a role prints, and its test looks for, when it cannot play two users.
pub const SKIP_ROOT: &str = "skipped: playing two users needs root";
/// What a role prints, and its test looks for, when it cannot make a private IPC namespace.
pub const SKIP_NS: &str = "skipped: unshare(CLONE_NEWIPC) is not permitted";

/// Moves this process into a private IPC namespace (`unshare(CLONE_NEWIPC)`): its System V
/// objects and `/proc/sys/kernel/msg*` knobs are its own, and vanish with it. `Err` with the
/// line to print (starting with [`SKIP_NS`]) when that is not permitted.
pub fn private_ipc_namespace() -> Result<(), String> {
    // SAFETY: unshare takes a flag word and touches no memory of ours.
    if unsafe { libc::unshare(libc::CLONE_NEWIPC) } != 0 {
        return Err(format!("{SKIP_NS}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// [`private_ipc_namespace`], for a role that also plays two users: `Err` with the line to
/// print (starting with [`SKIP_ROOT`] or [`SKIP_NS`]) when not root or not permitted.
pub fn two_users_in_a_private_ipc_namespace() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err(SKIP_ROOT.to_owned());
    }
    private_ipc_namespace()
}

/// Switches this process's effective uid to `uid` (to 0 first, so any uid can be reached: the
/// saved uid stays 0). System V objects take their creator and owner from the effective uid.
///
/// # Panics
/// If `seteuid` fails (the process is not root).
pub fn become_euid(uid: u32) {
    // SAFETY: `seteuid` takes a number and touches no memory; glibc applies it to every thread.
    let rc = unsafe { libc::seteuid(0) | libc::seteuid(uid) };
    assert_eq!(rc, 0, "seteuid({uid}): {}", std::io::Error::last_os_error());
}

/// Whether a role's output says it skipped (printed [`SKIP_ROOT`] or [`SKIP_NS`]).
pub fn skipped(stderr: &str) -> bool {
    stderr.contains(SKIP_ROOT) || stderr.contains(SKIP_NS)
}

//! Private IPC and mount namespaces for a test run, so everything System V and POSIX the tests
//! create is the run's own by construction.
//!
//! - **root** (CI): `unshare(CLONE_NEWIPC | CLONE_NEWNS)`. The tests keep real root.
//! - **ordinary user**: `unshare(CLONE_NEWUSER | CLONE_NEWIPC | CLONE_NEWNS)` mapping only the
//!   user's own uid and gid to themselves, so `getuid()` and file ownership look the same to
//!   the tests. xtask holds capabilities inside the new user namespace (to mount and to remove
//!   leftovers); the programs it runs lose them at `exec` (their uid is not 0 there), so tests
//!   run with the user's ordinary permissions.
//!
//! Either way, in the new mount namespace (propagation private, so nothing leaks out):
//! - a fresh `tmpfs` on `/dev/shm`: POSIX shared memory and named semaphores of the run;
//! - a fresh `mqueue` instance (it shows the queues of the new IPC namespace) on
//!   `/dev/mqueue` if that directory exists, so tests that look there see their own queues,
//!   and otherwise on a directory of the run's own for the leftover check.
//!
//! System V ids (`/proc/sysvipc/*`) of a new IPC namespace are all the run's. IPC sysctls
//! (`/proc/sys/kernel/shm*`, `msg*`, `sem`, `/proc/sys/fs/mqueue/*`) start from the kernel's
//! defaults in a new namespace; the tests read their limits from there, so they stay
//! consistent. The PID namespace is unchanged (ipc-shm's liveness check needs it).
//!
//! Not permitted (no `CAP_SYS_ADMIN` and unprivileged user namespaces disabled, as Ubuntu's
//! AppArmor default does; or `IPC_XTASK_ISOLATION=off`): the run goes on without namespaces
//! and the leftover check falls back to what can be attributed (see `leftovers.rs`).

use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_change};
use rustix::process::{Gid, Uid};
use rustix::thread::UnshareFlags;

/// Environment variable that turns isolation off (`off`), e.g. to reproduce a workstation
/// without user namespaces.
pub(crate) const ISOLATION_ENV: &str = "IPC_XTASK_ISOLATION";

/// How the run is isolated.
#[derive(Debug)]
pub(crate) enum Isolation {
    /// Private namespaces: every System V id, queue and `/dev/shm` entry is the run's.
    Namespaces {
        /// Where the run's mqueue filesystem is mounted.
        mqueue: PathBuf,
    },
    /// No namespaces, and why.
    Shared { reason: String },
}

impl Isolation {
    /// Moves this process (and so everything it starts from now on) into private namespaces if
    /// it may. Must be called while the process has a single thread (a condition of
    /// `CLONE_NEWUSER`). `run_dir` is the run's private directory.
    ///
    /// `Err` when the namespaces were entered but could not be set up (the process cannot
    /// step back out, so the run must stop).
    pub(crate) fn enter(run_dir: &Path) -> Result<Isolation, String> {
        if std::env::var(ISOLATION_ENV).is_ok_and(|v| v == "off") {
            return Ok(Isolation::Shared {
                reason: format!("{ISOLATION_ENV}=off"),
            });
        }
        let uid = rustix::process::geteuid();
        let gid = rustix::process::getegid();
        let root = uid.is_root();
        let mut flags = UnshareFlags::NEWIPC | UnshareFlags::NEWNS;
        if !root {
            flags |= UnshareFlags::NEWUSER;
        }
        // SAFETY: `unshare_unsafe` is unsafe only for `CLONE_FILES` (threads could observe
        // descriptors from an unshared table); these flags do not include it.
        if let Err(e) = unsafe { rustix::thread::unshare_unsafe(flags) } {
            return Ok(Isolation::Shared {
                reason: format!("unshare({flags:?}) is not permitted here: {e}"),
            });
        }
        set_up(run_dir, uid, gid)
            .map(|mqueue| Isolation::Namespaces { mqueue })
            .map_err(|e| format!("entered private namespaces but could not {e}"))
    }
}

/// Maps our ids (in a new user namespace) and mounts the run's own `/dev/shm` and mqueue.
/// `uid` and `gid` are the ids from before `unshare` (in a new user namespace they read as
/// the overflow id until mapped).
fn set_up(run_dir: &Path, uid: Uid, gid: Gid) -> Result<PathBuf, String> {
    let root = uid.is_root();
    if !root {
        // Map our own ids only (an unprivileged process may map exactly its own uid; for the
        // gid it must first give up setgroups).
        let write = |file: &str, text: String| {
            std::fs::write(file, text).map_err(|e| format!("write {file}: {e}"))
        };
        write("/proc/self/setgroups", "deny".into())?;
        write("/proc/self/uid_map", format!("{0} {0} 1", uid.as_raw()))?;
        write("/proc/self/gid_map", format!("{0} {0} 1", gid.as_raw()))?;
    }
    let fail = |what: &str, e: rustix::io::Errno| -> String { format!("{what}: {e}") };
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| fail("make the mounts private", e))?;
    let nosuid = MountFlags::NOSUID | MountFlags::NODEV;
    mount("tmpfs", "/dev/shm", "tmpfs", nosuid, Some(c"mode=1777"))
        .map_err(|e| fail("mount a tmpfs on /dev/shm", e))?;
    let dev_mqueue = Path::new("/dev/mqueue");
    let mqueue = if dev_mqueue.is_dir() {
        dev_mqueue.to_path_buf()
    } else {
        let dir = run_dir.join("mqueue");
        std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        dir
    };
    mount("mqueue", &mqueue, "mqueue", nosuid, None)
        .map_err(|e| fail(&format!("mount mqueue on {}", mqueue.display()), e))?;
    Ok(mqueue)
}

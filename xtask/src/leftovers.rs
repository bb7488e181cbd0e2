//! The test run's leftover check: what the tests created and left behind is reported and
//! removed, and the run fails; nothing else on the machine is touched.
//!
//! # Design
//!
//! The old check diffed every System V id on the machine before and after the run and
//! `SIGKILL`ed every new process under `target/*/deps`; on a workstation that removed other
//! programs' semaphore sets and killed a concurrent `cargo test`. Now the run knows what is
//! its own, by construction where the kernel allows it:
//!
//! - **Processes**: xtask is a child subreaper (`PR_SET_CHILD_SUBREAPER`), so a test process
//!   whose parent dies is reparented to xtask instead of init, and stays its descendant. After
//!   the tests, every live descendant of xtask is a stray of the run: it is reported and
//!   killed. Only descendants are ever signalled. (xtask reaps orphans while the tests run, so
//!   a killed test process does not linger as a zombie that looks alive in `/proc`.)
//! - **System V ids, POSIX queues and `/dev/shm`**: the tests run in private IPC and mount
//!   namespaces when permitted (root, or an ordinary user where unprivileged user namespaces
//!   are enabled; see `isolate.rs`). Everything in them is the run's: every System V id, every
//!   queue and every `/dev/shm` entry left at the end is reported and removed, whatever its
//!   name (a doc test's object counts too).
//! - **Temporary files**: the tests get a private `TMPDIR` inside the run's directory; every
//!   `ipctest-` entry left in it is reported, and the directory is removed.
//!
//! Without namespaces (not permitted, or `IPC_XTASK_ISOLATION=off`) the check uses only what
//! it can attribute:
//! - POSIX names: ipc-testkit appends every name it generates (`ipctest-…`) to the run's
//!   ledger (the file `IPC_TESTKIT_LEDGER` names); exactly those names are looked up in
//!   `/dev/shm` (also as named semaphores, `sem.NAME`) and as message queues, reported and
//!   removed. (Recording is best effort: a role out of descriptors on purpose, or running as
//!   another user, cannot write the ledger.)
//! - System V: the kernel records no creator for semaphore sets, and tests make private
//!   (`IPC_PRIVATE`) objects no ledger can name, so nothing can be attributed. Ids that
//!   appeared during the run and belong to this user are reported and **left alone**; the
//!   run fails for them only when `CI` is set (a CI machine runs nothing else), otherwise
//!   they are a warning. CI runs isolated anyway (as root, or with user namespaces enabled).
//!
//! Namespaces were chosen over attribution alone because they are exact for every kind of
//! object (including `IPC_PRIVATE` semaphore sets, which carry no creator pid) and protect
//! the machine's own objects from the tests as well, at no cost to the tests.
//!
//! `xtask/tests/leftovers.rs` proves the check fails for a leaked object of each kind, in both
//! modes, and leaves alone objects and processes another program creates during the run.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::process::{Pid, Signal, WaitOptions};

use crate::isolate::Isolation;

/// Environment variable naming the ledger ipc-testkit writes names to (its `LEDGER_ENV`).
const LEDGER_ENV: &str = "IPC_TESTKIT_LEDGER";

/// A test run: its private directory, its isolation, and what it needs to check at the end.
#[derive(Debug)]
pub(crate) struct Run {
    dir: PathBuf,
    isolation: Isolation,
    /// System V objects before the run (used only without namespaces).
    sysv_before: BTreeSet<(Kind, i32)>,
}

impl Run {
    /// Creates the run's private directory, enters private namespaces if permitted and makes
    /// this process the child subreaper. Call while the process has one thread.
    pub(crate) fn start() -> Result<Run, String> {
        let dir = private_dir()?;
        let isolation = match Isolation::enter(&dir) {
            Ok(i) => i,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        match &isolation {
            Isolation::Namespaces { .. } => {
                eprintln!("xtask: tests run in private IPC and mount namespaces")
            }
            Isolation::Shared { reason } => eprintln!(
                "xtask: tests run without private namespaces ({reason}); only objects the \
                 run can attribute to itself are checked"
            ),
        }
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| format!("prctl(PR_SET_CHILD_SUBREAPER): {e}"))?;
        // Like /tmp (sticky, writable by all): some tests run roles as another user.
        let tmp = dir.join("tmp");
        std::fs::create_dir(&tmp)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))
            })
            .map_err(|e| format!("create {}: {e}", tmp.display()))?;
        let sysv_before = sysv_objects().iter().map(|o| (o.kind, o.id)).collect();
        Ok(Run {
            dir,
            isolation,
            sysv_before,
        })
    }

    /// The environment a command of the run gets: the private `TMPDIR` and the ledger.
    pub(crate) fn configure(&self, cmd: &mut Command) {
        cmd.env("TMPDIR", self.dir.join("tmp"))
            .env(LEDGER_ENV, self.dir.join("ledger"));
    }

    /// Runs `cmd` to the end, reaping the orphans reparented to this process meanwhile.
    /// Returns its exit code (128 + signal if a signal ended it).
    pub(crate) fn run(&self, what: &str, cmd: &mut Command) -> Result<i32, String> {
        eprintln!("xtask: {what}");
        self.configure(cmd);
        // SAFETY: runs between fork and exec and makes two raw syscalls, `close_range` and
        // `prctl` (async-signal-safe, no allocation, no lock). The command (cargo) is killed
        // if xtask dies, e.g. interrupted, and each link below it (the watchdog, the test
        // binary, its roles) dies with its parent the same way, so an interrupted run leaves
        // no process behind.
        //
        // Every descriptor above stderr is marked close-on-exec (`close_range(2)` with
        // `CLOSE_RANGE_CLOEXEC`): the command starts with stdin, stdout and
        // stderr only, whatever the shell that started xtask held open, as on CI. A test that
        // counts or fills descriptors then sees here what it sees there (one did not: it
        // passed in a shell holding descriptors 10 and 251 and failed on CI). Best effort: a
        // kernel without the flag (before 5.11) leaves them open.
        unsafe {
            cmd.pre_exec(|| {
                libc::syscall(
                    libc::SYS_close_range,
                    3 as libc::c_uint,
                    libc::c_uint::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
        let pid = Pid::from_child(&child);
        loop {
            // Any child: the command itself or an orphan of the run that ended.
            match rustix::process::waitpid(None, WaitOptions::empty()) {
                Ok(Some((p, status))) if p == pid => {
                    return Ok(status
                        .exit_status()
                        .or_else(|| status.terminating_signal().map(|s| 128 + s))
                        .unwrap_or(1));
                }
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(format!("{what}: waitpid: {e}")),
            }
        }
    }

    /// Finds, reports and removes what the run left behind, then removes the run's
    /// directory. `Err` lists the leftovers.
    pub(crate) fn finish(self) -> Result<(), String> {
        let mut found = Vec::new();
        let mut warnings = Vec::new();
        found.extend(kill_descendants());
        match &self.isolation {
            Isolation::Namespaces { mqueue } => {
                found.extend(remove_all_in(Path::new("/dev/shm"), "POSIX shared memory"));
                found.extend(remove_all_in(mqueue, "POSIX message queue /"));
                for o in sysv_objects() {
                    found.push(format!("{} (removed)", o.describe()));
                    remove_sysv(&o);
                }
                if mqueue.starts_with(&self.dir) {
                    // Our own mount point: unmounted so the directory can go.
                    let _ = rustix::mount::unmount(mqueue, rustix::mount::UnmountFlags::DETACH);
                }
            }
            Isolation::Shared { .. } => {
                let ledger = std::fs::read_to_string(self.dir.join("ledger")).unwrap_or_default();
                found.extend(remove_ledger_names(&ledger));
                let uid = rustix::process::geteuid().as_raw();
                let (new, fail) = shared_sysv_verdict(
                    &self.sysv_before,
                    &sysv_objects(),
                    uid,
                    std::env::var_os("CI").is_some(),
                );
                let note = "appeared during the run (not removed: without private namespaces \
                            xtask cannot tell whether the tests made it; `ipcrm` it if so)";
                let lines = new.iter().map(|o| format!("{} {note}", o.describe()));
                if fail {
                    found.extend(lines);
                } else {
                    warnings.extend(lines);
                }
            }
        }
        found.extend(remove_named_temp(&self.dir.join("tmp")));
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            warnings.push(format!("could not remove {}: {e}", self.dir.display()));
        }
        for w in &warnings {
            eprintln!("xtask: warning: {w}");
        }
        if found.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the tests left these behind:\n  {}",
                found.join("\n  ")
            ))
        }
    }
}

/// A fresh directory of the run's own, under the system temporary directory: mode `0o711`,
/// so other users (roles some tests run as another user) can reach the `tmp` inside but not
/// list or write the directory (the ledger).
fn private_dir() -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for n in 0..100 {
        let dir = base.join(format!("ipc-xtask-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("create {}: {e}", dir.display())),
        }
    }
    Err(format!("no free ipc-xtask-* name in {}", base.display()))
}

// ---------------------------------------------------------------------------------------------
// Processes

/// One line of `/proc/PID/stat`: pid, parent pid, state letter.
pub(crate) fn parse_stat(stat: &str) -> Option<(u32, u32, char)> {
    let pid = stat.split_whitespace().next()?.parse().ok()?;
    // The command name is in parentheses and may itself contain spaces and ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((pid, ppid, state))
}

/// The live (not zombie) descendants of `root` in a process table of `(pid, ppid, state)`.
pub(crate) fn live_descendants(root: u32, table: &[(u32, u32, char)]) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<(u32, char)>> = BTreeMap::new();
    for &(pid, ppid, state) in table {
        children.entry(ppid).or_default().push((pid, state));
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &(c, state) in children.get(&p).map_or(&[][..], Vec::as_slice) {
            if c != root {
                if state != 'Z' && state != 'X' {
                    out.push(c);
                }
                stack.push(c);
            }
        }
    }
    out.sort_unstable();
    out
}

fn process_table() -> Vec<(u32, u32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|s| s.parse::<u32>().is_ok())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| parse_stat(&s))
        .collect()
}

/// Kills every live descendant of this process, reaps what it can, and reports them. A stray
/// that forks while being killed has its new children found and killed on the next round.
fn kill_descendants() -> Vec<String> {
    let me = std::process::id();
    let mut found = Vec::new();
    let mut killed = BTreeSet::new();
    for _ in 0..1000 {
        while let Ok(Some(_)) = rustix::process::waitpid(None, WaitOptions::NOHANG) {}
        let strays = live_descendants(me, &process_table());
        if strays.is_empty() {
            break;
        }
        for pid in strays {
            if killed.insert(pid) {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                    .unwrap_or_default();
                found.push(format!("process {pid}: {} (killed)", cmdline.trim()));
            }
            kill_descendant(me, pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    while let Ok(Some(_)) = rustix::process::waitpid(None, WaitOptions::NOHANG) {}
    found
}

/// `SIGKILL`s `pid` if it is still a descendant of `me`, through a pidfd so that a pid reused
/// by an unrelated process after the table was read is never signalled: the pidfd is opened
/// first, then the process it names is checked to still hang below `me`.
fn kill_descendant(me: u32, pid: u32) {
    let Some(p) = Pid::from_raw(pid as i32) else {
        return;
    };
    let Ok(fd) = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) else {
        return; // Gone already.
    };
    if live_descendants(me, &process_table()).contains(&pid) {
        let _ = rustix::process::pidfd_send_signal(&fd, Signal::KILL);
    }
}

// ---------------------------------------------------------------------------------------------
// Names

/// Removes every entry of `dir` (the run's own `/dev/shm` or mqueue) and reports it.
fn remove_all_in(dir: &Path, what: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let sep = if what.ends_with('/') { "" } else { " " };
        let removed = std::fs::remove_file(e.path()).is_ok();
        let how = if removed {
            "removed"
        } else {
            "could not remove"
        };
        found.push(format!("{what}{sep}{name} ({how})"));
    }
    found
}

/// The distinct `ipctest-` names of a ledger (one per line; anything else is ignored).
pub(crate) fn ledger_names(ledger: &str) -> BTreeSet<&str> {
    ledger
        .lines()
        .map(str::trim)
        .filter(|n| n.starts_with("ipctest-") && !n.contains('/') && !n.contains('\0'))
        .collect()
}

/// Looks up each ledger name as a `/dev/shm` entry, a named semaphore and a message queue;
/// removes and reports what exists.
fn remove_ledger_names(ledger: &str) -> Vec<String> {
    let mut found = Vec::new();
    for name in ledger_names(ledger) {
        for file in [name.to_owned(), format!("sem.{name}")] {
            let path = Path::new("/dev/shm").join(&file);
            if std::fs::remove_file(&path).is_ok() {
                found.push(format!("{} (removed)", path.display()));
            }
        }
        let Ok(c) = std::ffi::CString::new(format!("/{name}")) else {
            continue;
        };
        // SAFETY: `c` is a valid NUL-terminated string; mq_unlink only reads it.
        if unsafe { libc::mq_unlink(c.as_ptr()) } == 0 {
            found.push(format!("POSIX message queue /{name} (removed)"));
        }
    }
    found
}

/// Reports and removes the `ipctest-` entries of the run's temporary directory.
fn remove_named_temp(tmp: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with("ipctest-") {
            let path = e.path();
            let _ = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            found.push(format!("{} (removed)", path.display()));
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// System V

/// A System V object kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Msg,
    Shm,
    Sem,
}

/// A System V object as `/proc/sysvipc/*` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SysvObject {
    pub(crate) kind: Kind,
    pub(crate) id: i32,
    pub(crate) key: i64,
    /// The creator's uid.
    pub(crate) cuid: u32,
}

impl SysvObject {
    fn describe(&self) -> String {
        let kind = match self.kind {
            Kind::Msg => "message queue",
            Kind::Shm => "shared memory segment",
            Kind::Sem => "semaphore set",
        };
        // The key is a signed `key_t` in the file; shown as `ipcs` does.
        format!(
            "System V {kind} id {} (key {:#010x})",
            self.id, self.key as u32
        )
    }
}

/// Parses one `/proc/sysvipc/{msg,shm,sem}` file.
pub(crate) fn parse_sysv(kind: Kind, text: &str) -> Vec<SysvObject> {
    // Columns: key id perms ...; the creator uid (cuid) is column 9 for msg and shm, 6 for
    // sem. The first line is a header.
    let cuid_col = match kind {
        Kind::Msg | Kind::Shm => 9,
        Kind::Sem => 6,
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            Some(SysvObject {
                kind,
                key: cols.first()?.parse().ok()?,
                id: cols.get(1)?.parse().ok()?,
                cuid: cols.get(cuid_col)?.parse().ok()?,
            })
        })
        .collect()
}

/// The System V objects this process can see (those of its IPC namespace).
fn sysv_objects() -> Vec<SysvObject> {
    [
        (Kind::Msg, "/proc/sysvipc/msg"),
        (Kind::Shm, "/proc/sysvipc/shm"),
        (Kind::Sem, "/proc/sysvipc/sem"),
    ]
    .iter()
    .flat_map(|&(kind, file)| parse_sysv(kind, &std::fs::read_to_string(file).unwrap_or_default()))
    .collect()
}

/// Without namespaces: the objects that appeared during the run and were created by `uid`
/// (candidates, never removed), and whether they fail the run (only on CI).
pub(crate) fn shared_sysv_verdict(
    before: &BTreeSet<(Kind, i32)>,
    after: &[SysvObject],
    uid: u32,
    ci: bool,
) -> (Vec<SysvObject>, bool) {
    let new: Vec<SysvObject> = after
        .iter()
        .filter(|o| o.cuid == uid && !before.contains(&(o.kind, o.id)))
        .cloned()
        .collect();
    let fail = ci && !new.is_empty();
    (new, fail)
}

fn remove_sysv(o: &SysvObject) {
    // SAFETY: IPC_RMID takes no buffer (a null pointer is allowed); an id that no longer
    // exists just fails with EINVAL/EIDRM.
    unsafe {
        match o.kind {
            Kind::Msg => libc::msgctl(o.id, libc::IPC_RMID, std::ptr::null_mut()),
            Kind::Shm => libc::shmctl(o.id, libc::IPC_RMID, std::ptr::null_mut()),
            Kind::Sem => libc::semctl(o.id, 0, libc::IPC_RMID),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names() {
        assert_eq!(
            parse_stat("42 (a) b (c)) S 7 42 42 0 -1"),
            Some((42, 7, 'S'))
        );
        assert_eq!(parse_stat("9 (zombie) Z 1 0"), Some((9, 1, 'Z')));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn descendants_are_the_whole_subtree_and_nothing_else() {
        // 1 = init, 10 = xtask, 11 = cargo, 12 = test binary, 13 = its child,
        // 20 = an orphan reparented to xtask, 21 = a zombie of xtask,
        // 30 = a concurrent `cargo test` (not ours) and 31 its test binary.
        let table = [
            (10, 1, 'S'),
            (11, 10, 'S'),
            (12, 11, 'S'),
            (13, 12, 'R'),
            (20, 10, 'S'),
            (21, 10, 'Z'),
            (30, 1, 'S'),
            (31, 30, 'S'),
        ];
        assert_eq!(live_descendants(10, &table), vec![11, 12, 13, 20]);
        assert!(live_descendants(31, &table).is_empty());
    }

    #[test]
    fn sysv_files_parse() {
        let shm = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n\
                   0 32768 600 2000 1234 0 0 1000 1000 1000 1000 0 0 1 4096 0\n";
        assert_eq!(
            parse_sysv(Kind::Shm, shm),
            vec![SysvObject {
                kind: Kind::Shm,
                id: 32768,
                key: 0,
                cuid: 1000
            }]
        );
        let sem = "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n\
                   1234 5 600 1 0 0 0 0 0 1\n";
        assert_eq!(
            parse_sysv(Kind::Sem, sem),
            vec![SysvObject {
                kind: Kind::Sem,
                id: 5,
                key: 1234,
                cuid: 0
            }]
        );
    }

    #[test]
    fn without_namespaces_only_new_objects_of_this_user_are_candidates_and_fail_only_on_ci() {
        let obj = |kind, id, cuid| SysvObject {
            kind,
            id,
            key: 0,
            cuid,
        };
        let before: BTreeSet<_> = [(Kind::Sem, 1)].into();
        let after = [
            obj(Kind::Sem, 1, 1000),
            obj(Kind::Sem, 2, 1000),
            obj(Kind::Shm, 3, 0),
        ];
        let (new, fail) = shared_sysv_verdict(&before, &after, 1000, false);
        assert_eq!(new, vec![obj(Kind::Sem, 2, 1000)]);
        assert!(!fail, "a workstation run only warns");
        assert!(
            shared_sysv_verdict(&before, &after, 1000, true).1,
            "CI fails"
        );
        assert!(!shared_sysv_verdict(&before, &after[..1], 1000, true).1);
    }

    #[test]
    fn ledger_names_are_testkit_names_only() {
        let ledger = "ipctest-a-1-0\nipctest-a-1-0\n../etc\nipctest-x/y\n\nipctest-b-2-1";
        let names: Vec<_> = ledger_names(ledger).into_iter().collect();
        assert_eq!(names, vec!["ipctest-a-1-0", "ipctest-b-2-1"]);
    }
}

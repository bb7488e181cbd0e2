//! What `/proc/PID/stat` says of a process: its state, its parent and its start time, the
//! facts that liveness checks rest on (a pid alone can be reused; a pid with its start time
//! cannot).
//!
//! ```
//! use ipc_core::process;
//!
//! let me = process::stat("self").expect("/proc is mounted");
//! assert!(me.start_ticks > 0);
//! assert_eq!(process::stat(std::process::id()).unwrap().start_ticks, me.start_ticks);
//! ```
//!
//! # References
//! - [`proc_pid_stat(5)`](https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html)

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;

/// The fields of `/proc/PID/stat` this workspace uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// The state letter (field 3): `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// The parent's pid (field 4).
    pub ppid: u32,
    /// When the process started, in clock ticks after boot (field 22).
    pub start_ticks: u64,
}

impl ProcStat {
    /// Whether the process has ended (a zombie waiting to be reaped counts as ended).
    pub fn has_ended(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Parses one `/proc/PID/stat` line. The command name (field 2) is in parentheses and may hold
/// spaces and `)`, so the fields are counted from the last `)`.
pub fn parse(stat: &str) -> Option<ProcStat> {
    parse_after_name(&stat[stat.rfind(')')? + 1..])
}

/// The fields after the command name's closing `)` (field 3 on).
fn parse_after_name(rest: &str) -> Option<ProcStat> {
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// The stat of process `pid` (a number, or `"self"`), read now; `None` if it does not exist
/// (or `/proc` is not mounted: check `stat("self")` to tell the two apart).
///
/// The line is read as bytes: the command name is whatever the process set (any bytes but
/// NUL, UTF-8 or not), and only the fields after it, which the kernel writes in ASCII, are
/// decoded. A process cannot pass for gone by naming itself.
pub fn stat(pid: impl fmt::Display) -> Option<ProcStat> {
    read_stat(pid).ok().flatten()
}

/// [`stat`], saying why the file could not be read: `Err` with the errno of the one read
/// (`ENOENT`: no such process, or no `/proc`; `EMFILE`/`ENFILE`: no descriptor free to read
/// it with, which says nothing about the process), `Ok(None)` for a line that does not parse.
/// A caller that must not mistake one cause for another decides from this errno, not from a
/// second look, which may meet other conditions.
pub fn read_stat(pid: impl fmt::Display) -> Result<Option<ProcStat>, rustix::io::Errno> {
    let line = std::fs::read(format!("/proc/{pid}/stat"))
        .map_err(|e| rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO))?;
    let Some(name_end) = line.iter().rposition(|&b| b == b')') else {
        return Ok(None);
    };
    Ok(std::str::from_utf8(&line[name_end + 1..])
        .ok()
        .and_then(parse_after_name))
}

/// The PID namespace this process runs in, as the inode number of `/proc/self/ns/pid`
/// (unique among live namespaces); 0 when `/proc` cannot tell. Two processes with the same
/// number see each other's pids; a pid published by a process in another namespace names
/// nothing, or another process, here.
pub fn pid_namespace() -> u64 {
    rustix::fs::stat("/proc/self/ns/pid").map_or(0, |st| st.st_ino)
}

/// Where presence marks go in a file: one byte per place, far past any data (byte
/// `PRESENCE_BASE + place`), so a mark never covers a byte anyone reads or writes.
pub const PRESENCE_BASE: u64 = 1 << 62;

/// A process's marks that it holds places in a shared file, which every process can test
/// whatever PID namespace it runs in: each a read lock of one byte (at [`PRESENCE_BASE`] + the
/// place) on a private open file description of the file (`F_OFD_SETLK`; the file is opened
/// anew through `/proc/self/fd`, so a descriptor shared with a peer, inherited or passed over a
/// socket, never carries a mark to it). One such open serves all of a process's marks in a
/// file ([`Marks::mark`]); the kernel drops a mark when its [`Presence`] is dropped, and all of
/// them when the process dies, however it dies. [`presence_held`] tells whether any process
/// holds one.
///
/// A pid names a process only in its own PID namespace (and its ancestors, under another
/// number): for two containers sharing `/dev/shm` but not their pids, this is the liveness
/// fact that still holds. A child made by `fork` without `exec` shares the marks while it runs
/// (the descriptor is close-on-exec, not close-on-fork).
///
/// # References
/// - [`fcntl(2)`, open file description locks](https://man7.org/linux/man-pages/man2/fcntl.2.html)
#[derive(Debug)]
pub struct Marks {
    fd: OwnedFd,
    /// How many [`Presence`]s hold each marked place: one lock a place, taken at the first
    /// and given up with the last (two holders of one place in a process, one leaving as the
    /// other comes, must not unlock the newcomer's mark).
    held: std::sync::Mutex<std::collections::HashMap<u64, usize>>,
}

impl Marks {
    /// A private open of the file open at `file`, for marks. `Ok(None)` when none can be made
    /// here (no `/proc` to reopen the file through, a file this process may not reopen): the
    /// caller then publishes no mark, and peers check it by pid alone.
    ///
    /// Errors: [`ErrorKind::LimitExceeded`](crate::ErrorKind::LimitExceeded) naming
    /// `RLIMIT_NOFILE` (or `fs.file-max`) when no descriptor is free for it.
    pub fn open(file: BorrowedFd<'_>) -> crate::Result<Option<Marks>> {
        use rustix::fs::{Mode, OFlags};
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        // Read-write where the file lets this process write it ([`exclusive`](Marks::exclusive)
        // takes a write lock), else read-only (marks are read locks).
        let open = |flags| rustix::fs::open(path.as_str(), flags | OFlags::CLOEXEC, Mode::empty());
        let opened = open(OFlags::RDWR).or_else(|e| match e {
            Errno::MFILE | Errno::NFILE => Err(e),
            _ => open(OFlags::RDONLY),
        });
        match opened {
            Ok(fd) => Ok(Some(Marks {
                fd,
                held: std::sync::Mutex::new(std::collections::HashMap::new()),
            })),
            Err(e @ (Errno::MFILE | Errno::NFILE)) => {
                Err(crate::pipe::descriptor_error(e).in_op("open /proc/self/fd (presence marks)"))
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot reopen the file: no presence marks");
                Ok(None)
            }
        }
    }

    /// Marks `place`, held until the returned [`Presence`] is dropped; `None` when the kernel
    /// refuses the lock (out of lock memory), or another process keeps the place
    /// [`exclusive`](Marks::exclusive) for longer than [`MARK_PATIENCE`] (one that frees a dead
    /// holder's place takes it for a compare-and-swap): no mark then.
    pub fn mark(self: &std::sync::Arc<Marks>, place: u64) -> Option<Presence> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(place).or_insert(0);
        if *count == 0 {
            let start = std::time::Instant::now();
            loop {
                match ofd_lock(self.fd.as_fd(), libc::F_OFD_SETLK, libc::F_RDLCK, place) {
                    Ok(_) => break,
                    Err(Errno::AGAIN | Errno::ACCESS) if start.elapsed() < MARK_PATIENCE => {
                        std::thread::yield_now();
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot lock the presence byte: no mark");
                        held.remove(&place);
                        return None;
                    }
                }
            }
        }
        *count += 1;
        Some(Presence {
            marks: self.clone(),
            place,
        })
    }

    /// Holds `place` against every mark (a write lock of its byte), for a process that frees a
    /// place it found without a holder: while held, no process can mark the place (a claimer
    /// marks before it claims), so a place found unmarked under it stays unclaimed.
    /// [`Hold::Marked`] when some process holds a mark there; [`Hold::Cannot`] when this
    /// process may not write-lock the file (opened read-only).
    pub fn exclusive(&self, place: u64) -> Hold<'_> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        // This process's own mark there: held (and a write lock through this description
        // would take the mark's place, then its unlock the mark).
        if held.contains_key(&place) {
            return Hold::Marked;
        }
        // The count stays locked while the place is held, so this process's own threads do
        // not mark it meanwhile either (through this description, a mark would replace the
        // write lock, and its unlock then the mark).
        match ofd_lock(self.fd.as_fd(), libc::F_OFD_SETLK, libc::F_WRLCK, place) {
            Ok(_) => Hold::Held(Exclusive {
                marks: self,
                place,
                _held: held,
            }),
            Err(Errno::AGAIN | Errno::ACCESS) => Hold::Marked,
            Err(e) => {
                tracing::debug!(error = %e, "cannot hold a place against marks");
                Hold::Cannot
            }
        }
    }
}

/// How long [`Marks::mark`] waits for a place another process holds
/// [`exclusive`](Marks::exclusive) (a few system calls' time): longer is a stuck or hostile
/// process, and the end goes on without a mark.
pub const MARK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(100);

/// What [`Marks::exclusive`] found.
#[derive(Debug)]
pub enum Hold<'a> {
    /// The place, held against every mark until this is dropped.
    Held(Exclusive<'a>),
    /// A process holds a mark there.
    Marked,
    /// The place cannot be held here (the file is open read-only to this process).
    Cannot,
}

/// A place held by [`Marks::exclusive`], given back on drop.
#[derive(Debug)]
pub struct Exclusive<'a> {
    marks: &'a Marks,
    place: u64,
    _held: std::sync::MutexGuard<'a, std::collections::HashMap<u64, usize>>,
}

impl Drop for Exclusive<'_> {
    fn drop(&mut self) {
        // This description holds no mark of its own there (the caller frees a place that is not
        // its own): unlocking gives up the write lock alone.
        let _ = ofd_lock(
            self.marks.fd.as_fd(),
            libc::F_OFD_SETLK,
            libc::F_UNLCK,
            self.place,
        );
    }
}

/// One held mark of [`Marks`]: dropping it gives the mark up (with the last holder of its
/// place in this process).
#[derive(Debug)]
pub struct Presence {
    marks: std::sync::Arc<Marks>,
    place: u64,
}

impl Drop for Presence {
    fn drop(&mut self) {
        let mut held = self.marks.held.lock().unwrap_or_else(|p| p.into_inner());
        let Some(count) = held.get_mut(&self.place) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            held.remove(&self.place);
            // Unlocking a byte this description holds cannot fail but for a bad argument,
            // which the lock would have met first.
            let _ = ofd_lock(
                self.marks.fd.as_fd(),
                libc::F_OFD_SETLK,
                libc::F_UNLCK,
                self.place,
            );
        }
    }
}

/// Whether a process other than through `file`'s own open file description holds the
/// [`Presence`] mark of `place` in that file (a probe, `F_OFD_GETLK`; no lock is taken).
/// Marks made through `file` itself do not count, and a caller's own [`Marks`] never are
/// `file`.
pub fn presence_held(file: BorrowedFd<'_>, place: u64) -> Result<bool, Errno> {
    ofd_lock(file, libc::F_OFD_GETLK, libc::F_WRLCK, place).map(|t| t != libc::F_UNLCK)
}

/// One `fcntl` record-lock call on the byte of `place`, returning the lock type the kernel
/// left in the record (for `F_OFD_GETLK`: `F_UNLCK` when nothing conflicts).
fn ofd_lock(
    fd: BorrowedFd<'_>,
    cmd: libc::c_int,
    kind: libc::c_int,
    place: u64,
) -> Result<libc::c_int, Errno> {
    let start = PRESENCE_BASE
        .checked_add(place)
        .and_then(|b| i64::try_from(b).ok())
        .ok_or(Errno::INVAL)?;
    // SAFETY: an all-zero `flock` is a valid value of that plain C struct (and `l_pid` must be
    // 0 for open file description locks).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = start;
    lock.l_len = 1;
    loop {
        // SAFETY: `fd` is a live descriptor for the call, and `lock` a valid, initialised
        // `flock` the kernel reads (and, for F_OFD_GETLK, writes) within its size.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &mut lock as *mut libc::flock) };
        if r == 0 {
            return Ok(libc::c_int::from(lock.l_type));
        }
        match Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        {
            Errno::INTR => {}
            e => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_command_names_and_zombies() {
        let line = "42 (a) b (c)) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        assert_eq!(
            parse(line),
            Some(ProcStat {
                state: 'S',
                ppid: 7,
                start_ticks: 12345
            })
        );
        let zombie = "9 (z) Z 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77 0 0";
        assert!(parse(zombie).unwrap().has_ended());
        assert_eq!(parse("garbage"), None);
        assert_eq!(parse("1 (short) S 0"), None);
        assert!(stat(u32::MAX).is_none());
    }

    #[test]
    fn a_presence_mark_is_seen_through_another_open_and_gone_when_dropped() {
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        let probe = std::fs::File::open("/proc/self/exe").unwrap();
        assert!(!presence_held(probe.as_fd(), 7).unwrap());
        let marks =
            std::sync::Arc::new(Marks::open(file.as_fd()).unwrap().expect("a private open"));
        let mark = marks.mark(7).expect("a mark can be made here");
        assert!(
            presence_held(probe.as_fd(), 7).unwrap(),
            "another open sees the mark"
        );
        assert!(
            presence_held(file.as_fd(), 7).unwrap(),
            "the private open is not `file`'s"
        );
        assert!(
            !presence_held(probe.as_fd(), 8).unwrap(),
            "one byte a place"
        );
        let other = marks.mark(8).unwrap();
        let second = marks.mark(7).expect("one place, two holders");
        drop(mark);
        assert!(
            presence_held(probe.as_fd(), 7).unwrap(),
            "the second still holds it"
        );
        assert!(
            presence_held(probe.as_fd(), 8).unwrap(),
            "the other place untouched"
        );
        drop(second);
        assert!(!presence_held(probe.as_fd(), 7).unwrap());
        drop(other);
        assert!(!presence_held(probe.as_fd(), 8).unwrap());
        // A file this process may write: a place held against marks, and one that is marked.
        let shm = crate::fd::create_unnamed_shm(0o600, 4096).unwrap();
        let writer = std::sync::Arc::new(Marks::open(shm.as_fd()).unwrap().unwrap());
        let other = std::sync::Arc::new(Marks::open(shm.as_fd()).unwrap().unwrap());
        let mark = other.mark(3).unwrap();
        assert!(matches!(writer.exclusive(3), Hold::Marked));
        drop(mark);
        let Hold::Held(held) = writer.exclusive(3) else {
            panic!("an unmarked place is held");
        };
        assert!(
            presence_held(shm.as_fd(), 3).unwrap(),
            "held: a mark cannot be taken"
        );
        drop(held);
        assert!(!presence_held(shm.as_fd(), 3).unwrap());
        assert!(other.mark(3).is_some(), "marked again once given back");
        // A mark waits for a hold given back within MARK_PATIENCE, and not for one kept longer.
        let Hold::Held(held) = writer.exclusive(4) else {
            panic!("an unmarked place is held");
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let marker = {
            let other = other.clone();
            std::thread::spawn(move || {
                tx.send(()).unwrap();
                other.mark(4).is_some()
            })
        };
        rx.recv().unwrap();
        std::thread::sleep(MARK_PATIENCE / 4);
        drop(held);
        assert!(
            marker.join().unwrap(),
            "marked once the hold was given back"
        );
        let Hold::Held(_kept) = writer.exclusive(5) else {
            panic!("an unmarked place is held");
        };
        assert!(
            other.mark(5).is_none(),
            "a hold kept past the patience: no mark"
        );
        assert_ne!(pid_namespace(), 0);
    }
}

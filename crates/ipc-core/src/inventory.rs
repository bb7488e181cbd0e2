//! The inventory of IPC objects the caller can see (POSIX shared memory, named semaphores and
//! queues, System V queues, segments and semaphore sets, FIFOs and Unix sockets under chosen
//! directories), who created and last used each where the kernel records it, whether those
//! processes live, and the verdict the `ipc` command's `clean --stale` acts on.
//!
//! ```
//! use ipc_core::inventory::{self, Verdict};
//!
//! let found = inventory::scan(&inventory::Options::default());
//! for object in &found.objects {
//!     // Stale only when every process that could still use it is known dead.
//!     if object.verdict == Verdict::Stale {
//!         println!("{} {}: {}", object.kind, object.name, object.why);
//!     }
//! }
//! for note in &found.notes {
//!     println!("note: {note}");
//! }
//! ```
//!
//! # Where each kind comes from
//!
//! | kind       | source                                   | processes the kernel records   |
//! |------------|------------------------------------------|--------------------------------|
//! | `shm`      | `/dev/shm/NAME`                          | none                           |
//! | `sem`      | `/dev/shm/sem.NAME` (glibc's named sems)  | none                           |
//! | `mq`       | an `mqueue` mount (`/dev/mqueue`)        | none (`NOTIFY_PID` only)       |
//! | `sysv-msg` | `/proc/sysvipc/msg`                      | last sender, last receiver     |
//! | `sysv-shm` | `/proc/sysvipc/shm`                      | creator, last attach/detach    |
//! | `sysv-sem` | `/proc/sysvipc/sem`                      | none                           |
//! | `fifo`     | the directories in [`Options::dirs`]     | none                           |
//! | `socket`   | the same directories, `/proc/net/unix`   | none                           |
//!
//! Besides, every readable `/proc/PID/fd` and `/proc/PID/maps` is scanned once per
//! [`scan`]: a process that has an object open or mapped now is one of its
//! [`holders`](Object::holders); and every `/proc/PID/task/TID/syscall`: a process with a
//! thread blocked in `msgrcv`, `msgsnd` or `semop` on a System V queue or set is one of that
//! object's holders (a receiver waiting for the next message is recorded nowhere else).
//! Processes of other users are readable only by root; the scan says how many it could not
//! read ([`Inventory::notes`]).
//!
//! # Liveness and pid reuse
//!
//! The kernel records bare pids. A pid that names no process, or a zombie, is dead. A live
//! process with that pid counts as the recorded one only if it started no later than the
//! record was made (the object's operation time, in seconds): one that started after is a
//! reuse of the pid, and the recorded process is dead. Anything that cannot be told (a pid
//! from another PID namespace, which the kernel shows as 0 once it recorded one, a pid whose
//! process `/proc` hides (`hidepid`), no `/proc`) is [`Liveness::Unknown`].
//!
//! # The verdict
//!
//! [`Verdict::Stale`] only when it is proven: no process has the object open or mapped, and
//! every process that could still use it is known dead: the users a recognised header names
//! ([`Recognised`], filled in by the mechanism crates, for example `ipc_shm::inspect`), or
//! the processes the kernel records (System V). Everything else is [`Verdict::Unknown`] (with
//! the reason) or [`Verdict::InUse`]. Objects whose users nobody records (a plain POSIX
//! segment, a FIFO, a POSIX queue) are therefore never stale, and neither is a System V queue
//! that still holds messages (a queue outlives its processes by design). A header's users
//! never prove an object stale from a PID namespace other than the initial one: their pids are
//! those of the writer's namespace, and processes outside this one hold objects unseen.
//!
//! A verdict is as old as its scan: a tool about to act on one looks again first
//! ([`Object::refreshed`], [`Object::same_as`]).

use std::collections::HashMap;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::sysv::SysvKind;
use crate::{PosixName, Removable};

/// What an object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// A POSIX shared memory object (`shm_open`), `/dev/shm/NAME`.
    Shm,
    /// A POSIX named semaphore (`sem_open`), `/dev/shm/sem.NAME`.
    Semaphore,
    /// A POSIX message queue (`mq_open`).
    Queue,
    /// A System V message queue (`msgget`).
    SysvQueue,
    /// A System V shared memory segment (`shmget`).
    SysvShm,
    /// A System V semaphore set (`semget`).
    SysvSemaphore,
    /// A FIFO (`mkfifo`).
    Fifo,
    /// A Unix-domain socket bound to a path.
    Socket,
}

impl Kind {
    /// Every kind, in listing order.
    pub const ALL: [Kind; 8] = [
        Kind::Shm,
        Kind::Semaphore,
        Kind::Queue,
        Kind::SysvQueue,
        Kind::SysvShm,
        Kind::SysvSemaphore,
        Kind::Fifo,
        Kind::Socket,
    ];

    /// The short name the `ipc` command prints and accepts: `shm`, `sem`, `mq`, `sysv-msg`,
    /// `sysv-shm`, `sysv-sem`, `fifo`, `socket`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Shm => "shm",
            Kind::Semaphore => "sem",
            Kind::Queue => "mq",
            Kind::SysvQueue => "sysv-msg",
            Kind::SysvShm => "sysv-shm",
            Kind::SysvSemaphore => "sysv-sem",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
        }
    }

    /// The kind [`as_str`](Kind::as_str) names.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn sysv(self) -> Option<SysvKind> {
        match self {
            Kind::SysvQueue => Some(SysvKind::MessageQueue),
            Kind::SysvShm => Some(SysvKind::SharedMemory),
            Kind::SysvSemaphore => Some(SysvKind::SemaphoreSet),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Whether a process lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// Running (or at least not known to have ended).
    Alive,
    /// Known to have ended: no such process, a zombie, or the pid now names a process that
    /// started after the one recorded.
    Dead,
    /// Cannot be told (no pid recorded, another PID namespace, no `/proc`).
    Unknown,
}

impl Liveness {
    /// `alive`, `dead` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Dead => "dead",
            Liveness::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A process the kernel or a header names, and whether it lives. Displayed as `PID (alive)`,
/// or `none` for pid 0 (nothing recorded yet, or a process outside this PID namespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Process {
    /// Its pid, as seen from this PID namespace (0: none recorded or not visible here).
    pub pid: u32,
    /// Whether it lives.
    pub liveness: Liveness,
}

impl Process {
    /// The process `pid`, recorded at unix time `recorded_at` (seconds) or later, checked now.
    /// See the module docs for how pid reuse is told apart.
    pub fn check(pid: u32, recorded_at: Option<u64>) -> Process {
        Process {
            pid,
            liveness: liveness(pid, recorded_at),
        }
    }
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pid == 0 {
            f.pad("none")
        } else {
            f.pad(&format!("{} ({})", self.pid, self.liveness))
        }
    }
}

/// One user of an object as its header names it (an end of a channel, say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Its role (`sender`, `receiver`, ...).
    pub role: String,
    /// Its state as the header says (`attached`, `closed`, `free`, ...).
    pub state: String,
    /// The process holding it, if the header names one.
    pub pid: Option<u32>,
    /// The PID namespace that pid is in, when the header says it is not this process's (the
    /// inode number `/proc/PID/ns/pid` shows, as in `pid:[4026531836]`): the pid then names
    /// nothing here, or another process.
    pub pid_namespace: Option<u64>,
    /// Whether this user could still use the object: [`Liveness::Dead`] for a process found
    /// dead and for a user that closed for good; [`Liveness::Unknown`] for a free place any
    /// process may take.
    pub can_use: Liveness,
}

/// What a mechanism crate found in an object's header: its type, facts and users. Made by
/// `ipc_shm::inspect` and `ipc_sync::inspect`; nothing in it is trusted beyond what that
/// crate validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recognised {
    /// What it is (`ipc-shm channel`, ...).
    pub what: String,
    /// Facts, in display order (`layout version` = `2`, `capacity` = `65536`, ...).
    pub facts: Vec<(String, String)>,
    /// The users the header names.
    pub users: Vec<User>,
    /// Set when the header is this library's but fails validation: what is wrong.
    pub corrupted: Option<String>,
}

/// The verdict on an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// A live process has it open or mapped, or could still use it.
    InUse,
    /// Provably stale: nobody has it open or mapped and every process that could still use
    /// it is known dead.
    Stale,
    /// Neither can be proven.
    Unknown,
}

impl Verdict {
    /// `in-use`, `stale` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::InUse => "in-use",
            Verdict::Stale => "stale",
            Verdict::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One IPC object.
#[derive(Clone, Debug)]
pub struct Object {
    /// What it is.
    pub kind: Kind,
    /// Its name: `/NAME` for POSIX objects, the path for FIFOs and sockets, the key in hex
    /// for System V objects (`0x00000000` is `IPC_PRIVATE`).
    pub name: String,
    /// Its path, where it has one (also for POSIX objects: their file in `/dev/shm` or the
    /// mqueue mount).
    pub path: Option<PathBuf>,
    /// The System V key and id.
    pub sysv: Option<(i32, i32)>,
    /// The owner's uid.
    pub uid: u32,
    /// The permission bits.
    pub mode: u32,
    /// Its size in bytes (for a queue: the bytes queued now).
    pub size: Option<u64>,
    /// Messages queued now (System V queues; POSIX queues once inspected), or semaphores in a
    /// set.
    pub depth: Option<u64>,
    /// Attachments now (System V segments).
    pub attached: Option<u64>,
    /// The creator, where the kernel records it.
    pub creator: Option<Process>,
    /// The last users the kernel records (last attach/detach; last send, last receive).
    pub last_users: Vec<Process>,
    /// Processes (readable by this user) that have it open or mapped now; for a System V
    /// queue or semaphore set, that have a thread blocked in a call on it (`msgrcv`,
    /// `msgsnd`, `semop`).
    pub holders: Vec<u32>,
    /// What the header says, when a mechanism crate recognised it.
    pub recognised: Option<Recognised>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why.
    pub why: String,
    dev_ino: Option<(u64, u64)>,
    /// System V: the kernel's change time (creation, or the last `IPC_SET`), part of what
    /// tells the object from another later made at the same id.
    changed: Option<u64>,
    /// Users the kernel recorded but whose pid it shows as 0 here: processes of a PID
    /// namespace this one cannot see, whose liveness nobody here can tell.
    unseen: Vec<&'static str>,
    /// Whether every process was searched for a thread waiting on this System V queue or
    /// semaphore set (false when some could not be read, or `/proc` hides some).
    searched_all: bool,
}

impl Object {
    /// How to remove it: by path for files (only while the path still names the file the
    /// scan saw), by id for System V objects.
    pub fn removable(&self) -> Option<Removable> {
        if let Some((_, id)) = self.sysv {
            return Some(Removable::Sysv(self.kind.sysv()?, id));
        }
        let path = self.path.clone()?;
        Some(match self.dev_ino {
            Some((dev, ino)) => Removable::SameFile { path, dev, ino },
            None => Removable::Path(path),
        })
    }

    /// The object as it is now, found again by what [`removable`](Object::removable) removes
    /// (its id, its path), and judged again; `None` once nothing is there. Compare it with
    /// this one with [`same_as`](Object::same_as): another object may have taken the id or
    /// the name since.
    ///
    /// For a tool about to remove an object judged earlier (`ipc clean`): what made it stale
    /// then may have changed. A System V object's record is read again (`IPC_STAT`, or its
    /// row of `/proc/sysvipc` when this user may not read it); a file is looked at again
    /// (`lstat`), its [`holders`](Object::holders) are the scan's (another search of `/proc`
    /// would cost a whole scan), and a header the scan recognised must be recognised again
    /// (`recognise`) before the verdict counts.
    pub fn refreshed(&self) -> Option<Object> {
        let mut now = match (self.sysv, self.kind.sysv()) {
            (Some((_, id)), Some(skind)) => {
                let mut o = sysv_stat(skind, id)?;
                // What the scan found of its waiters, which this look does not search again.
                o.holders.clone_from(&self.holders);
                o.searched_all = self.searched_all;
                o
            }
            _ => {
                let path = self.path.as_ref()?;
                let meta = path.symlink_metadata().ok()?;
                let mut o = file_object(self.kind, self.name.clone(), path.clone(), &meta);
                o.holders.clone_from(&self.holders);
                o
            }
        };
        now.judge();
        Some(now)
    }

    /// Whether `other` is this object, not another one that took its place: the same kind,
    /// name and file (device and inode), or the same System V key, id, change time and
    /// creator.
    pub fn same_as(&self, other: &Object) -> bool {
        self.kind == other.kind
            && self.name == other.name
            && self.path == other.path
            && self.dev_ino == other.dev_ino
            && self.sysv == other.sysv
            && self.changed == other.changed
            && self.creator.map(|p| p.pid) == other.creator.map(|p| p.pid)
    }

    /// The kernel's record of this System V object now ([`sysv_record`] by its id), `None`
    /// when the id is gone or names another object now (the kernel reuses ids): never
    /// another object's record shown as this one's.
    pub fn sysv_record(&self) -> Option<Vec<(String, String)>> {
        let skind = self.kind.sysv()?;
        let row = sysv_record(skind, self.sysv?.1)?;
        let now = sysv_row_object(skind, &row)?;
        self.same_as(&now).then_some(row)
    }

    /// The POSIX name of a shared memory object, named semaphore or queue.
    ///
    /// `None` when its file name is not UTF-8: [`name`](Object::name) then shows it with
    /// U+FFFD for the bytes that are not, which is the name of another object (one anybody
    /// can create), and no [`PosixName`] can hold the real one. Remove such an object by its
    /// path ([`removable`](Object::removable)).
    pub fn posix_name(&self) -> Option<PosixName> {
        match self.kind {
            Kind::Shm | Kind::Semaphore | Kind::Queue => {}
            _ => return None,
        }
        if let Some(path) = &self.path {
            path.file_name()?.to_str()?;
        }
        PosixName::new(&self.name).ok()
    }

    /// Attaches what a mechanism crate recognised and judges again. (A user the mechanism
    /// found dead is dead: `ipc-shm`'s check takes a process `/proc` hides, `hidepid=`, for
    /// alive through its pidfd, and "closed" is final whoever runs.)
    pub fn recognise(&mut self, recognised: Recognised) {
        self.recognised = Some(recognised);
        self.judge();
    }

    /// Sets [`verdict`](Object::verdict) and [`why`](Object::why) from what is known (see
    /// the module docs).
    pub fn judge(&mut self) {
        let (verdict, why) = self.verdict_now();
        self.verdict = verdict;
        self.why = why;
    }

    fn verdict_now(&self) -> (Verdict, String) {
        if !self.holders.is_empty() {
            let pids: Vec<String> = self.holders.iter().map(u32::to_string).collect();
            let how = if self.sysv.is_some() {
                "waited on (msgrcv, msgsnd, semop) by"
            } else {
                "open or mapped by"
            };
            return (Verdict::InUse, format!("{how} pid {}", pids.join(", ")));
        }
        if let Some(r) = &self.recognised {
            if let Some(what) = &r.corrupted {
                return (
                    Verdict::Unknown,
                    format!("{}: header corrupted: {what}", r.what),
                );
            }
            let (verdict, why) = judge_all(
                r.users.iter().map(|u| (u.role.clone(), u.pid, u.can_use)),
                &format!("{}: no user named in the header", r.what),
            );
            if verdict == Verdict::Stale && pid_namespace_is_nested() {
                // The pids in a header are those of the namespace of the process that wrote
                // them, and processes outside this one map the object unseen: neither "dead"
                // nor "nobody maps it" can be told from here.
                return (
                    Verdict::Unknown,
                    format!(
                        "{why}, as seen from this PID namespace, which is nested: processes \
                         outside it, which may use it, cannot be seen from here"
                    ),
                );
            }
            return (verdict, why);
        }
        if let Some(n @ 1..) = self.attached {
            return (Verdict::InUse, format!("{n} attachment(s)"));
        }
        if let (Kind::SysvQueue, Some(n @ 1..)) = (self.kind, self.depth) {
            // A queue outlives its processes by design: messages in it may be awaited by a
            // receiver that has not started yet.
            return (
                Verdict::Unknown,
                format!("holds {n} message(s) a future receiver may want"),
            );
        }
        let recorded: Vec<(&str, Process)> = self
            .creator
            .iter()
            .map(|p| ("creator", *p))
            .chain(self.last_users.iter().map(|p| ("last user", *p)))
            .filter(|(_, p)| p.pid != 0)
            .collect();
        if recorded.is_empty() && self.unseen.is_empty() {
            let why = match self.kind {
                Kind::SysvQueue => "no send or receive recorded yet",
                Kind::SysvShm => "the kernel shows no creator here (another PID namespace?)",
                _ => "nobody records which processes use it",
            };
            return (Verdict::Unknown, why.to_owned());
        }
        // A user the kernel recorded in a PID namespace this one cannot see (its pid reads 0
        // here) may live: it makes the verdict unknown, never stale.
        let unseen = self.unseen.iter().map(|role| {
            (
                format!("{role} (in a PID namespace not visible here)"),
                None,
                Liveness::Unknown,
            )
        });
        let (verdict, why) = judge_all(
            recorded
                .iter()
                .map(|(role, p)| ((*role).to_owned(), Some(p.pid), p.liveness))
                .chain(unseen),
            "",
        );
        if verdict == Verdict::Stale
            && !self.searched_all
            && matches!(self.kind, Kind::SysvQueue | Kind::SysvSemaphore)
        {
            // A thread blocked in `msgrcv`, `msgsnd` or `semop` is recorded nowhere but in its
            // process's `/proc` entry, and some could not be read.
            return (
                Verdict::Unknown,
                format!(
                    "{why}; but processes this user cannot read (other users', hidden by \
                     /proc's hidepid=, or whose threads kernel.yama.ptrace_scope keeps from \
                     it) may have a thread waiting on it: run as root to know"
                ),
            );
        }
        (verdict, why)
    }
}

/// Whether this process runs in a PID namespace other than the initial one (a container's,
/// say), or cannot tell: processes of the namespaces around it may exist that it cannot see,
/// though they share its `/dev/shm` (`docker run --ipc=host`). The initial namespace is the
/// one whose `/proc/self/ns/pid` reads `pid:[4026531836]` (the kernel's fixed
/// `PROC_PID_INIT_INO`); `NSpid` in `/proc/self/status` would not do, as it lists only the
/// namespaces from the one `/proc` was mounted for. Read once.
fn pid_namespace_is_nested() -> bool {
    /// The initial PID namespace's inode number (`PROC_PID_INIT_INO`).
    const INITIAL: u64 = 0xEFFF_FFFC;
    static NESTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NESTED.get_or_init(|| crate::process::pid_namespace() != INITIAL)
}

/// The verdict over users: in use if one can still use it, stale if all are dead.
fn judge_all(
    users: impl Iterator<Item = (String, Option<u32>, Liveness)>,
    none: &str,
) -> (Verdict, String) {
    let mut dead = Vec::new();
    let mut unknown = None;
    for (role, pid, can_use) in users {
        let who = match pid {
            Some(p) => format!("{role} (pid {p})"),
            None => role,
        };
        match can_use {
            Liveness::Alive => return (Verdict::InUse, format!("{who} is alive")),
            Liveness::Dead => dead.push(who),
            Liveness::Unknown => unknown = unknown.or(Some(who)),
        }
    }
    match unknown {
        Some(who) => (
            Verdict::Unknown,
            format!("cannot tell whether {who} may use it"),
        ),
        None if dead.is_empty() => (Verdict::Unknown, none.to_owned()),
        None => (
            Verdict::Stale,
            format!("dead or closed: {}", dead.join(", ")),
        ),
    }
}

/// What to scan.
#[derive(Clone, Debug)]
pub struct Options {
    /// Directories searched for FIFOs and sockets (recursively, without following symbolic
    /// links, at most [`Options::depth`] levels deep).
    pub dirs: Vec<PathBuf>,
    /// How many levels below each directory are searched.
    pub depth: usize,
    /// Where POSIX shared memory lives.
    pub shm_dir: PathBuf,
}

impl Default for Options {
    /// `/tmp` and `$XDG_RUNTIME_DIR` (when set), 4 levels; `/dev/shm`.
    fn default() -> Options {
        let mut dirs = vec![PathBuf::from("/tmp")];
        if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR") {
            dirs.push(PathBuf::from(run));
        }
        Options {
            dirs,
            depth: 4,
            shm_dir: PathBuf::from("/dev/shm"),
        }
    }
}

/// What [`scan`] found.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    /// The objects, by kind then name.
    pub objects: Vec<Object>,
    /// What could not be listed, and why (no mqueue mount, unreadable `/proc` entries, ...).
    pub notes: Vec<String>,
}

/// Lists every object the caller can see; see the module docs. Never fails: what cannot be
/// read is left out and said in [`Inventory::notes`].
///
/// Reads `/dev/shm`, the mqueue mount, `/proc/sysvipc/*`, `/proc/net/unix`, the directories
/// of `options`, and `/proc/PID/{fd,maps,stat}` of every process it may read. Blocks on
/// nothing but those reads.
pub fn scan(options: &Options) -> Inventory {
    let mut inv = Inventory::default();
    let mut within = vec![options.shm_dir.clone()];
    within.extend(options.dirs.iter().cloned());
    let holders = Holders::scan(&within, &mut inv.notes);
    scan_shm(&options.shm_dir, &mut inv);
    scan_queues(&mut inv);
    for kind in [
        SysvKind::MessageQueue,
        SysvKind::SharedMemory,
        SysvKind::SemaphoreSet,
    ] {
        match sysv_objects(kind) {
            Some(objects) => inv.objects.extend(objects),
            None => inv.notes.push(format!(
                "System V {kind} not listed: /proc/sysvipc cannot be read"
            )),
        }
    }
    let bound = bound_sockets();
    for dir in &options.dirs {
        scan_dir(dir, options.depth, &mut inv);
    }
    for o in &mut inv.objects {
        if let Some(path) = &o.path {
            o.holders = holders.of(path);
        }
        if let (Some((_, id)), Some(skind)) = (o.sysv, o.kind.sysv()) {
            o.holders = holders
                .waiting
                .get(&(skind, id))
                .cloned()
                .unwrap_or_default();
            o.searched_all = holders.complete;
        }
        if o.kind == Kind::Socket && o.holders.is_empty() && bound.contains(path_key(o)) {
            o.why = "a socket is bound at this path".to_owned();
            o.verdict = Verdict::InUse;
            continue;
        }
        o.judge();
    }
    inv.objects
        .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    inv
}

fn path_key(o: &Object) -> &Path {
    o.path.as_deref().unwrap_or(Path::new(""))
}

fn file_object(kind: Kind, name: String, path: PathBuf, meta: &std::fs::Metadata) -> Object {
    Object {
        kind,
        name,
        path: Some(path),
        sysv: None,
        uid: meta.uid(),
        mode: meta.mode() & 0o7777,
        size: Some(meta.size()),
        depth: None,
        attached: None,
        creator: None,
        last_users: Vec::new(),
        holders: Vec::new(),
        recognised: None,
        verdict: Verdict::Unknown,
        why: String::new(),
        dev_ino: Some((meta.dev(), meta.ino())),
        changed: None,
        unseen: Vec::new(),
        searched_all: true,
    }
}

fn scan_shm(dir: &Path, inv: &mut Inventory) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            inv.notes.push(format!(
                "POSIX shared memory and named semaphores not listed: {}: {e}",
                dir.display()
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        let file = entry.file_name().to_string_lossy().into_owned();
        let (kind, name) = match file.strip_prefix("sem.") {
            Some(sem) => (Kind::Semaphore, format!("/{sem}")),
            None => (Kind::Shm, format!("/{file}")),
        };
        inv.objects
            .push(file_object(kind, name, entry.path(), &meta));
    }
}

/// Where an mqueue filesystem is mounted: `/dev/mqueue`, or the first other mount point of one
/// in `/proc/self/mountinfo`.
pub fn mqueue_mount() -> Option<PathBuf> {
    mqueue_mount_in(&std::fs::read("/proc/self/mountinfo").ok()?)
}

/// [`mqueue_mount`] of a mountinfo table.
fn mqueue_mount_in(info: &[u8]) -> Option<PathBuf> {
    // Bytes, not a `String`: a mount point that is not UTF-8, anywhere in the table, must not
    // hide the mqueue mount (which may be such a path itself).
    let points: Vec<PathBuf> = info
        .split(|&b| b == b'\n')
        .filter_map(|l| {
            let sep = l.windows(3).position(|w| w == b" - ")?;
            let (left, right) = (&l[..sep], &l[sep + 3..]);
            let point = left
                .split(|&b| b == b' ')
                .filter(|f| !f.is_empty())
                .nth(4)?;
            let fstype = right.split(|&b| b == b' ').find(|f| !f.is_empty())?;
            (fstype == b"mqueue")
                .then(|| PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(point))))
        })
        .collect();
    let dev = Path::new("/dev/mqueue");
    points
        .iter()
        .find(|p| *p == dev)
        .or(points.first())
        .cloned()
}

/// Mount points in mountinfo escape space, tab, newline and backslash as `\ooo`.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let octal = s
            .get(i + 1..i + 4)
            .filter(|_| s[i] == b'\\')
            .and_then(|o| std::str::from_utf8(o).ok())
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match octal {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    out
}

fn scan_queues(inv: &mut Inventory) {
    let Some(mount) = mqueue_mount() else {
        inv.notes.push(
            "POSIX queues not listed: no mqueue filesystem is mounted (as root: \
             mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue; a queue whose name \
             you know can still be inspected by name)"
                .to_owned(),
        );
        return;
    };
    let Ok(entries) = std::fs::read_dir(&mount) else {
        inv.notes.push(format!(
            "POSIX queues not listed: {} cannot be read",
            mount.display()
        ));
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        let name = format!("/{}", entry.file_name().to_string_lossy());
        let mut o = file_object(Kind::Queue, name, entry.path(), &meta);
        // The file reads "QSIZE:n NOTIFY:n SIGNO:n NOTIFY_PID:n": bytes queued now.
        o.size = std::fs::read_to_string(entry.path()).ok().and_then(|t| {
            t.split_whitespace()
                .find_map(|f| f.strip_prefix("QSIZE:")?.parse().ok())
        });
        inv.objects.push(o);
    }
}

/// One `/proc/sysvipc` table: each row as (column name, value) pairs, in the kernel's order.
fn sysv_table(kind: SysvKind) -> Option<Vec<Vec<(String, String)>>> {
    let text = std::fs::read_to_string(kind.proc_table()).ok()?;
    let mut lines = text.lines();
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    Some(
        lines
            .map(|l| {
                names
                    .iter()
                    .zip(l.split_whitespace())
                    .map(|(n, v)| ((*n).to_owned(), v.to_owned()))
                    .collect::<Vec<_>>()
            })
            .filter(|row| !row.is_empty())
            .collect(),
    )
}

/// The column of a table that holds the id.
fn id_column(kind: SysvKind) -> &'static str {
    match kind {
        SysvKind::MessageQueue => "msqid",
        SysvKind::SharedMemory => "shmid",
        SysvKind::SemaphoreSet => "semid",
    }
}

/// The kernel's record of one System V object (its row of `/proc/sysvipc/*`, column name and
/// value, in the kernel's order), by id.
pub fn sysv_record(kind: SysvKind, id: i32) -> Option<Vec<(String, String)>> {
    let col = id_column(kind);
    sysv_table(kind)?.into_iter().find(|row| {
        row.iter()
            .any(|(n, v)| n == col && v.parse::<i32>().ok() == Some(id))
    })
}

/// The System V objects of `kind` in this IPC namespace, from `/proc/sysvipc` alone (no
/// holders, not judged): what a tool that only counts them needs. `None` when the table cannot
/// be read.
pub fn sysv_objects(skind: SysvKind) -> Option<Vec<Object>> {
    Some(
        sysv_table(skind)?
            .iter()
            .filter_map(|row| sysv_row_object(skind, row))
            .collect(),
    )
}

/// The object one row of `/proc/sysvipc/*` describes.
fn sysv_row_object(skind: SysvKind, row: &[(String, String)]) -> Option<Object> {
    let row: HashMap<&str, &str> = row.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    sysv_object(skind, |k| {
        let v = row.get(k)?;
        if k == "perms" {
            i64::from_str_radix(v, 8).ok()
        } else {
            v.parse().ok()
        }
    })
}

/// One System V object from the kernel's record of it, each field read by `field` under its
/// column name in `/proc/sysvipc/*` (`perms` as a number); `None` without a key or an id.
fn sysv_object(skind: SysvKind, field: impl Fn(&str) -> Option<i64>) -> Option<Object> {
    let kind = match skind {
        SysvKind::MessageQueue => Kind::SysvQueue,
        SysvKind::SharedMemory => Kind::SysvShm,
        SysvKind::SemaphoreSet => Kind::SysvSemaphore,
    };
    let num = |k: &str| field(k).and_then(|v| u64::try_from(v).ok());
    let (key, id) = (field("key")?, field(id_column(skind))?);
    let mode = field("perms").unwrap_or(0) as u32;
    let mut unseen = Vec::new();
    // The process column `pid` records, checked against the latest of the times `at` (pid
    // reuse). The kernel shows 0 both for "nothing recorded yet" and for a process of a PID
    // namespace this one cannot see; the column's own times (`own`, the first of `at`) tell
    // them apart: set, something was recorded, and that 0 is a process that may live
    // (`unseen`).
    let mut proc_at = |role: &'static str, pid: &str, own: usize, at: &[&str]| {
        let t = at.iter().filter_map(|k| num(k)).max();
        let p = num(pid)?;
        if p == 0 && at[..own].iter().any(|k| num(k).is_some_and(|t| t > 0)) {
            unseen.push(role);
        }
        Some(Process::check(p as u32, t))
    };
    let (size, depth, attached, creator, last) = match skind {
        SysvKind::MessageQueue => (
            num("cbytes"),
            num("qnum"),
            None,
            None,
            [
                proc_at("last sender", "lspid", 1, &["stime", "ctime"]),
                proc_at("last receiver", "lrpid", 1, &["rtime", "ctime"]),
            ]
            .into_iter()
            .flatten()
            .collect(),
        ),
        SysvKind::SharedMemory => (
            num("size"),
            None,
            num("nattch"),
            // Every segment has a creator (and a change time): a 0 is one not visible here.
            proc_at("creator", "cpid", 1, &["ctime"]),
            proc_at("last user", "lpid", 2, &["atime", "dtime", "ctime"])
                .into_iter()
                .collect(),
        ),
        SysvKind::SemaphoreSet => (None, num("nsems"), None, None, Vec::new()),
    };
    let changed = num("ctime");
    Some(Object {
        kind,
        name: format!("{:#010x}", key as i32),
        path: None,
        sysv: Some((key as i32, id as i32)),
        uid: num("uid").map_or(u32::MAX, |u| u as u32),
        mode: mode & 0o777,
        size,
        depth,
        attached,
        creator,
        last_users: last,
        holders: Vec::new(),
        recognised: None,
        verdict: Verdict::Unknown,
        why: String::new(),
        dev_ino: None,
        changed,
        unseen,
        searched_all: true,
    })
}

/// The kernel's record of the System V object of `skind` with id `id` now, as an object (not
/// judged): by `IPC_STAT` (which pid namespaces translate as `/proc/sysvipc` does), or, when
/// this user may not read the object, its row of `/proc/sysvipc`. `None` once the id is gone.
fn sysv_stat(skind: SysvKind, id: i32) -> Option<Object> {
    let from_table = || sysv_row_object(skind, &sysv_record(skind, id)?);
    let denied =
        |r: i32| r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EACCES);
    match skind {
        SysvKind::SharedMemory => {
            // SAFETY: all-zero bytes are a valid `shmid_ds` (integers only).
            let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
            // SAFETY: `ds` is a valid, writable `shmid_ds` for the call to fill.
            let r = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) };
            if denied(r) {
                return from_table();
            }
            if r < 0 {
                return None;
            }
            let p = &ds.shm_perm;
            sysv_object(skind, |k| {
                Some(match k {
                    "key" => i64::from(p.__key),
                    "shmid" => i64::from(id),
                    "perms" => i64::from(p.mode),
                    "uid" => i64::from(p.uid),
                    "size" => ds.shm_segsz as i64,
                    "nattch" => ds.shm_nattch as i64,
                    "cpid" => i64::from(ds.shm_cpid),
                    "lpid" => i64::from(ds.shm_lpid),
                    "atime" => ds.shm_atime,
                    "dtime" => ds.shm_dtime,
                    "ctime" => ds.shm_ctime,
                    _ => return None,
                })
            })
        }
        SysvKind::MessageQueue => {
            // SAFETY: all-zero bytes are a valid `msqid_ds` (integers only).
            let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
            // SAFETY: `ds` is a valid, writable `msqid_ds` for the call to fill.
            let r = unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) };
            if denied(r) {
                return from_table();
            }
            if r < 0 {
                return None;
            }
            let p = &ds.msg_perm;
            sysv_object(skind, |k| {
                Some(match k {
                    "key" => i64::from(p.__key),
                    "msqid" => i64::from(id),
                    "perms" => i64::from(p.mode),
                    "uid" => i64::from(p.uid),
                    "qnum" => ds.msg_qnum as i64,
                    "lspid" => i64::from(ds.msg_lspid),
                    "lrpid" => i64::from(ds.msg_lrpid),
                    "stime" => ds.msg_stime,
                    "rtime" => ds.msg_rtime,
                    "ctime" => ds.msg_ctime,
                    _ => return None,
                })
            })
        }
        // A set records no process: it is never stale, and its table row says all there is.
        SysvKind::SemaphoreSet => from_table(),
    }
}

/// Paths Unix sockets are bound to in this network namespace (`/proc/net/unix`).
///
/// Read as bytes (a path that is not UTF-8, anybody's, must not hide the others), each path
/// being the rest of its line after the seventh field and one space (it may hold spaces).
fn bound_sockets() -> std::collections::HashSet<PathBuf> {
    let Ok(table) = std::fs::read("/proc/net/unix") else {
        return Default::default();
    };
    table
        .split(|&b| b == b'\n')
        .skip(1)
        .filter_map(socket_path)
        .collect()
}

/// The filesystem path of one `/proc/net/unix` line (`None` for an unbound or abstract
/// socket): the kernel prints seven fields (the inode right-aligned, so a field may start
/// with spaces), then, for a bound socket, one space and the path verbatim.
fn socket_path(line: &[u8]) -> Option<PathBuf> {
    let mut rest = line;
    for _ in 0..7 {
        rest = rest.trim_ascii_start();
        rest = &rest[rest.iter().position(|&b| b == b' ')?..];
    }
    let path = rest.strip_prefix(b" ")?;
    path.starts_with(b"/")
        .then(|| PathBuf::from(std::ffi::OsStr::from_bytes(path)))
}

fn scan_dir(dir: &Path, depth: usize, inv: &mut Inventory) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        let ft = meta.file_type();
        let name = path.to_string_lossy().into_owned();
        if ft.is_fifo() {
            inv.objects.push(file_object(Kind::Fifo, name, path, &meta));
        } else if ft.is_socket() {
            let mut o = file_object(Kind::Socket, name, path, &meta);
            o.size = None;
            inv.objects.push(o);
        } else if ft.is_dir() && depth > 0 {
            scan_dir(&path, depth - 1, inv);
        }
    }
}

/// Which processes have which files open or mapped now: by the file's device and inode, and
/// by the path the kernel shows. The identity is what counts for a file made unnamed and
/// linked afterwards (`O_TMPFILE`, as POSIX segments and named semaphores are made), which
/// `/proc` keeps showing as `/dev/shm/#INODE (deleted)`, and for a name moved or replaced
/// since; the path for what has no file of its own (a queue descriptor reads as `/NAME`).
struct Holders {
    by_path: HashMap<PathBuf, Vec<u32>>,
    by_file: HashMap<(u64, u64), Vec<u32>>,
    /// Processes with a thread blocked in a call on a System V queue or semaphore set (which
    /// the kernel records nowhere else), by kind and id.
    waiting: HashMap<(SysvKind, i32), Vec<u32>>,
    /// Whether every process could be searched (none unreadable, none hidden by `/proc`).
    complete: bool,
}

impl Holders {
    /// `within`: the directories whose objects are listed. Only descriptors of files there
    /// are looked at with `stat` (which asks the file's filesystem: a hung network mount
    /// elsewhere must not hang the scan); the others are known by the path `/proc` shows.
    fn scan(within: &[PathBuf], notes: &mut Vec<String>) -> Holders {
        let mut holders = Holders {
            by_path: HashMap::new(),
            by_file: HashMap::new(),
            waiting: HashMap::new(),
            complete: false,
        };
        let mut unreadable = 0;
        let mut unsearched_waits = 0usize;
        let me = std::process::id();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            notes.push("/proc cannot be read: no process is known to hold anything".to_owned());
            return holders;
        };
        let mqueue = mqueue_mount();
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let mut paths = Vec::new();
            let mut files = Vec::new();
            match std::fs::read_dir(p.path().join("fd")) {
                Ok(fds) => {
                    for fd in fds.flatten() {
                        let Ok(target) = std::fs::read_link(fd.path()) else {
                            continue;
                        };
                        // Only files have a name to hold ("socket:[N]", "pipe:[N]" do not).
                        if target.is_absolute() {
                            if within.iter().any(|dir| target.starts_with(dir)) {
                                if let Ok(st) = rustix::fs::stat(fd.path()) {
                                    files.push((st.st_dev, st.st_ino));
                                }
                            }
                            paths.push(target);
                        }
                    }
                }
                // Ended since /proc was listed: it holds nothing now.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) => {
                    unreadable += 1;
                    continue;
                }
            }
            // Bytes, not a `String`: a path that is not UTF-8 anywhere in the file must not
            // hide every other mapping of the process.
            if let Ok(maps) = std::fs::read(p.path().join("maps")) {
                for line in maps.split(|&b| b == b'\n') {
                    if let Some(file) = mapped_file(line) {
                        files.push(file);
                    }
                    // The path is the sixth field and may contain spaces.
                    if let Some(i) = line.windows(2).position(|w| w == b" /") {
                        let path = line[i + 1..].trim_ascii_end();
                        paths.push(PathBuf::from(std::ffi::OsStr::from_bytes(path)));
                    }
                }
            }
            for path in paths {
                // A descriptor of a queue reads as "/NAME" (its path in the mqueue mount).
                let path = match (&mqueue, path.parent()) {
                    (Some(m), Some(parent)) if parent == Path::new("/") => {
                        let mapped = m.join(path.strip_prefix("/").unwrap_or(&path));
                        holders.by_path.entry(mapped).or_default().push(pid);
                        path
                    }
                    _ => path,
                };
                holders.by_path.entry(path).or_default().push(pid);
            }
            for file in files {
                holders.by_file.entry(file).or_default().push(pid);
            }
            let (waits, searched) = waiting_on(&p.path());
            for object in waits {
                holders.waiting.entry(object).or_default().push(pid);
            }
            unsearched_waits += usize::from(!searched);
        }
        for pids in holders
            .by_path
            .values_mut()
            .chain(holders.by_file.values_mut())
            .chain(holders.waiting.values_mut())
        {
            pids.sort_unstable();
            pids.dedup();
        }
        holders.complete = unreadable == 0 && unsearched_waits == 0 && !proc_hides_processes();
        if unreadable > 0 {
            notes.push(format!(
                "{unreadable} processes of other users were not searched for open or mapped \
                 objects (run as root to see them)"
            ));
        }
        if unsearched_waits > 0 {
            notes.push(format!(
                "{unsearched_waits} processes were not searched for threads waiting on System V \
                 queues or semaphores (their /proc/PID/task/TID/syscall needs ptrace access: \
                 kernel.yama.ptrace_scope, or run as root)"
            ));
        }
        holders
    }

    /// The processes holding the file at `path` (by its identity, looked at now) or the path.
    fn of(&self, path: &Path) -> Vec<u32> {
        let mut pids = self.by_path.get(path).cloned().unwrap_or_default();
        if let Ok(st) = rustix::fs::lstat(path) {
            if let Some(more) = self.by_file.get(&(st.st_dev, st.st_ino)) {
                pids.extend(more);
                pids.sort_unstable();
                pids.dedup();
            }
        }
        pids
    }
}

/// The System V queues and semaphore sets the threads of the process at `/proc/PID` (`proc`)
/// are blocked on now: `msgrcv`/`msgsnd` on a queue, `semop`/`semtimedop` on a set, as
/// `/proc/PID/task/TID/syscall` shows (the call's number, then its arguments in hex, the id
/// first). A receiver waiting for the next message is recorded nowhere else: not in
/// `/proc/sysvipc/msg`, which keeps only the last sender and receiver. Also whether every
/// thread could be searched: the file needs ptrace access, which Yama (`ptrace_scope` 1)
/// refuses for a process of this very user that is not a child, where `fd` and `maps` still
/// read (a refusal without Yama, for a process with capabilities this one lacks, is taken
/// for no wait, as before).
fn waiting_on(proc: &Path) -> (Vec<(SysvKind, i32)>, bool) {
    let Ok(tasks) = std::fs::read_dir(proc.join("task")) else {
        return (Vec::new(), true);
    };
    let mut searched = true;
    let waits = tasks
        .flatten()
        .filter_map(|t| {
            let line = match std::fs::read_to_string(t.path().join("syscall")) {
                Ok(line) => line,
                // The thread ended since the listing (or is ending: a zombie's file refuses
                // to be read): it waits on nothing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                Err(_) if task_ended(&t.path()) => return None,
                // Refused by Yama (a process of this user that is not a child): not searched.
                Err(_) if yama_restricts_ptrace() => {
                    searched = false;
                    return None;
                }
                // Refused otherwise (a process holding capabilities this one lacks): as before,
                // taken for waiting on nothing.
                Err(_) => return None,
            };
            let mut fields = line.split_whitespace();
            let nr: libc::c_long = fields.next()?.parse().ok()?;
            let kind = match nr {
                libc::SYS_msgrcv | libc::SYS_msgsnd => SysvKind::MessageQueue,
                libc::SYS_semop | libc::SYS_semtimedop => SysvKind::SemaphoreSet,
                _ => return None,
            };
            let id = u64::from_str_radix(fields.next()?.strip_prefix("0x")?, 16).ok()?;
            Some((kind, i32::try_from(id).ok()?))
        })
        .collect();
    (waits, searched)
}

/// Whether Yama restricts ptrace (`kernel.yama.ptrace_scope` above 0), which keeps a process
/// from the `/proc/PID/task/TID/syscall` of its own user's processes that are not its children.
/// Read once.
fn yama_restricts_ptrace() -> bool {
    static RESTRICTS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *RESTRICTS.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
            .is_ok_and(|s| s.trim().parse::<u32>().is_ok_and(|n| n > 0))
    })
}

/// Whether the thread at `/proc/PID/task/TID` (`task`) has ended: gone, or a zombie.
fn task_ended(task: &Path) -> bool {
    match std::fs::read(task.join("stat")) {
        Ok(line) => line
            .iter()
            .rposition(|&b| b == b')')
            .and_then(|i| line.get(i + 2))
            .is_some_and(|&state| matches!(state, b'Z' | b'X')),
        Err(_) => true,
    }
}

/// The device and inode of the file a `/proc/PID/maps` line maps (`ADDR PERMS OFFSET MAJ:MIN
/// INODE PATH`, numbers of the device in hex); `None` for an anonymous mapping (inode 0) or a
/// line that does not parse.
fn mapped_file(line: &[u8]) -> Option<(u64, u64)> {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty()).skip(3);
    let dev = std::str::from_utf8(fields.next()?).ok()?;
    let ino: u64 = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let (major, minor) = dev.split_once(':')?;
    let major = u32::from_str_radix(major, 16).ok()?;
    let minor = u32::from_str_radix(minor, 16).ok()?;
    (ino != 0).then(|| (rustix::fs::makedev(major, minor), ino))
}

/// Whether `pid`, recorded at `recorded_at` (unix seconds) or later, still runs.
fn liveness(pid: u32, recorded_at: Option<u64>) -> Liveness {
    if pid == 0 {
        return Liveness::Unknown;
    }
    use rustix::io::Errno;
    let stat = match crate::process::read_stat(pid) {
        Ok(Some(stat)) => stat,
        // Missing from /proc (`hidepid=2` hides other users' processes) or unreadable there
        // (`hidepid=1` refuses them): gone, or hidden. The kernel itself tells which; a hidden
        // one may be the one recorded or a reuse of its pid, and without its start time
        // nobody can tell which.
        Err(Errno::NOENT | Errno::ACCESS | Errno::PERM) => {
            if crate::process::stat("self").is_none() {
                return Liveness::Unknown;
            }
            return if exists_unseen(pid) {
                Liveness::Unknown
            } else {
                Liveness::Dead
            };
        }
        // No descriptor to read it with, or a line that does not parse: nothing known.
        Ok(None) | Err(_) => return Liveness::Unknown,
    };
    if stat.has_ended() {
        return Liveness::Dead;
    }
    let started = Some(stat.start_ticks)
        .zip(boot_time())
        .map(|(ticks, boot)| boot + ticks / rustix::param::clock_ticks_per_second());
    match (started, recorded_at) {
        // Started more than a second after the record was made: the pid was reused.
        (Some(s), Some(at)) if at > 0 && s > at + 1 => Liveness::Dead,
        _ => Liveness::Alive,
    }
}

/// Whether `/proc` hides other users' processes from this one: mounted with `hidepid=` other
/// than 0 (`off`), for a caller that is not root (`CAP_SYS_PTRACE` sees them all).
fn proc_hides_processes() -> bool {
    if rustix::process::geteuid().is_root() {
        return false;
    }
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    mounts.lines().any(|line| {
        let mut fields = line.split(' ');
        let point = fields.nth(4);
        let options = line.rsplit(' ').next().unwrap_or("");
        point == Some("/proc")
            && line.contains(" - proc ")
            && options
                .split(',')
                .any(|o| o.starts_with("hidepid=") && o != "hidepid=0" && o != "hidepid=off")
    })
}

/// Whether a process with pid `pid` exists although `/proc` does not show it or refuses to
/// (mounted with `hidepid=2` or `hidepid=1`, which hide other users' processes): `kill(pid, 0)`
/// asks the kernel itself, ESRCH only when no process has the pid.
fn exists_unseen(pid: u32) -> bool {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|p| rustix::process::test_kill_process(p) != Err(rustix::io::Errno::SRCH))
}

fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_maps_line_names_its_file_by_device_and_inode() {
        let line = b"7fd79b919000-7fd79b91a000 rw-s 00000000 00:1b 16727                      /dev/shm/#16727 (deleted)";
        assert_eq!(
            mapped_file(line),
            Some((rustix::fs::makedev(0, 0x1b), 16727))
        );
        let line = b"7f00-7f10 r-xp 00001000 fd:01 123 /usr/lib/x 2 (with spaces)";
        assert_eq!(mapped_file(line), Some((rustix::fs::makedev(0xfd, 1), 123)));
        // Anonymous, the stack, and lines that do not parse.
        assert_eq!(
            mapped_file(b"7ffd-7ffe rw-p 00000000 00:00 0 [stack]"),
            None
        );
        assert_eq!(mapped_file(b"7ffd-7ffe rw-p 00000000 00:00 0"), None);
        assert_eq!(mapped_file(b"garbage"), None);
        assert_eq!(mapped_file(b"a b c zz:01 12 /x"), None);
        assert_eq!(mapped_file(b""), None);
    }

    #[test]
    fn kinds_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("nope"), None);
    }

    #[test]
    fn liveness_of_self_dead_and_reused() {
        let me = std::process::id();
        assert_eq!(liveness(me, None), Liveness::Alive);
        assert_eq!(liveness(0, None), Liveness::Unknown);
        assert_eq!(
            liveness(4_194_304, None),
            Liveness::Dead,
            "beyond PID_MAX_LIMIT"
        );
        assert_eq!(liveness(u32::MAX, None), Liveness::Dead, "not a pid at all");
        // Recorded long before this process started: a reused pid.
        assert_eq!(liveness(me, Some(1000)), Liveness::Dead);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(liveness(me, Some(now)), Liveness::Alive);
    }

    #[test]
    fn verdicts_need_proof() {
        let mut o = Object {
            kind: Kind::SysvShm,
            name: "0x00000000".into(),
            path: None,
            sysv: Some((0, 1)),
            uid: 0,
            mode: 0o600,
            size: Some(4096),
            depth: None,
            attached: Some(0),
            creator: Some(Process::check(4_194_304, None)),
            last_users: vec![Process::check(0, None)],
            holders: vec![],
            recognised: None,
            verdict: Verdict::Unknown,
            why: String::new(),
            dev_ino: None,
            changed: None,
            unseen: Vec::new(),
            searched_all: true,
        };
        o.judge();
        assert_eq!(o.verdict, Verdict::Stale, "{}", o.why);
        o.last_users = vec![Process::check(std::process::id(), None)];
        o.judge();
        assert_eq!(o.verdict, Verdict::InUse, "{}", o.why);
        // A last user in a PID namespace not visible here (pid 0, an attach time recorded)
        // may live, whatever the creator.
        o.last_users = vec![Process::check(0, None)];
        o.unseen = vec!["last user"];
        o.judge();
        assert_eq!(o.verdict, Verdict::Unknown, "{}", o.why);
        assert!(o.why.contains("not visible here"), "{}", o.why);
        o.unseen.clear();
        o.judge();
        assert_eq!(o.verdict, Verdict::Stale, "{}", o.why);
        o.creator = None;
        o.last_users.clear();
        o.judge();
        assert_eq!(o.verdict, Verdict::Unknown);
        // A System V queue whose recorded processes are dead but that holds messages.
        let mut q = o.clone();
        q.kind = Kind::SysvQueue;
        q.attached = None;
        q.last_users = vec![Process::check(4_194_304, None)];
        q.judge();
        assert_eq!(q.verdict, Verdict::Stale, "{}", q.why);
        q.depth = Some(2);
        q.judge();
        assert_eq!(q.verdict, Verdict::Unknown, "{}", q.why);
        let user = |can_use| User {
            role: "sender".into(),
            state: "attached".into(),
            pid: Some(7),
            pid_namespace: None,
            can_use,
        };
        o.recognise(Recognised {
            what: "test".into(),
            users: vec![user(Liveness::Dead), user(Liveness::Unknown)],
            ..Recognised::default()
        });
        assert_eq!(o.verdict, Verdict::Unknown);
        o.recognise(Recognised {
            what: "test".into(),
            users: vec![user(Liveness::Dead), user(Liveness::Dead)],
            ..Recognised::default()
        });
        assert_eq!(o.verdict, Verdict::Stale);
        o.holders = vec![1];
        o.judge();
        assert_eq!(o.verdict, Verdict::InUse);
        o.holders.clear();
        o.recognise(Recognised {
            what: "test".into(),
            corrupted: Some("scribbled".into()),
            ..Recognised::default()
        });
        assert_eq!(o.verdict, Verdict::Unknown);
        assert!(o.why.contains("corrupted"));
    }

    #[test]
    fn socket_paths_keep_spaces_and_skip_unbound_and_abstract_sockets() {
        let line =
            |rest: &str| format!("0000000000000000: 00000002 00000000 00010000 0001 01{rest}");
        let path = |rest: &str| socket_path(line(rest).as_bytes());
        assert_eq!(path("    12 /tmp/a b"), Some(PathBuf::from("/tmp/a b")));
        assert_eq!(path(" 123456 /run/x"), Some(PathBuf::from("/run/x")));
        assert_eq!(path("    12"), None);
        assert_eq!(path("    12 @abstract"), None);
    }

    /// A mount point that is not UTF-8 anywhere in the table (a removable disk's label, a
    /// user's FUSE mount) made the whole table unreadable: "no mqueue filesystem is mounted",
    /// queues unlisted and their descriptors not matched to holders. The mqueue mount point
    /// itself may be such a path too.
    #[test]
    fn an_mqueue_mount_is_found_whatever_else_is_mounted() {
        let mut info = b"36 35 98:0 / /media/disk-".to_vec();
        info.extend_from_slice(b"\xff rw - vfat /dev/sdb1 rw\n");
        info.extend_from_slice(b"40 35 0:30 / /run/mq\\040q- rw - mqueue mqueue rw\n");
        let mut want = b"/run/mq q-".to_vec();
        let mut odd = info.clone();
        odd.pop();
        odd.extend_from_slice(b"\n41 35 0:31 / /x/\xfe rw - mqueue mqueue rw\n");
        assert_eq!(
            mqueue_mount_in(&info),
            Some(PathBuf::from(std::ffi::OsStr::from_bytes(&want)))
        );
        // The first mqueue mount unless one is at /dev/mqueue.
        assert_eq!(
            mqueue_mount_in(&odd),
            Some(PathBuf::from(std::ffi::OsStr::from_bytes(&want)))
        );
        let only_odd = b"41 35 0:31 / /x/\xfe rw - mqueue mqueue rw\n";
        want = b"/x/\xfe".to_vec();
        assert_eq!(
            mqueue_mount_in(only_odd),
            Some(PathBuf::from(std::ffi::OsStr::from_bytes(&want)))
        );
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(br"/a\040b\134c\x"), br"/a b\c\x");
    }
}

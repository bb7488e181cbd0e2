//! Kernel knobs (`/proc/sys/...` files) and the limit errors that name them: every
//! [`ErrorKind::LimitExceeded`](crate::ErrorKind::LimitExceeded) of the workspace says which
//! knob to turn and what it is now.
//!
//! ```
//! use ipc_core::knob;
//!
//! // Present on every Linux system with /proc mounted.
//! if let Some(max) = knob::read(knob::PIPE_MAX_SIZE) {
//!     assert!(max >= 4096);
//! }
//! let e = knob::limit_error(knob::MQ_MSG_MAX);
//! assert_eq!(e.limit_info().unwrap().knob, "/proc/sys/fs/mqueue/msg_max");
//! ```

use crate::Error;

/// The largest capacity an unprivileged process may give a pipe.
pub const PIPE_MAX_SIZE: &str = "/proc/sys/fs/pipe-max-size";
/// The most messages an unprivileged process may give a POSIX queue.
pub const MQ_MSG_MAX: &str = "/proc/sys/fs/mqueue/msg_max";
/// The largest message an unprivileged process may give a POSIX queue.
pub const MQ_MSGSIZE_MAX: &str = "/proc/sys/fs/mqueue/msgsize_max";
/// The most POSIX queues on the system.
pub const MQ_QUEUES_MAX: &str = "/proc/sys/fs/mqueue/queues_max";
/// The number of messages of a POSIX queue created without attributes (capped by
/// [`MQ_MSG_MAX`]).
pub const MQ_MSG_DEFAULT: &str = "/proc/sys/fs/mqueue/msg_default";
/// The message size of a POSIX queue created without attributes (capped by
/// [`MQ_MSGSIZE_MAX`]).
pub const MQ_MSGSIZE_DEFAULT: &str = "/proc/sys/fs/mqueue/msgsize_default";
/// The most open files in the whole system (`ENFILE` when reached).
pub const FILE_MAX: &str = "/proc/sys/fs/file-max";
/// The most System V message queues.
pub const MSGMNI: &str = "/proc/sys/kernel/msgmni";
/// The largest System V message.
pub const MSGMAX: &str = "/proc/sys/kernel/msgmax";
/// The default byte capacity of a System V queue.
pub const MSGMNB: &str = "/proc/sys/kernel/msgmnb";
/// The most System V segments.
pub const SHMMNI: &str = "/proc/sys/kernel/shmmni";
/// The largest System V segment, in bytes.
pub const SHMMAX: &str = "/proc/sys/kernel/shmmax";
/// The most System V shared memory on the system, in pages.
pub const SHMALL: &str = "/proc/sys/kernel/shmall";
/// The four System V semaphore limits, in one file: `semmsl semmns semopm semmni`.
pub const SEM: &str = "/proc/sys/kernel/sem";

/// One kernel knob the workspace's errors name, described for tools that list them (the
/// `ipc limits` command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Knob {
    /// Its file (one of this module's constants).
    pub path: &'static str,
    /// For a file holding several numbers: which one (counted from 0) and its name.
    pub field: Option<(usize, &'static str)>,
    /// What it limits.
    pub limits: &'static str,
}

impl Knob {
    /// Its value now (see [`read`], [`read_field`]).
    pub fn read(&self) -> Option<u64> {
        read_field(self.path, self.field.map_or(0, |(i, _)| i))
    }

    /// Its name for `sysctl` (`fs.mqueue.msg_max`; `kernel.sem` for every field of [`SEM`],
    /// which is written as all four numbers at once).
    pub fn sysctl(&self) -> String {
        self.path.trim_start_matches("/proc/sys/").replace('/', ".")
    }

    /// Its name for display: the path, with the field's name for a file holding several.
    pub fn label(&self) -> String {
        match self.field {
            Some((_, name)) => format!("{} ({name})", self.path),
            None => self.path.to_owned(),
        }
    }
}

/// Every knob the workspace's errors name, in the order a table of them reads best (per
/// mechanism: pipes, POSIX queues, System V queues, segments, semaphores, then the system).
pub const ALL: &[Knob] = &[
    Knob {
        path: PIPE_MAX_SIZE,
        field: None,
        limits: "pipe and FIFO capacity (unprivileged), bytes",
    },
    Knob {
        path: MQ_QUEUES_MAX,
        field: None,
        limits: "POSIX queues on the system",
    },
    Knob {
        path: MQ_MSG_MAX,
        field: None,
        limits: "messages per POSIX queue (unprivileged)",
    },
    Knob {
        path: MQ_MSGSIZE_MAX,
        field: None,
        limits: "POSIX queue message size (unprivileged), bytes",
    },
    Knob {
        path: MQ_MSG_DEFAULT,
        field: None,
        limits: "messages of a POSIX queue made without attributes",
    },
    Knob {
        path: MQ_MSGSIZE_DEFAULT,
        field: None,
        limits: "message size of a POSIX queue made without attributes",
    },
    Knob {
        path: MSGMNI,
        field: None,
        limits: "System V message queues",
    },
    Knob {
        path: MSGMAX,
        field: None,
        limits: "System V message size, bytes",
    },
    Knob {
        path: MSGMNB,
        field: None,
        limits: "bytes a System V queue holds (default)",
    },
    Knob {
        path: SHMMNI,
        field: None,
        limits: "System V shared memory segments",
    },
    Knob {
        path: SHMMAX,
        field: None,
        limits: "System V segment size, bytes",
    },
    Knob {
        path: SHMALL,
        field: None,
        limits: "System V shared memory in all, pages",
    },
    Knob {
        path: SEM,
        field: Some((0, "SEMMSL")),
        limits: "semaphores per System V set",
    },
    Knob {
        path: SEM,
        field: Some((1, "SEMMNS")),
        limits: "System V semaphores in all sets",
    },
    Knob {
        path: SEM,
        field: Some((2, "SEMOPM")),
        limits: "operations per semop call",
    },
    Knob {
        path: SEM,
        field: Some((3, "SEMMNI")),
        limits: "System V semaphore sets",
    },
    Knob {
        path: FILE_MAX,
        field: None,
        limits: "open files on the system",
    },
    Knob {
        path: MAX_MAP_COUNT,
        field: None,
        limits: "memory mappings per process (each segment attached is one)",
    },
    Knob {
        path: THREADS_MAX,
        field: None,
        limits: "threads on the system (each end's helper thread is one)",
    },
    Knob {
        path: PID_MAX,
        field: None,
        limits: "process ids of the PID namespace (each thread holds one)",
    },
];

/// The value of a knob holding one number (its first, for one holding several), read now;
/// `None` when it cannot be read (no `/proc`, another namespace's view) or holds no number.
pub fn read(path: &str) -> Option<u64> {
    read_field(path, 0)
}

/// The `index`th number of a knob holding several ([`SEM`]: 0 `semmsl`, 1 `semmns`,
/// 2 `semopm`, 3 `semmni`).
pub fn read_field(path: &str, index: usize) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .nth(index)?
        .parse()
        .ok()
}

/// A [`LimitExceeded`](crate::ErrorKind::LimitExceeded) error naming `knob` with its value,
/// read now (left out when the file cannot be read or holds no number).
pub fn limit_error(knob: &'static str) -> Error {
    Error::limit(knob, read(knob))
}

/// What a file in `/dev/shm` (a POSIX segment, a named semaphore) that does not fit names: the
/// tmpfs mount's free space, changed with its `size=` option.
pub const SHM_FREE: &str = "free bytes of /dev/shm (its tmpfs size= mount option)";

/// What a file in `/dev/shm` that cannot be made for want of an inode names: the tmpfs
/// mount's free inodes, changed with its `nr_inodes=` option.
pub const SHM_INODES: &str = "free inodes of /dev/shm (its tmpfs nr_inodes= mount option)";

/// The error for making a file in `/dev/shm` (`open`): `ENOSPC` there is the mount out of
/// inodes, a [`LimitExceeded`](crate::ErrorKind::LimitExceeded) naming [`SHM_INODES`] with
/// the inodes free now; `EMFILE` and `ENFILE` name the descriptor limits
/// ([`descriptor_error`](crate::pipe::descriptor_error)); other errnos as they are.
pub fn shm_file_error(e: rustix::io::Errno) -> Error {
    match e {
        rustix::io::Errno::NOSPC => {
            let free = rustix::fs::statvfs("/dev/shm").ok().map(|v| v.f_favail);
            Error::limit(SHM_INODES, free).with_source(e.into())
        }
        e => crate::pipe::descriptor_error(e),
    }
}

/// The error for sizing or reserving a file in `/dev/shm` (`ENOSPC`, `EFBIG`): a
/// [`LimitExceeded`](crate::ErrorKind::LimitExceeded) naming [`SHM_FREE`] with the bytes free
/// now; other errnos as they are.
pub fn shm_space_error(e: rustix::io::Errno) -> Error {
    use rustix::io::Errno;
    match e {
        Errno::NOSPC | Errno::FBIG => {
            let free = rustix::fs::statvfs("/dev/shm")
                .ok()
                .map(|v| v.f_bavail.saturating_mul(v.f_frsize));
            Error::limit(SHM_FREE, free).with_source(e.into())
        }
        e => Error::from(e),
    }
}

/// The most memory mappings a process may have (`mmap` and `shmat` fail with `ENOMEM` past
/// it).
pub const MAX_MAP_COUNT: &str = "/proc/sys/vm/max_map_count";

/// What a mapping too large for the process's address space names: its `RLIMIT_AS`.
pub const RLIMIT_AS: &str = "RLIMIT_AS (ulimit -v: this process's address space, bytes)";

/// The error for a mapping of `len` bytes that failed (`mmap`, `shmat`): for `ENOMEM`, a
/// [`LimitExceeded`](crate::ErrorKind::LimitExceeded) naming what stopped it, looked at now:
/// [`RLIMIT_AS`] when the process's address space would pass it, else [`MAX_MAP_COUNT`] when
/// the process has that many mappings; else `LimitExceeded` saying that memory ran out. Other
/// errnos as they are.
pub fn mapping_error(e: rustix::io::Errno, len: usize) -> Error {
    if e != rustix::io::Errno::NOMEM {
        return Error::from(e);
    }
    mapping_limit(len)
        .unwrap_or_else(|| {
            Error::with_note(
                crate::ErrorKind::LimitExceeded,
                format!(
                    "no memory for a mapping of {len} bytes (neither RLIMIT_AS nor \
                     vm.max_map_count is at its limit: the machine's memory, or \
                     vm.overcommit_memory)"
                ),
            )
        })
        .with_source(e.into())
}

/// The limit a new mapping of `len` bytes would pass now, if one: [`RLIMIT_AS`] when the
/// address space would pass it, [`MAX_MAP_COUNT`] when the process has that many mappings.
/// Reads `/proc` through buffers on the stack: at these limits a heap that must grow may
/// itself need a new mapping.
fn mapping_limit(len: usize) -> Option<Error> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::As).current;
    if let (Some(limit), Some(kib)) = (limit, status_field("VmSize:")) {
        if kib.saturating_mul(1024).saturating_add(len as u64) > limit {
            return Some(Error::limit(RLIMIT_AS, Some(limit)));
        }
    }
    let maps = count_lines("/proc/self/maps");
    if let (Some(max), Some(maps)) = (read(MAX_MAP_COUNT), maps) {
        // A new mapping may also split one in two: within a few of the maximum counts.
        if maps.saturating_add(2) >= max {
            return Some(Error::limit(MAX_MAP_COUNT, Some(max)));
        }
    }
    None
}

/// The number after `name` in `/proc/self/status` (`VmSize:` in KiB), read into a buffer on
/// the stack.
fn status_field(name: &str) -> Option<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open("/proc/self/status").ok()?;
    let mut buf = [0u8; 8192];
    let mut len = 0;
    loop {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
        if len == buf.len() {
            break;
        }
    }
    let text = std::str::from_utf8(&buf[..len]).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// What a file larger than the process may make names: its `RLIMIT_FSIZE`.
pub const RLIMIT_FSIZE: &str =
    "RLIMIT_FSIZE (ulimit -f: the largest file this process may make, bytes)";

/// Checks that this process may size a file (a segment, a memfd) to `size` bytes, before it
/// does: past its `RLIMIT_FSIZE` the kernel answers `ftruncate` and `fallocate` with `SIGXFSZ`,
/// whose default action kills the process, and only then `EFBIG`.
///
/// Errors: [`LimitExceeded`](crate::ErrorKind::LimitExceeded) naming [`RLIMIT_FSIZE`] with
/// its value.
pub fn check_file_size(size: u64) -> crate::Result<()> {
    match rustix::process::getrlimit(rustix::process::Resource::Fsize).current {
        Some(limit) if size > limit => Err(Error::limit(RLIMIT_FSIZE, Some(limit))),
        _ => Ok(()),
    }
}

/// What a process or thread that cannot be made names when nothing narrower is found: the
/// system's limit of threads.
pub const THREADS_MAX: &str = "/proc/sys/kernel/threads-max";

/// What a user out of processes names: its `RLIMIT_NPROC`.
pub const RLIMIT_NPROC: &str =
    "RLIMIT_NPROC (ulimit -u: processes and threads of this user; root is exempt)";

/// The error for a process or thread that could not be made (`fork`, `clone`,
/// `pthread_create`: `EAGAIN`, which is not "try again later" here): a
/// [`LimitExceeded`](crate::ErrorKind::LimitExceeded) naming the limit that is at its end now,
/// looked at in this order: a `pids.max` of this process's cgroup or of one above it (the
/// kernel charges a new task to each up to the root); for a [`Task::Thread`], the room for its
/// stack (`pthread_create` says `EAGAIN` when its `mmap` fails: [`RLIMIT_AS`],
/// [`MAX_MAP_COUNT`]);
/// the PID namespace's pids against [`PID_MAX`]; the system's threads against
/// [`THREADS_MAX`]; this user's threads against [`RLIMIT_NPROC`] (not for root, which it does
/// not bind). When none is at its end now (it may have been at the moment), the error lists
/// them all. Other errnos as they are.
pub fn process_limit_error(e: rustix::io::Errno, task: Task) -> Error {
    if e != rustix::io::Errno::AGAIN {
        return Error::from(e);
    }
    process_limit(task).with_source(e.into())
}

/// What could not be made, for [`process_limit_error`]: a thread needs a stack mapping, which
/// the address-space limits may refuse; a process (`fork`) does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// A thread (`pthread_create`, `std::thread::spawn`).
    Thread,
    /// A process (`fork`, `clone`, `Command::spawn`).
    Process,
}

/// The stack `std` gives a new thread by default: 2 MiB (`fork` needs none, and fails with
/// `ENOMEM`, not `EAGAIN`, for want of memory).
const THREAD_STACK: usize = 2 << 20;

/// The limit [`process_limit_error`] names.
fn process_limit(task: Task) -> Error {
    if let Some((knob, max)) = cgroup_pids_full() {
        return Error::limit(knob, Some(max));
    }
    if let Some(e) = (task == Task::Thread)
        .then(|| mapping_limit(THREAD_STACK))
        .flatten()
    {
        return e;
    }
    if let Some(max) = pids_used_up() {
        return Error::limit(PID_MAX, Some(max));
    }
    // The system's threads (the fourth field of /proc/loadavg, "running/total").
    let threads = std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| {
        let (_, total) = l.split_whitespace().nth(3)?.split_once('/')?;
        total.parse::<u64>().ok()
    });
    if let (Some(threads), Some(max)) = (threads, read(THREADS_MAX)) {
        if threads.saturating_add(1) >= max {
            return limit_error(THREADS_MAX);
        }
    }
    if let Some(n) = rustix::process::getrlimit(rustix::process::Resource::Nproc).current {
        if !rustix::process::geteuid().is_root() && user_threads().is_none_or(|t| t >= n) {
            return Error::limit(RLIMIT_NPROC, Some(n));
        }
    }
    Error::limit(
        "processes or threads: RLIMIT_NPROC (ulimit -u), a cgroup's pids.max, \
         kernel.pid_max or kernel.threads-max (none is at its end now)",
        None,
    )
}

/// The threads of this process's real user, all processes counted (what `RLIMIT_NPROC`
/// limits); `None` when `/proc` cannot be read.
fn user_threads() -> Option<u64> {
    let me = rustix::process::getuid().as_raw().to_string();
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
        };
        if field("Uid:") == Some(me.as_str()) {
            total += field("Threads:").and_then(|t| t.parse().ok()).unwrap_or(1);
        }
    }
    Some(total)
}

/// The most process ids of the PID namespace (each process and each thread holds one; per
/// namespace since Linux 6.14): `fork` and `clone` fail with `EAGAIN` when none is free.
pub const PID_MAX: &str = "/proc/sys/kernel/pid_max";

/// Pids the kernel does not give out again once its allocation wrapped (`RESERVED_PIDS`).
const RESERVED_PIDS: u64 = 300;

/// [`PID_MAX`]'s value when the PID namespace has about no pid left: its tasks (each thread
/// of each process in `/proc`, zombies too) reach it, less the pids kept below
/// [`RESERVED_PIDS`]. Counted only after a spawn failed; `None` when it cannot be read.
fn pids_used_up() -> Option<u64> {
    let max = read(PID_MAX)?;
    let mut tasks = 0u64;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name
            .as_encoded_bytes()
            .first()
            .is_some_and(u8::is_ascii_digit)
        {
            continue;
        }
        tasks += std::fs::read_dir(entry.path().join("task")).map_or(1, |d| d.count() as u64);
    }
    (tasks.saturating_add(RESERVED_PIDS) >= max).then_some(max)
}

/// [`process_limit_error`] for the `io::Error` of `std`'s thread and process spawns; other
/// errors as they are.
pub fn process_limit_error_io(e: std::io::Error, task: Task) -> Error {
    on_errno(e, rustix::io::Errno::AGAIN, |errno| {
        process_limit_error(errno, task)
    })
}

/// [`mapping_error`] for the `io::Error` of a `memmap2` mapping of `len` bytes; other errors as
/// they are.
pub fn mapping_error_io(e: std::io::Error, len: usize) -> Error {
    on_errno(e, rustix::io::Errno::NOMEM, |errno| {
        mapping_error(errno, len)
    })
}

/// `e` as `map` makes it when its errno is `errno` (an `io::Error` from std or `memmap2`), as
/// it is otherwise.
fn on_errno(
    e: std::io::Error,
    errno: rustix::io::Errno,
    map: impl FnOnce(rustix::io::Errno) -> Error,
) -> Error {
    match e.raw_os_error() == Some(errno.raw_os_error()) {
        true => map(errno),
        false => Error::from(e),
    }
}

/// The `pids.max` file of the cgroup (v2, or the v1 `pids` hierarchy) that holds as many
/// tasks as it allows, and its value: this process's cgroup or an ancestor, since the kernel
/// charges a new task to each of them up to the root, and any at its limit refuses it (a
/// container's limit is often set on a parent of the cgroup the process is in).
fn cgroup_pids_full() -> Option<(String, u64)> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let root = if id == "0" && controllers.is_empty() {
            "/sys/fs/cgroup"
        } else if controllers.split(',').any(|c| c == "pids") {
            "/sys/fs/cgroup/pids"
        } else {
            return None;
        };
        // From this process's cgroup up to the root (which has no limit file).
        let mut dir = format!("{root}{}", path.trim_end_matches('/'));
        loop {
            if let Some(full) = pids_full_at(&dir) {
                return Some(full);
            }
            if dir.len() <= root.len() {
                return None;
            }
            dir.truncate(dir.rfind('/')?);
        }
    })
}

/// The `pids.max` file of cgroup directory `dir` and its value, when the cgroup holds that
/// many tasks already (`None` for `max`, or no such files).
fn pids_full_at(dir: &str) -> Option<(String, u64)> {
    let max = format!("{dir}/pids.max");
    let max_value = read(&max)?;
    let current = read(&format!("{dir}/pids.current"))?;
    (current >= max_value).then_some((max, max_value))
}

/// The lines of `path`, read through a buffer on the stack: at the mapping limit, a buffer
/// grown to hold `/proc/self/maps` (megabytes) would itself need a new mapping.
fn count_lines(path: &str) -> Option<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut buf = [0u8; 4096];
    let mut lines = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Some(lines),
            Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// A [`LimitExceeded`](crate::ErrorKind::LimitExceeded) error naming field `index` (counted from
/// 0) of a knob that holds several numbers, such as `SEMMNI`, the fourth of [`SEM`]
/// (`SEMMSL SEMMNS SEMOPM SEMMNI`). The knob is named `"{path} ({name}, field {index+1})"`,
/// with that field's value, read now.
///
/// ```
/// use ipc_core::knob;
///
/// let e = knob::limit_error_field(knob::SEM, 3, "SEMMNI");
/// assert!(e.to_string().starts_with("limit exceeded: /proc/sys/kernel/sem (SEMMNI, field 4)"));
/// ```
pub fn limit_error_field(path: &'static str, index: usize, name: &'static str) -> Error {
    Error::limit(
        format!("{path} ({name}, field {})", index + 1),
        read_field(path, index),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_every_knob_once() {
        let mut seen: Vec<String> = ALL.iter().map(Knob::label).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), ALL.len());
        assert_eq!(ALL[1].sysctl(), "fs.mqueue.queues_max");
        assert_eq!(
            ALL.iter().find(|k| k.path == SEM).unwrap().read(),
            read_field(SEM, 0)
        );
    }

    #[test]
    fn reads_numbers_and_fields() {
        assert!(read(PIPE_MAX_SIZE).is_some());
        assert!(read("/nonexistent/knob").is_none());
        let semmsl = read_field(SEM, 0);
        let semmni = read_field(SEM, 3);
        assert!(semmsl.is_some() && semmni.is_some());
        assert!(read_field(SEM, 4).is_none());
        let e = limit_error(MSGMNI);
        assert_eq!(e.limit_info().unwrap().value, read(MSGMNI));
    }

    #[test]
    fn errors_read_the_knob_they_name() {
        let file = std::env::temp_dir().join(format!("ipctest-knob-{}", std::process::id()));
        std::fs::write(&file, "250\t32000  32\t128\n").unwrap();
        let path: &'static str = Box::leak(file.to_str().unwrap().to_owned().into_boxed_str());
        let fields: Vec<_> = (0..5).map(|i| read_field(path, i)).collect();
        let one = limit_error(path);
        let fourth = limit_error_field(path, 3, "SEMMNI");
        std::fs::remove_file(&file).unwrap();
        assert_eq!(fields, [Some(250), Some(32000), Some(32), Some(128), None]);
        assert_eq!(one.limit_info().unwrap().value, Some(250));
        let l = fourth.limit_info().unwrap();
        assert_eq!(
            (&*l.knob, l.value),
            (&*format!("{path} (SEMMNI, field 4)"), Some(128))
        );
        assert_eq!(read_field("/nonexistent/knob", 0), None);
    }
}

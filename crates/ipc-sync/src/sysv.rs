//! [`SemaphoreSet`]: System V semaphore sets (`semget`, `semop`, `semctl`), whose `SEM_UNDO`
//! lets the kernel undo what a dead process did.

use std::fmt;
use std::sync::Arc;

use ipc_core::sysv::{self, Key, SysvKind};
use ipc_core::{Blocked, Deadline, Error, ErrorKind, Owner, Removable, RemoveGuard, Result, knob};
use rustix::io::Errno;
use rustix::time::Timespec;

use crate::sys;

/// The largest value of a System V semaphore on Linux (`SEMVMX`).
pub const SEMVMX: u16 = 32767;

/// The fields of [`knob::SEM`] (`SEMMSL SEMMNS SEMOPM SEMMNI`), in order.
const SEMMSL: (usize, &str) = (0, "SEMMSL");
const SEMMNS: (usize, &str) = (1, "SEMMNS");
const SEMOPM: (usize, &str) = (2, "SEMOPM");
const SEMMNI: (usize, &str) = (3, "SEMMNI");

/// [`ErrorKind::LimitExceeded`] naming one field of [`knob::SEM`] and its value now.
fn limit_error((field, name): (usize, &'static str)) -> Error {
    knob::limit_error_field(knob::SEM, field, name)
}

/// [`ErrorKind::LimitExceeded`] for [`SEMVMX`], the kernel's fixed ceiling on a value.
fn semvmx_error() -> Error {
    Error::limit("SEMVMX", Some(u64::from(SEMVMX)))
}

/// `ENOMEM` from `semctl(GETALL)` or `semctl(SETALL)` of `n` values: the guarded buffer they
/// go through is a mapping of its own, and one the process has no room for names what stopped
/// it (`RLIMIT_AS`, `vm.max_map_count`, see [`knob::mapping_error`]); otherwise the kernel
/// had no memory for the values.
fn values_nomem(n: usize) -> Error {
    let mapping = knob::mapping_error(Errno::NOMEM, n.saturating_mul(2));
    if mapping.limit_info().is_some() {
        mapping
    } else {
        Error::from(Errno::NOMEM)
    }
}

/// `semget` failed with `ENOSPC`: out of set ids (`SEMMNI`) or of semaphores in the namespace
/// (`SEMMNS`). The sets in `/proc/sysvipc/sem` (this IPC namespace's) tell which.
fn semget_nospc() -> Error {
    let sets = sysv::in_use(SysvKind::SemaphoreSet);
    let semmni = knob::read_field(knob::SEM, SEMMNI.0);
    match (sets, semmni) {
        (Some(n), Some(max)) if n >= max => limit_error(SEMMNI),
        _ => limit_error(SEMMNS),
    }
}

/// How [`SemaphoreSet`]s are opened: how long to wait for a set that is not initialised yet,
/// and whose set is accepted ([`owner`](SetOpenOptions::owner)).
///
/// ```
/// use ipc_sync::{Deadline, Key, Owner, SemaphoreSet, SetOpenOptions};
/// use std::time::Duration;
///
/// let set = SemaphoreSet::create(Key::PRIVATE, &[1])?.remove_on_drop();
/// let again = SetOpenOptions::new()
///     .wait(Deadline::after(Duration::from_millis(100)))
///     .owner(Owner::Me)
///     .open_id(set.id())?;
/// assert_eq!(again.values()?, vec![1]);
/// # Ok::<(), ipc_sync::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SetOpenOptions {
    wait: Deadline,
    owner: Owner,
}

impl Default for SetOpenOptions {
    fn default() -> SetOpenOptions {
        SetOpenOptions::new()
    }
}

impl SetOpenOptions {
    /// No waiting; only sets owned by this process's effective user ([`Owner::Me`]).
    pub fn new() -> SetOpenOptions {
        SetOpenOptions {
            wait: Deadline::Now,
            owner: Owner::Me,
        }
    }

    /// How long [`open`](SetOpenOptions::open) waits for a set that exists but is not
    /// initialised yet (its creator is between `semget` and setting the values). It polls,
    /// every few milliseconds, so that a creator that died there costs an opener no more than
    /// this deadline. [`Deadline::Never`] waits as long as it takes (a dead creator's set
    /// then keeps the opener waiting until someone initialises or removes it).
    pub fn wait(&mut self, deadline: Deadline) -> &mut SetOpenOptions {
        self.wait = deadline;
        self
    }

    /// Whose set to accept: [`Owner::Me`] by default, [`Owner::Uid`] for one other user,
    /// [`Owner::Any`] for anybody (its mode still decides what we may do), checked against
    /// the owner `semctl(IPC_STAT)` reports for the id. Another user's set is refused by
    /// default with [`ErrorKind::PermissionDenied`]: its owner can change its mode or remove it
    /// at will, and anyone can create a set under a key before its rightful user does. The
    /// creator `IPC_STAT` reports is checked too, unless it is root: it keeps the owner's
    /// rights after giving the set away to another uid ([`Owner::check_with_creator`]).
    pub fn owner(&mut self, owner: Owner) -> &mut SetOpenOptions {
        self.owner = owner;
        self
    }

    /// Opens the set with `key` ([`SemaphoreSet::lookup`], then
    /// [`open_id`](SetOpenOptions::open_id)) once it is initialised (see
    /// [`SemaphoreSet::open`]), waiting for that until the [`wait`](SetOpenOptions::wait)
    /// deadline.
    ///
    /// # Errors
    /// As [`SemaphoreSet::open`]; a set still not initialised at the deadline is
    /// [`ErrorKind::WouldBlock`] for [`Deadline::Now`] and [`ErrorKind::TimedOut`] otherwise,
    /// with a message that says how to remove it if its creator died; a set removed while
    /// the opener waits is [`ErrorKind::NotFound`].
    pub fn open(&self, key: Key) -> Result<SemaphoreSet> {
        let id = SemaphoreSet::lookup(key)?;
        let set = self.open_id(id)?;
        let mut pause = std::time::Duration::from_micros(200);
        loop {
            if set.initialised()? {
                tracing::trace!(id, %key, "opened System V semaphore set by key");
                return Ok(set);
            }
            // `None`: no deadline, wait as long as it takes.
            let left = match self.wait {
                Deadline::Never => None,
                d => d.remaining().filter(|d| !d.is_zero()),
            };
            if left.is_none() && self.wait != Deadline::Never {
                let e =
                    self.wait
                        .expired_error(Blocked::Empty)
                        .with_detail(ipc_core::Detail::Note(
                        format!(
                            "created but not initialised: nobody set its values (SETVAL/SETALL) \
                             or operated on it (semop) since semget. If its creator died, \
                             remove it with `ipcrm -s {id}` (or SemaphoreSet::from_id({id}) \
                             and remove) and create it again; if it is yours as it is, use \
                             SemaphoreSet::from_id({id})"
                        )
                        .into(),
                    ));
                let e = e.in_op("open").on(&set);
                tracing::debug!(error = %e, "semaphore set not opened");
                return Err(e);
            }
            std::thread::sleep(left.map_or(pause, |left| pause.min(left)));
            pause = (pause * 2).min(std::time::Duration::from_millis(10));
        }
    }

    /// Uses the set with id `id`, as [`SemaphoreSet::from_id`] does, with this owner policy.
    ///
    /// # Errors
    /// As [`SemaphoreSet::from_id`]; the refusal of another user's set says which
    /// [`Owner`] accepts it.
    pub fn open_id(&self, id: i32) -> Result<SemaphoreSet> {
        let what = || format!("System V semaphore set {id}");
        let ds = sys::sem_stat(id).map_err(|e| {
            let e = Error::from(e).in_op("semctl(IPC_STAT)").on(what());
            tracing::debug!(error = %e, "semaphore set not opened");
            e
        })?;
        self.owner
            .check_with_creator(ds.sem_perm.uid, ds.sem_perm.cuid, what())?;
        let len = u16::try_from(ds.sem_nsems).unwrap_or(u16::MAX);
        tracing::trace!(id, len, "opened System V semaphore set");
        Ok(SemaphoreSet::new(id, len))
    }
}

/// Why `ops` could never proceed, whatever the set's values, or `None` if some values let
/// them: for each semaphore, its operations in their order need a value before the call of
/// at least what the takes need at their deepest, and exactly one value where a wait for zero
/// is among them (the kernel applies them one after another on a running value). If no value
/// from 0 to [`SEMVMX`] fits, the kernel would block on them for ever.
///
/// Runs on every [`SemaphoreSet::op`]: operations already in the order of their semaphores
/// (one operation, say) are read where they are; others are sorted in a copy, on the stack
/// for a few, so that the check allocates nothing then.
fn never_proceeds(ops: &[SemOp]) -> Option<String> {
    if ops.is_sorted_by_key(|o| o.num) {
        return never_proceeds_sorted(ops);
    }
    let mut stack = [SemOp::new(0, 0); STACK_OPS];
    let mut heap = Vec::new();
    let sorted: &mut [SemOp] = if ops.len() <= STACK_OPS {
        stack[..ops.len()].copy_from_slice(ops);
        &mut stack[..ops.len()]
    } else {
        heap.extend_from_slice(ops);
        &mut heap
    };
    // Stable: each semaphore's operations keep their order.
    sorted.sort_by_key(|o| o.num);
    never_proceeds_sorted(sorted)
}

/// [`never_proceeds`] for `ops` in the order of their semaphores (each semaphore's operations
/// in the order of the call).
fn never_proceeds_sorted(ops: &[SemOp]) -> Option<String> {
    for group in ops.chunk_by(|a, b| a.num == b.num) {
        let num = group[0].num;
        // The running change so far, the least value the takes need, and the value a wait for
        // zero needs.
        let (mut sum, mut least, mut exact) = (0i64, 0i64, None::<i64>);
        for o in group {
            if o.delta == 0 {
                if sum > 0 || exact.is_some_and(|e| e != -sum) {
                    return Some(format!(
                        "semaphore {num}: a wait for zero after adding {sum} to it in the same \
                         call can never proceed"
                    ));
                }
                exact = Some(-sum);
            } else {
                sum += i64::from(o.delta);
                least = least.max(-sum);
            }
        }
        if exact.is_some_and(|e| e < least) {
            return Some(format!(
                "semaphore {num}: these operations wait for zero where their takes need a \
                 value of at least {least}: they can never proceed"
            ));
        }
        if least > i64::from(SEMVMX) {
            return Some(format!(
                "semaphore {num}: these operations take {least} at once, more than any value \
                 can hold (SEMVMX is {SEMVMX}): they can never proceed"
            ));
        }
    }
    None
}

/// [`ErrorKind::Disconnected`]: the set is gone (`EIDRM`, or `EINVAL` for an id that no
/// longer exists).
fn removed() -> Error {
    Error::with_note(ErrorKind::Disconnected, "the set was removed")
        .with_source(std::io::Error::from_raw_os_error(libc::EIDRM))
}

/// One operation of a [`SemaphoreSet::op`] call (`struct sembuf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SemOp {
    num: u16,
    delta: i16,
    undo: bool,
}

impl SemOp {
    /// Adds `delta` to semaphore `num`: a positive delta never blocks; a negative one waits
    /// until the value is at least `-delta`; zero waits until the value is zero.
    pub fn new(num: u16, delta: i16) -> SemOp {
        SemOp {
            num,
            delta,
            undo: false,
        }
    }

    /// Sets `SEM_UNDO`: when this process ends, however it ends, the kernel reverts this
    /// operation (it keeps a per-process adjustment for each semaphore). Use it for lock-like
    /// operations; not for a producer's posts, which must outlive the producer.
    #[must_use]
    pub fn undo(mut self) -> SemOp {
        self.undo = true;
        self
    }
}

/// A System V semaphore set: `len()` counting semaphores (0 to [`SEMVMX`]) under one id,
/// operated on atomically, several at a time.
///
/// Its distinguishing feature is `SEM_UNDO` ([`SemOp::undo`], [`acquire`](SemaphoreSet::acquire)
/// and [`release`](SemaphoreSet::release)): the kernel records what each process did and
/// reverts it when the process exits, also when it is `SIGKILL`ed. A semaphore used as a lock
/// is thus released by a holder's death, without anyone's help. (The data it guarded may be
/// half-updated, and nobody is told: when that matters, use a [`Mutex`](crate::Mutex), which
/// reports the death.)
///
/// A set lives in the kernel until removed ([`remove`](SemaphoreSet::remove), or
/// [`remove_on_drop`](SemaphoreSet::remove_on_drop), or `ipcrm -s <id>`), not until its last
/// user is gone. Every operation is a syscall.
///
/// ```
/// use ipc_sync::{Deadline, Key, SemaphoreSet};
///
/// // Semaphore 0: a lock (1 = free); semaphore 1: items ready.
/// let set = SemaphoreSet::create(Key::PRIVATE, &[1, 0])?.remove_on_drop();
/// set.acquire(0, Deadline::Never)?; // undone by the kernel if we die holding it
/// set.release(0)?;
/// assert_eq!(set.values()?, vec![1, 0]);
/// // A child gets `set.id()` and calls SemaphoreSet::from_id(id).
/// # Ok::<(), ipc_sync::Error>(())
/// ```
///
/// # References
/// - [`sysvipc(7)`](https://man7.org/linux/man-pages/man7/sysvipc.7.html)
/// - [`semop(2)`](https://man7.org/linux/man-pages/man2/semop.2.html)
pub struct SemaphoreSet {
    id: i32,
    len: u16,
    /// "System V semaphore set ID", formatted once: errors name the set by taking a reference
    /// count, so the expected ones (would-block, timed out) allocate nothing.
    label: Arc<str>,
    /// Removes the set when this value is dropped, if [`remove_on_drop`] asked for it.
    ///
    /// [`remove_on_drop`]: SemaphoreSet::remove_on_drop
    remove: Option<RemoveGuard>,
}

/// The most operations one [`SemaphoreSet::op`] call builds on the stack (more go to the
/// heap).
const STACK_OPS: usize = 8;

impl SemaphoreSet {
    fn new(id: i32, len: u16) -> SemaphoreSet {
        SemaphoreSet {
            id,
            len,
            label: Arc::from(format!("System V semaphore set {id}")),
            remove: None,
        }
    }

    /// Creates a set with one semaphore per entry of `values`, set to those values, failing if
    /// `key` exists (`semget` with `IPC_CREAT | IPC_EXCL`, mode `0o600`; `semctl(SETALL)`).
    ///
    /// The set is initialised before this returns, and marked so (a first `semop`, which sets
    /// `sem_otime`), so that [`open`](SemaphoreSet::open) in another process can tell a set
    /// still being initialised from a ready one.
    ///
    /// # Errors
    /// - [`ErrorKind::AlreadyExists`]: `key` is taken.
    /// - [`ErrorKind::InvalidInput`]: `values` is empty.
    /// - [`ErrorKind::LimitExceeded`]: a value is above [`SEMVMX`], or more semaphores than
    ///   `SEMMSL` (per set), `SEMMNS` (system) or sets than `SEMMNI` (`/proc/sys/kernel/sem`).
    ///
    /// # References
    /// - [`semget(2)`](https://man7.org/linux/man-pages/man2/semget.2.html)
    /// - [`semctl(2)`](https://man7.org/linux/man-pages/man2/semctl.2.html)
    #[doc(alias = "semget")]
    pub fn create(key: Key, values: &[u16]) -> Result<SemaphoreSet> {
        SemaphoreSet::create_with_mode(key, values, 0o600)
    }

    /// [`create`](SemaphoreSet::create) with permission bits `mode` (exact: System V modes
    /// know no umask).
    ///
    /// # Errors
    /// As [`create`](SemaphoreSet::create), and [`ErrorKind::InvalidInput`] for bits beyond
    /// `0o777` (set-user-ID, set-group-ID, sticky), before any syscall.
    pub fn create_with_mode(key: Key, values: &[u16], mode: u16) -> Result<SemaphoreSet> {
        let fail = |e: Error| {
            let e = e
                .in_op("semget")
                .on(format_args!("System V semaphore set with key {key}"));
            tracing::debug!(error = %e, "semaphore set not created");
            e
        };
        if values.is_empty() {
            return Err(fail(Error::with_note(
                ErrorKind::InvalidInput,
                "a semaphore set has at least one semaphore",
            )));
        }
        if values.iter().any(|&v| v > SEMVMX) {
            return Err(fail(semvmx_error()));
        }
        if mode & !0o777 != 0 {
            return Err(fail(Error::with_note(
                ErrorKind::InvalidInput,
                format!("mode {mode:#o} has bits beyond 0o777 (permission bits only)"),
            )));
        }
        let len = u16::try_from(values.len()).map_err(|_| fail(limit_error(SEMMSL)))?;
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | libc::c_int::from(mode);
        let id = sys::semget(key.as_raw(), libc::c_int::from(len), flags).map_err(|e| {
            fail(match e {
                Errno::INVAL => limit_error(SEMMSL),
                Errno::NOSPC => semget_nospc(),
                e => Error::from(e),
            })
        })?;
        // Until initialised: a failure below removes it.
        let set = SemaphoreSet::new(id, len).remove_on_drop();
        sys::sem_setall(id, values).map_err(|e| {
            let e = match e {
                Errno::NOMEM => values_nomem(values.len()),
                e => Error::from(e),
            };
            e.in_op("semctl(SETALL)").on(&set)
        })?;
        // A first operation sets sem_otime, which `open` takes as "initialised".
        let (a, b) = if values[0] < SEMVMX { (1, -1) } else { (-1, 1) };
        set.op(&[SemOp::new(0, a), SemOp::new(0, b)], Deadline::Now)?;
        tracing::trace!(id, %key, len, "created System V semaphore set");
        Ok(set.keep())
    }

    /// Opens the existing set with `key`, if it is initialised and this process's user owns
    /// it; does not wait. [`SetOpenOptions`] waits and opens another user's set.
    ///
    /// A set counts as initialised once its values were set (`semctl(SETVAL)` of every
    /// semaphore, or `SETALL`, as [`create`](SemaphoreSet::create) and other programs such as
    /// Python's `sysv_ipc` do) or once any process operated on it (`semop`). A set that
    /// `semget` created but nobody initialised yet is not opened: its values would be
    /// meaningless zeros.
    ///
    /// # Errors
    /// - [`ErrorKind::NotFound`]: no set has this key ([`Key::PRIVATE`] never does).
    /// - [`ErrorKind::WouldBlock`]: the set exists but is not initialised yet; the message says
    ///   what to do if its creator died.
    /// - [`ErrorKind::PermissionDenied`]: another user owns it, or its mode refuses us.
    ///
    /// # References
    /// - [`semget(2)`](https://man7.org/linux/man-pages/man2/semget.2.html)
    #[doc(alias = "semget")]
    pub fn open(key: Key) -> Result<SemaphoreSet> {
        SetOpenOptions::new().open(key)
    }

    /// The id of the set with `key` (`semget(key, 0, 0)`, through
    /// [`ipc_core::sysv::lookup`]), with no other check: a peer that knows only the key finds
    /// the id to use with [`from_id`](SemaphoreSet::from_id).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if no set has this key ([`Key::PRIVATE`] never does);
    /// [`ErrorKind::PermissionDenied`] if its mode refuses us any access.
    ///
    /// # References
    /// - [`semget(2)`](https://man7.org/linux/man-pages/man2/semget.2.html)
    #[doc(alias = "semget")]
    pub fn lookup(key: Key) -> Result<i32> {
        sysv::lookup(SysvKind::SemaphoreSet, key)
    }

    /// Uses the set with id `id` (from [`id`](SemaphoreSet::id) in another process, or from
    /// [`lookup`](SemaphoreSet::lookup)), after checking with `semctl(IPC_STAT)` that it
    /// exists and that this process's user owns it. Whether it is initialised is not checked:
    /// whoever passes an id vouches for the set.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if there is no such set (`EINVAL`);
    /// [`ErrorKind::PermissionDenied`] for another user's set
    /// ([`SetOpenOptions::owner`] opens it) or a mode that refuses us.
    pub fn from_id(id: i32) -> Result<SemaphoreSet> {
        SetOpenOptions::new().open_id(id)
    }

    /// Makes this value the owner of the set: dropping it (also during a panic) removes the
    /// set (`IPC_RMID`) with an [`ipc_core::RemoveGuard`], quietly if it is gone already.
    /// The same builder as `NamedSemaphore::remove_on_drop` and ipc-shm's
    /// `Segment::remove_on_drop`; for an id with no value of its own, use a
    /// [`RemoveGuard`] with [`Removable::Sysv`] directly.
    #[must_use]
    pub fn remove_on_drop(mut self) -> SemaphoreSet {
        self.remove = Some(RemoveGuard::new(Removable::Sysv(
            SysvKind::SemaphoreSet,
            self.id,
        )));
        self
    }

    /// Undoes [`remove_on_drop`](SemaphoreSet::remove_on_drop): the set stays when this value
    /// is dropped.
    fn keep(mut self) -> SemaphoreSet {
        if let Some(guard) = self.remove.take() {
            guard.disarm();
        }
        self
    }

    /// Whether the set's values were set: a `semop` happened (`sem_otime` is not 0), or every
    /// semaphore was set by `SETVAL`/`SETALL` (its `sempid` is not 0 any more).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if the set was removed (the key names no set any more).
    fn initialised(&self) -> Result<bool> {
        let fail = |e: Errno, op: &'static str| {
            match e {
                Errno::IDRM | Errno::INVAL => Error::with_note(
                    ErrorKind::NotFound,
                    "the set was removed before it was initialised",
                ),
                e => Error::from(e),
            }
            .in_op(op)
            .on_shared(&self.label)
        };
        let ds = sys::sem_stat(self.id).map_err(|e| fail(e, "semctl(IPC_STAT)"))?;
        if ds.sem_otime != 0 {
            return Ok(true);
        }
        for num in 0..self.len {
            let pid =
                sys::sem_get(self.id, num, libc::GETPID).map_err(|e| fail(e, "semctl(GETPID)"))?;
            if pid == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The set's id, valid in every process of the IPC namespace.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The number of semaphores in the set.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the set has no semaphores (never: the kernel refuses empty sets).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Performs `ops` atomically: all of them or, while any would block, none
    /// (`semtimedop`; `IPC_NOWAIT` for [`Deadline::Now`]). Interrupted waits resume with the
    /// time that is left.
    ///
    /// Blocks on: another process changing the values so that every operation can proceed.
    ///
    /// # Errors
    /// - [`ErrorKind::WouldBlock`] for [`Deadline::Now`], [`ErrorKind::TimedOut`] otherwise:
    ///   the operations could not proceed in time; nothing was done.
    /// - [`ErrorKind::Disconnected`]: the set was removed (`EIDRM`, or `EINVAL` for an id that
    ///   no longer exists).
    /// - [`ErrorKind::InvalidInput`]: `ops` is empty or names a semaphore beyond the set; or
    ///   no value of some semaphore could ever let its operations proceed (they take more
    ///   than [`SEMVMX`] in all, or wait for zero after adding to it in the same call), so
    ///   that the kernel would wait for ever: refused at once, whatever the deadline.
    /// - [`ErrorKind::LimitExceeded`]: a value would exceed [`SEMVMX`]; this process's
    ///   `SEM_UNDO` adjustment of a semaphore would leave -32768..=32767 (`SEMAEM`: undo
    ///   operations that give back more than they took); more operations than `SEMOPM`; or
    ///   no memory for the undo records.
    ///
    /// # References
    /// - [`semop(2)`](https://man7.org/linux/man-pages/man2/semop.2.html)
    #[doc(alias = "semop")]
    #[doc(alias = "semtimedop")]
    pub fn op(&self, ops: &[SemOp], deadline: Deadline) -> Result<()> {
        let fail = |e: Error| {
            let e = e.in_op("semop").on_shared(&self.label);
            if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                tracing::debug!(error = %e, "semop failed");
            }
            e
        };
        if ops.is_empty() {
            return Err(fail(Error::with_note(
                ErrorKind::InvalidInput,
                "no operations",
            )));
        }
        if let Some(op) = ops.iter().find(|o| o.num >= self.len) {
            return Err(fail(Error::with_note(
                ErrorKind::InvalidInput,
                format!("semaphore {} of a set of {}", op.num, self.len),
            )));
        }
        if let Some(why) = never_proceeds(ops) {
            return Err(fail(Error::with_note(ErrorKind::InvalidInput, why)));
        }
        let nowait = if deadline == Deadline::Now {
            libc::IPC_NOWAIT
        } else {
            0
        };
        let sembuf = |o: &SemOp| libc::sembuf {
            sem_num: o.num,
            sem_op: o.delta,
            sem_flg: (nowait | if o.undo { libc::SEM_UNDO } else { 0 }) as libc::c_short,
        };
        // A few operations (the usual case) are built on the stack: a try that would block
        // allocates nothing.
        let mut stack = [sembuf(&ops[0]); STACK_OPS];
        let mut heap = Vec::new();
        let bufs: &mut [libc::sembuf] = if ops.len() <= STACK_OPS {
            for (b, o) in stack.iter_mut().zip(ops) {
                *b = sembuf(o);
            }
            &mut stack[..ops.len()]
        } else {
            heap.extend(ops.iter().map(sembuf));
            &mut heap
        };
        loop {
            let timeout = match deadline {
                Deadline::At(_) => deadline.timespec(),
                _ => None,
            };
            let timeout: Option<Timespec> = timeout;
            match sys::sem_op(self.id, bufs, timeout.as_ref()) {
                Ok(()) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => {
                    return Err(fail(deadline.expired_error(Blocked::Empty)));
                }
                Err(Errno::IDRM) | Err(Errno::INVAL) => return Err(fail(removed())),
                Err(Errno::RANGE) => return Err(fail(self.range_error(ops))),
                Err(Errno::TOOBIG) => {
                    return Err(fail(limit_error(SEMOPM)));
                }
                Err(Errno::FBIG) => {
                    return Err(fail(Error::with_note(
                        ErrorKind::InvalidInput,
                        "semaphore number beyond the set",
                    )));
                }
                Err(Errno::NOSPC) => {
                    return Err(fail(Error::with_note(
                        ErrorKind::LimitExceeded,
                        "no memory for the SEM_UNDO records",
                    )));
                }
                Err(e) => return Err(fail(Error::from(e))),
            }
        }
    }

    /// What `ERANGE` from `semop` means for `ops`: a value would exceed [`SEMVMX`], or, with
    /// `SEM_UNDO`, this process's undo adjustment of a semaphore would leave
    /// -32768..=32767 (`SEMAEM`). The values are read again to tell which (a peer may change
    /// them meanwhile: this only chooses the message).
    fn range_error(&self, ops: &[SemOp]) -> Error {
        let over_semvmx = |num: u16| {
            let added: i64 = ops
                .iter()
                .filter(|o| o.num == num && o.delta > 0)
                .map(|o| i64::from(o.delta))
                .sum();
            self.value(num)
                .map_or(true, |v| i64::from(v) + added > i64::from(SEMVMX))
        };
        let undo = ops.iter().find(|o| o.undo && o.delta != 0);
        match undo {
            Some(o) if !ops.iter().any(|o| o.delta > 0 && over_semvmx(o.num)) => Error::limit(
                format!(
                    "SEMAEM (this process's SEM_UNDO adjustment of semaphore {} must stay \
                     within -SEMAEM-1..=SEMAEM: give back with undo only what was taken with \
                     undo)",
                    o.num
                ),
                Some(32767),
            ),
            _ => semvmx_error(),
        }
    }

    /// Takes one unit of semaphore `num` with `SEM_UNDO`, waiting until `deadline`: a lock
    /// that the kernel releases if this process dies holding it.
    ///
    /// # Errors
    /// As [`op`](SemaphoreSet::op).
    pub fn acquire(&self, num: u16, deadline: Deadline) -> Result<()> {
        self.op(&[SemOp::new(num, -1).undo()], deadline)
    }

    /// Gives back one unit of semaphore `num` with `SEM_UNDO` (cancelling the undo record of
    /// an [`acquire`](SemaphoreSet::acquire)). Never blocks.
    ///
    /// # Errors
    /// As [`op`](SemaphoreSet::op).
    pub fn release(&self, num: u16) -> Result<()> {
        self.op(&[SemOp::new(num, 1).undo()], Deadline::Now)
    }

    /// The value of semaphore `num` (`semctl(GETVAL)`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `num` is beyond the set (before any syscall);
    /// [`ErrorKind::Disconnected`] if the set was removed.
    ///
    /// # References
    /// - [`semctl(2)`](https://man7.org/linux/man-pages/man2/semctl.2.html)
    #[doc(alias = "semctl")]
    pub fn value(&self, num: u16) -> Result<u16> {
        const OP: &str = "semctl(GETVAL)";
        self.check_num(num, OP)?;
        let v = sys::sem_get(self.id, num, libc::GETVAL).map_err(|e| self.semctl_error(e, OP))?;
        Ok(u16::try_from(v).unwrap_or(u16::MAX))
    }

    /// [`ErrorKind::InvalidInput`] naming `num` if it is beyond the set, before any syscall.
    fn check_num(&self, num: u16, op: &'static str) -> Result<()> {
        if num < self.len {
            return Ok(());
        }
        Err(Error::with_note(
            ErrorKind::InvalidInput,
            format!("semaphore {num} of a set of {}", self.len),
        )
        .in_op(op)
        .on_shared(&self.label))
    }

    /// The error of a `semctl` on this set: [`ErrorKind::Disconnected`] if it was removed (the
    /// number was checked before, so `EINVAL` means the id names no set), as for
    /// [`op`](SemaphoreSet::op).
    fn semctl_error(&self, e: Errno, op: &'static str) -> Error {
        let e = match e {
            Errno::IDRM | Errno::INVAL => removed(),
            e => Error::from(e),
        }
        .in_op(op)
        .on_shared(&self.label);
        tracing::debug!(error = %e, "semctl failed");
        e
    }

    /// The values of all semaphores (`semctl(IPC_STAT)`, then `semctl(GETALL)`).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`]: the set was removed; or its id now names another set of
    /// another size (a set id is a plain number: once this set is removed, the kernel may give
    /// it to a new set, which another process can make happen). The other set's values are
    /// refused, and never copied past the buffer sized for this set's.
    pub fn values(&self) -> Result<Vec<u16>> {
        const OP: &str = "semctl(GETALL)";
        let reused = |now: String| {
            let e = Error::with_note(
                ErrorKind::Disconnected,
                format!(
                    "the set was removed: its id now names another set, of {now} semaphores \
                     (this one has {})",
                    self.len
                ),
            )
            .in_op(OP)
            .on_shared(&self.label);
            tracing::debug!(error = %e, "semaphore values not read");
            e
        };
        let ds = sys::sem_stat(self.id).map_err(|e| self.semctl_error(e, OP))?;
        if ds.sem_nsems != libc::c_ulong::from(self.len) {
            return Err(reused(ds.sem_nsems.to_string()));
        }
        // The id may change hands between the two calls: a larger set makes GETALL fault at
        // the end of our buffer (EFAULT), a smaller one is seen by the next call.
        sys::sem_getall(self.id, self.len()).map_err(|e| match e {
            Errno::FAULT => reused("more".to_owned()),
            Errno::NOMEM => values_nomem(self.len()).in_op(OP).on_shared(&self.label),
            e => self.semctl_error(e, OP),
        })
    }

    /// Sets semaphore `num` to `value` (`semctl(SETVAL)`), clearing every process's undo
    /// record for it.
    ///
    /// # Errors
    /// [`ErrorKind::LimitExceeded`] if `value` is above [`SEMVMX`];
    /// [`ErrorKind::InvalidInput`] if `num` is beyond the set (both before any syscall);
    /// [`ErrorKind::Disconnected`] if the set was removed.
    pub fn set_value(&self, num: u16, value: u16) -> Result<()> {
        if value > SEMVMX {
            return Err(semvmx_error()
                .in_op("semctl(SETVAL)")
                .on_shared(&self.label));
        }
        self.check_num(num, "semctl(SETVAL)")?;
        sys::sem_setval(self.id, num, value).map_err(|e| self.semctl_error(e, "semctl(SETVAL)"))
    }

    /// How many processes wait for semaphore `num` to increase (`semctl(GETNCNT)`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `num` is beyond the set (before any syscall);
    /// [`ErrorKind::Disconnected`] if the set was removed.
    pub fn waiting(&self, num: u16) -> Result<u32> {
        const OP: &str = "semctl(GETNCNT)";
        self.check_num(num, OP)?;
        let n = sys::sem_get(self.id, num, libc::GETNCNT).map_err(|e| self.semctl_error(e, OP))?;
        Ok(u32::try_from(n).unwrap_or(0))
    }

    /// Removes the set now (`semctl(IPC_RMID)`); processes blocked on it wake with
    /// [`ErrorKind::Disconnected`].
    ///
    /// # Errors
    /// [`ErrorKind::PermissionDenied`] if we neither own nor created it.
    #[doc(alias = "IPC_RMID")]
    pub fn remove(self) -> Result<()> {
        let this = self.keep();
        Removable::Sysv(SysvKind::SemaphoreSet, this.id).remove()
    }
}

impl fmt::Display for SemaphoreSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "System V semaphore set {}", self.id)
    }
}

impl fmt::Debug for SemaphoreSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreSet")
            .field("id", &self.id)
            .field("len", &self.len)
            .field("remove_on_drop", &self.remove.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Just;
    use std::time::Duration;

    #[test]
    #[cfg_attr(miri, ignore = "System V IPC is not supported by Miri")]
    fn values_ops_and_removal() {
        let set = SemaphoreSet::create(Key::PRIVATE, &[2, 0, 5])
            .unwrap()
            .remove_on_drop();
        assert_eq!(set.len(), 3);
        assert_eq!(set.values().unwrap(), vec![2, 0, 5]);
        // Atomic: take from 0 and 2 at once.
        set.op(&[SemOp::new(0, -1), SemOp::new(2, -5)], Deadline::Now)
            .unwrap();
        assert_eq!(set.values().unwrap(), vec![1, 0, 0]);
        // All or nothing: semaphore 1 is empty, so 0 is not taken either.
        let e = set
            .op(&[SemOp::new(0, -1), SemOp::new(1, -1)], Deadline::Now)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        assert_eq!(set.value(0).unwrap(), 1);
        let e = set
            .op(
                &[SemOp::new(1, -1)],
                Deadline::after(Duration::from_millis(5)),
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert_eq!(
            set.op(&[SemOp::new(3, 1)], Deadline::Now)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        set.set_value(1, SEMVMX).unwrap();
        let e = set.op(&[SemOp::new(1, 1)], Deadline::Now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LimitExceeded);
        assert!(e.to_string().contains("SEMVMX is 32767"), "{e}");
        let id = set.id();
        let again = SemaphoreSet::from_id(id).unwrap();
        again.remove().unwrap();
        assert_eq!(
            SemaphoreSet::from_id(id).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        drop(set); // already gone: dropping the guard is harmless
    }

    /// What `values` and `create` meet if the id changes hands between their `IPC_STAT` and
    /// the copy: a set larger than the buffer. The kernel's copy stops at the guard page.
    #[test]
    #[cfg_attr(miri, ignore = "System V IPC is not supported by Miri")]
    fn getall_and_setall_of_a_larger_set_fault_instead_of_overrunning() {
        let set = SemaphoreSet::create(Key::PRIVATE, &[5; 3000])
            .unwrap()
            .remove_on_drop();
        for n in [1, 2047, 2048] {
            assert_eq!(sys::sem_getall(set.id(), n), Err(Errno::FAULT), "{n}");
            assert_eq!(
                sys::sem_setall(set.id(), &vec![1; n]),
                Err(Errno::FAULT),
                "{n}"
            );
        }
        assert_eq!(
            set.values().unwrap(),
            vec![5; 3000],
            "SETALL failed as a whole"
        );
        assert_eq!(sys::sem_getall(set.id(), 3000).unwrap(), vec![5; 3000]);
    }

    #[test]
    #[cfg_attr(miri, ignore = "System V IPC is not supported by Miri")]
    fn keys_find_sets_and_collide_exclusively() {
        let dir = std::env::temp_dir();
        let file = dir.join(format!("ipctest-sysv-key-{}", std::process::id()));
        std::fs::write(&file, b"").unwrap();
        let key = Key::from_path(&file, b'S');
        std::fs::remove_file(&file).unwrap();
        let key = key.unwrap();
        let set = match SemaphoreSet::create(key, &[3]) {
            Ok(s) => s.remove_on_drop(),
            // Another set happens to own this ftok key: nothing to test with it.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return,
            Err(e) => panic!("{e}"),
        };
        let other = SemaphoreSet::open(key).unwrap();
        assert_eq!(other.id(), set.id());
        assert_eq!(other.value(0).unwrap(), 3);
        assert_eq!(
            SemaphoreSet::create(key, &[1]).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            SemaphoreSet::create(Key::PRIVATE, &[]).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            SemaphoreSet::create(Key::PRIVATE, &[SEMVMX + 1])
                .unwrap_err()
                .kind(),
            ErrorKind::LimitExceeded
        );
    }

    /// Whether some value of each semaphore lets `ops` proceed, applied one after another as
    /// the kernel does (the oracle for [`never_proceeds`]): the least value that can work is
    /// 0 or what a take or a wait for zero needs at some point, so only those are tried.
    fn some_value_proceeds(ops: &[SemOp]) -> bool {
        let nums: std::collections::BTreeSet<u16> = ops.iter().map(|o| o.num).collect();
        nums.into_iter().all(|num| {
            let mine: Vec<i64> = ops
                .iter()
                .filter(|o| o.num == num)
                .map(|o| i64::from(o.delta))
                .collect();
            let prefixes = mine.iter().scan(0, |sum, d| {
                *sum += d;
                Some(-(*sum - d))
            });
            let candidates =
                std::iter::once(0)
                    .chain(prefixes)
                    .chain(mine.iter().scan(0, |sum, d| {
                        *sum += d;
                        Some(-*sum)
                    }));
            candidates
                .filter(|v| (0..=i64::from(SEMVMX)).contains(v))
                .any(|v| {
                    let mut value = v;
                    mine.iter().all(|&d| {
                        let ok = if d == 0 { value == 0 } else { value + d >= 0 };
                        value += d;
                        ok
                    })
                })
        })
    }

    proptest::proptest! {
        /// The check agrees with the oracle, for operations in any order, already sorted by
        /// semaphore (read in place) or not (sorted in a copy, on the stack or the heap).
        #[test]
        #[cfg_attr(miri, ignore = "proptest is too slow under Miri")]
        fn never_proceeds_matches_trying_every_useful_value(
            ops in proptest::collection::vec(
                (
                    0u16..3,
                    proptest::prop_oneof![
                        Just(0i16),
                        -3i16..=3,
                        Just(i16::MIN),
                        Just(i16::MAX),
                        -20000i16..=-10000,
                    ],
                ),
                1..12,
            ),
            sort in proptest::bool::ANY,
        ) {
            let mut ops: Vec<SemOp> = ops.into_iter().map(|(n, d)| SemOp::new(n, d)).collect();
            if sort {
                ops.sort_by_key(|o| o.num);
            }
            let why = never_proceeds(&ops);
            proptest::prop_assert_eq!(why.is_none(), some_value_proceeds(&ops), "{:?}: {:?}", ops, why);
        }
    }
}

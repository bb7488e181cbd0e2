//! Who is on the other end: publishing this process in its endpoint's [`Side`], and checking
//! the peer's with a pidfd, which PID reuse cannot fool (the peer's start time, published beside
//! its pid, is compared after the pidfd is opened). Also the CPU facts adaptive waiting uses.
//!
//! A pid means nothing across PID namespaces (two containers sharing `/dev/shm`), so each end
//! also holds a presence mark on its block ([`ipc_core::process::Presence`], a lock the kernel
//! drops when the process dies) and publishes its PID namespace beside its owner word: a peer
//! in another namespace is checked by its mark, not its pid. A pid check that finds no such
//! process while the namespace is not yet known asks the mark too.

use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use ipc_core::process::{Hold, Presence};
use ipc_core::{Error, ErrorKind, Result};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, pidfd_open};

use crate::ring::{STATE_ATTACHED, STATE_ATTACHING, STATE_CLOSED, STATE_FREE, Side};
use crate::segment::Segment;

/// Bits of the owner word (see [`Side::owner`]): the state, the pid, the start time.
const STATE_BITS: u32 = 2;
const PID_BITS: u32 = 22;
const START_BITS: u32 = 64 - STATE_BITS - PID_BITS;
/// Linux pids stay below `PID_MAX_LIMIT` (2^22), so one fits in [`PID_BITS`].
const PID_MASK: u64 = (1 << PID_BITS) - 1;
/// 40 bits of clock ticks: at 100 per second, more than 300 years of uptime.
const START_MASK: u64 = (1 << START_BITS) - 1;

/// A process as published in a [`Side`]'s owner word: pid and start time (low 40 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) pid: u32,
    pub(crate) start_time: u64,
}

/// The owner word for `state` held by `id`.
pub(crate) fn pack(state: u32, id: Identity) -> u64 {
    u64::from(state & 3)
        | (u64::from(id.pid) & PID_MASK) << STATE_BITS
        | (id.start_time & START_MASK) << (STATE_BITS + PID_BITS)
}

/// The state in an owner word.
pub(crate) fn state_of(word: u64) -> u32 {
    (word & 3) as u32
}

/// The process an owner word names.
pub(crate) fn identity_of(word: u64) -> Identity {
    Identity {
        pid: ((word >> STATE_BITS) & PID_MASK) as u32,
        start_time: word >> (STATE_BITS + PID_BITS),
    }
}

/// The PID namespace `side`'s holder published (0: none, or not yet). Two processes of two
/// namespaces can publish one owner word (pid 1 of each, started in one clock tick): a
/// verdict or a watch kept for one word holds for that word and this namespace only.
pub(crate) fn published_ns(side: &Side) -> u64 {
    side.pidns.load(Ordering::Acquire)
}

/// The part of an owner word that names the process (its identity without the state).
pub(crate) fn key_of(word: u64) -> u64 {
    word >> STATE_BITS
}

/// The start time of `pid` (field 22 of `/proc/PID/stat`, clock ticks after boot), low 40 bits,
/// counted from the host's boot: `/proc` counts from the boot clock of the reader's time
/// namespace, which may be set ahead ([`boot_offset_ticks`], subtracted), so that a process
/// in such a namespace and one outside, sharing a PID namespace, agree on each other's start.
/// `Err` with the errno of a read (see [`ipc_core::process::read_stat`]), `Ok(None)` for a
/// line that does not parse.
fn start_time_of(pid: impl std::fmt::Display) -> std::result::Result<Option<u64>, Errno> {
    let Some(stat) = ipc_core::process::read_stat(pid)? else {
        return Ok(None);
    };
    let host = stat
        .start_ticks
        .saturating_add_signed(-boot_offset_ticks()?);
    Ok(Some(host & START_MASK))
}

/// The boot clock offset of this process's time namespace, in the clock ticks of
/// `/proc/PID/stat` (`/proc/self/timens_offsets`, line `boottime`; 0 where there is no such
/// file). `Err` only for a file that could not be read for want of a descriptor.
///
/// The kernel adds the offset before it rounds to ticks: an offset that is not a whole
/// number of ticks (tools set whole seconds) may leave the two counts one tick apart, and
/// the peer then taken for dead; such a process is best given a PID namespace of its own
/// too, where its presence mark decides.
///
/// # References
/// - [`time_namespaces(7)`](https://man7.org/linux/man-pages/man7/time_namespaces.7.html)
fn boot_offset_ticks() -> std::result::Result<i64, Errno> {
    let text = match std::fs::read_to_string("/proc/self/timens_offsets") {
        Ok(text) => text,
        Err(e) => {
            return match Errno::from_io_error(&e) {
                Some(e @ (Errno::MFILE | Errno::NFILE)) => Err(e),
                // No time namespaces in this kernel (or no `/proc`: the stat read says so).
                _ => Ok(0),
            };
        }
    };
    let Some(line) = text.lines().find(|l| l.starts_with("boottime")) else {
        return Ok(0);
    };
    let mut fields = line.split_whitespace().skip(1).map(|f| f.parse::<i64>());
    let (Some(Ok(secs)), Some(Ok(nanos))) = (fields.next(), fields.next()) else {
        return Ok(0);
    };
    let hz = i64::try_from(rustix::param::clock_ticks_per_second()).unwrap_or(100);
    Ok(secs
        .saturating_mul(hz)
        .saturating_add(nanos.saturating_mul(hz) / 1_000_000_000))
}

/// This process's identity (cached; recomputed in a child after `fork`, whose pid or PID
/// namespace differs: a child forked into a new namespace may have its parent's pid, 1).
///
/// Errors: [`ErrorKind::LimitExceeded`] naming `RLIMIT_NOFILE` (or `fs.file-max`) when no
/// descriptor is free to read `/proc/self/stat` with. Nothing is cached then: an identity
/// with a wrong start time, published in an owner word, would make every peer take this
/// live process for a dead one. Without `/proc` at all the start time is 0 (a peer cannot
/// check liveness there either, and says so).
pub(crate) fn me() -> Result<Identity> {
    static CACHE: Mutex<Option<(Identity, u64)>> = Mutex::new(None);
    let pid = std::process::id();
    let ns = my_pidns();
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    match *cache {
        Some((id, of)) if id.pid == pid && of == ns => Ok(id),
        _ => {
            let op = "read /proc/self/stat (this process's start time)";
            let start_time = match start_time_of("self") {
                Ok(Some(t)) => t,
                // No /proc: no peer can check liveness either, and says so.
                Err(Errno::NOENT) => 0,
                Err(e) => return Err(ipc_core::pipe::descriptor_error(e).in_op(op)),
                Ok(None) => {
                    return Err(Error::corrupted("/proc/self/stat does not parse").in_op(op));
                }
            };
            let id = Identity { pid, start_time };
            *cache = Some((id, ns));
            Ok(id)
        }
    }
}

/// This process's PID namespace ([`ipc_core::process::pid_namespace`], one `stat`). Read
/// each time (at each claim and each new owner a watch follows), not kept: a child forked
/// after `unshare(CLONE_NEWPID)` runs in another namespace than the parent that read it.
pub(crate) fn my_pidns() -> u64 {
    ipc_core::process::pid_namespace()
}

/// Where `side` is in `seg` (its byte offset: the place of its presence mark), if it is there.
fn place(seg: &Segment, side: &Side) -> Option<u64> {
    let at = (side as *const Side as usize).checked_sub(seg.as_ptr() as usize)?;
    (at < seg.len()).then_some(at as u64)
}

/// This process's presence mark on `side` in `seg` ([`Presence`]), taken before it claims
/// the place and held until after it gives the place up (dropped after the owner word's last
/// store). `None` for a segment with no file (System V) or where no mark can be made: then
/// this end publishes no namespace, and peers check it by pid alone.
///
/// Errors: the descriptor limit, for the segment's first mark ([`Segment::marks`]).
fn mark(seg: &Segment, side: &Side) -> Result<Option<Presence>> {
    match (seg.marks()?, place(seg, side)) {
        (Some(marks), Some(at)) => Ok(marks.mark(at)),
        _ => Ok(None),
    }
}

/// Whether some process holds the presence mark of `side` in `seg`; `None` when that cannot
/// be asked (no file behind the segment, a probe that failed).
fn marked((seg, side): At<'_>) -> Option<bool> {
    let at = place(seg, side)?;
    match ipc_core::process::presence_held(seg.fd()?, at) {
        Ok(held) => Some(held),
        Err(e) => {
            tracing::debug!(error = %e, "cannot probe a presence mark");
            None
        }
    }
}

/// The CPU this thread may only run on, or `u32::MAX` if its affinity allows several.
pub(crate) fn single_cpu() -> u32 {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) if set.count() == 1 => (0..rustix::thread::CpuSet::MAX_CPU)
            .find(|&c| set.is_set(c))
            .map_or(u32::MAX, |c| c as u32),
        _ => u32::MAX,
    }
}

/// Whether `side`'s process is pinned to `my_cpu`, the CPU this thread is pinned to
/// ([`single_cpu`] at open; `u32::MAX`, not pinned, is never shared). A hint written by the
/// peer: a wrong value only makes a waiter spin or not.
pub(crate) fn on_cpu(my_cpu: u32, side: &Side) -> bool {
    my_cpu != u32::MAX && side.single_cpu.load(Ordering::Relaxed) == my_cpu
}

/// Whether every attached side among `sides` is pinned to `my_cpu` (see [`on_cpu`]): a
/// waiter for all of them cannot be served while it spins.
pub(crate) fn all_on_cpu<'a>(my_cpu: u32, sides: impl IntoIterator<Item = &'a Side>) -> bool {
    sides.into_iter().all(|side| {
        state_of(side.owner.load(Ordering::Relaxed)) != STATE_ATTACHED || on_cpu(my_cpu, side)
    })
}

/// How far [`attach_until`] goes: each step is one store a process can be killed after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum AttachStep {
    /// The claim: one compare-and-swap from free to (attaching, this process).
    Claimed,
    /// The CPU hint and the sleeping flag written.
    Prepared,
    /// (attached, this process) stored: the end is open.
    Attached,
}

/// Claims `side` for this process: one compare-and-swap from free to (attaching, this process),
/// so the claim names its owner from the first instant; then the CPU hint and a cleared
/// sleeping flag; then (attached, this process) (SeqCst). Returns the owner word found if the
/// place was not free.
#[cfg(test)]
pub(crate) fn attach(side: &Side) -> std::result::Result<(), u64> {
    attach_until(side, me().unwrap(), None, AttachStep::Attached)
}

/// Claims `side` in `seg` for `id` if it is free ([`attach_until`] up to `stop`), with a
/// presence mark taken just before: `Ok(Ok(mark))`, the mark the end then holds while open;
/// `Ok(Err(found))`, the owner word in the way, with no mark left behind (so the caller's
/// look at whoever holds the place never counts this process's own mark).
///
/// Errors: the descriptor limit, for the mark.
pub(crate) fn claim(
    seg: &Segment,
    side: &Side,
    id: Identity,
    stop: AttachStep,
) -> Result<std::result::Result<Option<Presence>, u64>> {
    let found = side.owner.load(Ordering::Acquire);
    if found != 0 {
        return Ok(Err(found));
    }
    let mark = mark(seg, side)?;
    Ok(attach_until(side, id, mark.as_ref(), stop).map(|()| mark))
}

/// [`attach`] as `id`, stopping after `stop`: what a process killed there leaves behind (for
/// tests; `open` always goes all the way).
///
/// `mark` is this process's presence mark on `side` ([`mark`]), taken before the claim so a
/// peer never sees the claim without it; with one, this process's PID namespace is published
/// right after the claim (0 until then, which a peer reads as "check the pid, then the mark").
pub(crate) fn attach_until(
    side: &Side,
    id: Identity,
    mark: Option<&Presence>,
    stop: AttachStep,
) -> std::result::Result<(), u64> {
    side.owner.compare_exchange(
        0,
        pack(STATE_ATTACHING, id),
        Ordering::AcqRel,
        Ordering::Acquire,
    )?;
    let ns = if mark.is_some() { my_pidns() } else { 0 };
    side.pidns.store(ns, Ordering::Release);
    if stop == AttachStep::Claimed {
        return Ok(());
    }
    side.single_cpu.store(single_cpu(), Ordering::Relaxed);
    side.sleeping.store(0, Ordering::Relaxed);
    if stop == AttachStep::Prepared {
        return Ok(());
    }
    side.owner.store(pack(STATE_ATTACHED, id), Ordering::SeqCst);
    Ok(())
}

/// Takes over the place `found` names if that is a claim (attaching) whose process the caller
/// found gone: one compare-and-swap back to free, so it fails if anything changed since. The dead process
/// had written nothing but its own block (an end touches the ring only once attached).
pub(crate) fn reclaim(seg: &Segment, side: &Side, found: u64) -> bool {
    state_of(found) == STATE_ATTACHING && free_dead(seg, side, found)
}

/// Gives the place `found` names back (to free) for a process the caller found gone (dead, or
/// closed and drained): one compare-and-swap, so it fails if anything changed since.
///
/// Done while holding the place against every presence mark ([`Marks::exclusive`]): a process
/// found dead by its mark and back in its place since, with the same owner word (it left and
/// joined again), holds its mark again, and is not freed. A place someone marks is not freed.
///
/// [`Marks::exclusive`]: ipc_core::process::Marks::exclusive
pub(crate) fn free_dead(seg: &Segment, side: &Side, found: u64) -> bool {
    let marks = match seg.marks() {
        Ok(marks) => marks,
        Err(e) => {
            tracing::debug!(error = %e, "no descriptor to hold a place with: freed unheld");
            None
        }
    };
    let _held = match (&marks, place(seg, side)) {
        (Some(marks), Some(at)) => match marks.exclusive(at) {
            Hold::Held(held) => Some(held),
            Hold::Marked => return false,
            Hold::Cannot => None,
        },
        _ => None,
    };
    // The dead process's namespace is cleared first, so that no look pairs the next claim's
    // word with it (a look that reads 0 checks the pid, then the mark). Only that value is
    // cleared: a claim that came meanwhile keeps its own (or, the same value, loses it to 0,
    // which costs a pid check before its mark).
    let ns = side.pidns.load(Ordering::Acquire);
    if side.owner.load(Ordering::Acquire) != found {
        return false;
    }
    let _ = side
        .pidns
        .compare_exchange(ns, 0, Ordering::AcqRel, Ordering::Relaxed);
    side.owner
        .compare_exchange(found, 0, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// Gives `side` up without closing the channel, so another process can attach (the
/// namespace cleared first, then one store; the caller drops its mark after).
pub(crate) fn detach(side: &Side) {
    side.pidns.store(0, Ordering::Release);
    side.owner.store(0, Ordering::SeqCst);
}

/// Closes `side` for good (one store; the word keeps naming who closed it).
pub(crate) fn close(side: &Side) {
    // The end attached as `me()`, which is cached since (a child after `fork` that cannot
    // read its own start time names its pid alone: the word only says who closed it).
    let id = me().unwrap_or(Identity {
        pid: std::process::id(),
        start_time: 0,
    });
    side.owner.store(pack(STATE_CLOSED, id), Ordering::SeqCst);
}

/// What the peer is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// No process has attached (yet, or since the last hand-over).
    NotYet,
    /// A process is opening the end and its process is running (not attached yet).
    Attaching,
    /// Attached and its process is running.
    Alive,
    /// It closed its end.
    Closed,
    /// The process that holds it (attached, or still claiming it) is gone without closing
    /// (killed, crashed, exited without dropping).
    Dead,
}

/// Follows the peer's [`Side`]: a pidfd for the process its owner word names, reopened when
/// that changes; or, for a process in another PID namespace, its presence mark.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// The identity part of the owner word the pidfd belongs to.
    key: Option<u64>,
    /// The namespace word read with it. An identity names one process only within one PID
    /// namespace: the first processes of two containers (pid 1 each) started in the same
    /// clock tick publish the same owner word, and the verdict on one (dead) must not pass
    /// to the other, which may take the same place after it.
    ns: u64,
    pidfd: Option<OwnedFd>,
    /// The process is in another PID namespace (or its pid names no process here): its mark
    /// decides, probed at each check, and there is no pidfd.
    by_mark: bool,
    dead: bool,
}

/// The watched side: the segment it is in (for its presence mark) and the block itself.
pub(crate) type At<'a> = (&'a Segment, &'a Side);

impl Watch {
    /// The peer's status: its published state and, if a process holds it, whether that process
    /// lives (one `poll` of its pidfd; `pidfd_open` and a `/proc` read when the owner changed).
    ///
    /// Errors: [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted) for an owner word no
    /// endpoint writes; [`ErrorKind::Unsupported`] when no process can be checked here (no
    /// `/proc`).
    pub(crate) fn status(&mut self, at: At<'_>) -> Result<Status> {
        self.status_of(at, at.1.owner.load(Ordering::Acquire))
    }

    /// [`status`](Watch::status) of the owner word `word` of the side `at`, read by the
    /// caller.
    pub(crate) fn status_of(&mut self, at: At<'_>, word: u64) -> Result<Status> {
        let status = self.follow_word(at, word)?;
        if self.by_mark && matches!(status, Status::Alive | Status::Attaching | Status::Dead) {
            // One probe of the lock at every check, whatever the last one found (a probe that
            // cannot be made says nothing: the last verdict stands). A mark says who holds
            // the place, not that a process lives: a subscriber that leaves its place and
            // joins it again carries the same owner word, and holds the mark again.
            if let Some(held) = marked(at) {
                self.dead = !held;
            }
            return Ok(match (self.dead, state_of(word)) {
                (true, _) => Status::Dead,
                (false, STATE_ATTACHING) => Status::Attaching,
                (false, _) => Status::Alive,
            });
        }
        if !matches!(status, Status::Alive | Status::Attaching) {
            return Ok(status);
        }
        let fd = self.pidfd.as_ref().expect("open when alive");
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(
            &mut fds,
            Some(&rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }),
        ) {
            Ok(0) | Err(Errno::INTR) => Ok(status),
            Ok(_) => {
                self.dead = true;
                Ok(Status::Dead)
            }
            Err(e) => Err(Error::from(e).in_op("poll(pidfd)")),
        }
    }

    /// Whether [`status_of`](Watch::status_of) finds the process `word` names dead, for a
    /// waiter that checks its peer now and then: a word no endpoint writes is
    /// [`ErrorKind::Corrupted`] (waiting on, the waiter could never see its peer die); a check
    /// that could not be made now (no pidfd, no `/proc`) is "not known dead", and the next
    /// check tries again.
    pub(crate) fn dead_or_corrupt(&mut self, at: At<'_>, word: u64) -> Result<bool> {
        match self.status_of(at, word) {
            Ok(status) => Ok(status == Status::Dead),
            Err(e) if e.kind() == ErrorKind::Corrupted => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// Whether the process `word` names was already found dead (no syscall).
    pub(crate) fn known_dead(&self, side: &Side, word: u64) -> bool {
        self.dead && self.key == Some(key_of(word)) && self.ns == published_ns(side)
    }

    /// The pidfd of the peer process [`follow`](Watch::follow) last found, if any (none for a
    /// process checked by its mark: a waiter for it sleeps in slices).
    pub(crate) fn pidfd(&self) -> Option<&OwnedFd> {
        self.pidfd.as_ref()
    }

    /// The identity (owner word without its state) the pidfd belongs to.
    pub(crate) fn key(&self) -> Option<u64> {
        self.key
    }

    /// The peer's published status, opening a pidfd for its process when it changed, but
    /// without asking whether that process still runs: `Alive` (or `Attaching`) here means
    /// "held, and not known to be dead".
    pub(crate) fn follow(&mut self, at: At<'_>) -> Result<Status> {
        self.follow_word(at, at.1.owner.load(Ordering::Acquire))
    }

    fn follow_word(&mut self, at: At<'_>, word: u64) -> Result<Status> {
        let state = state_of(word);
        match state {
            STATE_FREE if word == 0 => return Ok(Status::NotYet),
            STATE_CLOSED => return Ok(Status::Closed),
            STATE_ATTACHING | STATE_ATTACHED => {}
            _ => {
                return Err(Error::corrupted(format!(
                    "peer endpoint owner word {word:#018x}: free, yet naming a process"
                )));
            }
        }
        let id = identity_of(word);
        if id.pid == 0 {
            return Err(Error::corrupted(format!(
                "peer endpoint owner word {word:#018x} names pid 0"
            )));
        }
        let key = key_of(word);
        // Read after the owner word (Acquire): the namespace its claimer published, or 0; and
        // only if the word is still `word`, or the namespace may be the next claim's.
        let ns = match at.1.pidns.load(Ordering::Acquire) {
            ns if at.1.owner.load(Ordering::Acquire) == word => ns,
            _ => 0,
        };
        if self.key != Some(key) || self.ns != ns {
            self.pidfd = None;
            self.dead = false;
            self.by_mark = false;
            self.key = Some(key);
            self.ns = ns;
            let mine = my_pidns();
            let foreign = ns != 0 && ns != mine;
            let verified = match foreign {
                // Its pid names nothing here, or another process.
                true => Err(Errno::SRCH),
                false => open_verified(id.pid, id.start_time),
            };
            let mark = match &verified {
                // Gone by its pid, or not checkable by pid at all: unless it is known to share
                // this namespace, its mark decides.
                Err(Errno::SRCH | Errno::NOENT) if ns != mine => marked(at),
                // A process `/proc` hides, whose start time could not be checked: if the peer
                // published a mark, the mark tells whether it is still there (a pid reused by
                // another hidden process after the peer died holds no mark of it).
                Ok((_, false)) if ns != 0 => marked(at),
                _ => None,
            };
            match (verified, mark) {
                // Alive by its pid and its mark: the pidfd lets the watcher cover it.
                (Ok((fd, _)), Some(true)) => self.pidfd = Some(fd),
                (_, Some(held)) => (self.by_mark, self.dead) = (true, !held),
                (Ok((fd, _)), None) => self.pidfd = Some(fd),
                // In another namespace, and its mark could not be probed now (a segment with
                // no file, System V, holds no mark: that claim is forged, and dead below): not
                // known dead; the next check tries again.
                (Err(_), None) if foreign && at.0.fd().is_some() => {
                    self.key = None;
                    return Err(Error::with_note(
                        ErrorKind::Unsupported,
                        format!(
                            "the peer runs in another PID namespace (pid:[{ns}]) and its presence \
                             mark could not be probed here"
                        ),
                    )
                    .in_op("check the peer process"));
                }
                (Err(Errno::SRCH), None) => self.dead = true,
                (Err(Errno::NOENT), None) => {
                    self.key = None;
                    return Err(Error::with_note(
                        ErrorKind::Unsupported,
                        "checking that the peer process lives needs /proc (its /proc/PID/stat, \
                         or its presence mark, which is made through /proc/self/fd), and /proc \
                         is not readable here: mount /proc",
                    )
                    .in_op("check the peer process"));
                }
                (Err(e), None) => {
                    // Cannot watch (out of descriptors, no pidfd support): say so rather
                    // than guess; the next check tries again.
                    self.key = None;
                    return Err(ipc_core::pipe::descriptor_error(e)
                        .in_op("check the peer process (pidfd_open, /proc/PID/stat)"));
                }
            }
        }
        if self.dead {
            return Ok(Status::Dead);
        }
        Ok(if state == STATE_ATTACHING {
            Status::Attaching
        } else {
            Status::Alive
        })
    }
}

/// A pidfd for `pid` if it is the process that started at `start`, and whether that start time
/// was checked (not when `/proc` hides the process); `ESRCH` if that process is gone (exited,
/// or the pid now names another process).
fn open_verified(pid: u32, start: u64) -> std::result::Result<(OwnedFd, bool), Errno> {
    let raw = i32::try_from(pid).map_err(|_| Errno::SRCH)?;
    let pid_t = Pid::from_raw(raw).ok_or(Errno::SRCH)?;
    // EINVAL: a thread's id, not a process's; ENOENT: a process the kernel will not give a
    // pidfd for (seen for a process from outside this container). No end publishes such a pid,
    // so it names no live peer. (NOENT is kept below for "no /proc".)
    let fd = pidfd_open(pid_t, PidfdFlags::empty()).map_err(|e| match e {
        Errno::INVAL | Errno::NOENT => Errno::SRCH,
        e => e,
    })?;
    // The pidfd now pins whichever process has this pid. If its start time is not the one the
    // peer published, the peer died and the pid was reused.
    let start_time = match proc_number(pid, &fd) {
        Ok(Some(n)) => start_time_of(n),
        // Not shown in this `/proc`: as hidden.
        Ok(None) => Err(Errno::NOENT),
        Err(e) => Err(e),
    };
    match start_time {
        Ok(Some(t)) if t == start => Ok((fd, true)),
        Ok(Some(_)) => Err(Errno::SRCH),
        // Gone (reaped since the pidfd was made), hidden (`/proc` mounted `hidepid=`, another
        // user's process), or no `/proc` at all: this process's own entry tells the last
        // apart (`NOENT` lets the caller say "no /proc" instead of "dead"), and the pidfd the
        // first two: it is readable once its process has exited.
        Err(Errno::NOENT | Errno::ACCESS | Errno::PERM) => match start_time_of("self") {
            Err(e @ (Errno::NOENT | Errno::MFILE | Errno::NFILE)) => Err(e),
            _ if exited(&fd) => Err(Errno::SRCH),
            // Runs, and `/proc` hides it: its start time cannot be checked, so a pid reused
            // by another hidden process would pass for the peer (the caller asks the peer's
            // mark, when it published one). Taken for alive: the other answer, dead, would end
            // a channel whose peer runs, on every hardened multi-user machine.
            _ => Ok((fd, false)),
        },
        Ok(None) => Err(Errno::SRCH),
        // No descriptor left to read it with (the pidfd may have taken the last one), or
        // another reason it cannot be read now: neither dead nor alive; the caller names it.
        Err(e) => Err(e),
    }
}

/// The number `/proc` shows the process of `pidfd` (opened for `pid`, a number in this
/// process's PID namespace) under, read from the pidfd's fdinfo (`Pid:`, in the numbering of
/// the `/proc` it is read through): `pid` itself where `/proc` is this namespace's, another
/// number for a `/proc` mounted for an ancestor namespace (`unshare --pid --fork` without
/// `--mount-proc`, a container given its host's `/proc`), where `/proc/PID` is another
/// process. Asked every time rather than guessed from `/proc/self`, whose number can equal
/// this process's pid by chance under such a `/proc`. `None` when that `/proc` does not show
/// the process (or it has exited); `pid` itself where the fdinfo has no `Pid:` line (kernels
/// before 5.4). `Err` with the errno of a fdinfo that could not be read for want of a
/// descriptor.
fn proc_number(pid: u32, pidfd: &OwnedFd) -> std::result::Result<Option<u32>, Errno> {
    use std::os::fd::AsRawFd;
    let info = match std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())) {
        Ok(info) => info,
        Err(e) => {
            return match Errno::from_io_error(&e).unwrap_or(Errno::IO) {
                e @ (Errno::MFILE | Errno::NFILE) => Err(e),
                // No `/proc` (the stat read then says so): this namespace's numbering.
                _ => Ok(Some(pid)),
            };
        }
    };
    let Some(line) = info.lines().find_map(|l| l.strip_prefix("Pid:")) else {
        return Ok(Some(pid));
    };
    Ok(line
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|nr| u32::try_from(nr).ok())
        .filter(|&nr| nr > 0))
}

/// Whether the process of `pidfd` has exited (the pidfd is readable; a poll that cannot be
/// made says no, and the next status check polls again).
fn exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let now = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&now)), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_utils::CachePadded;

    /// A segment holding two sides (zeroed: free).
    fn segment() -> Segment {
        Segment::memfd("peer-test", 4096).unwrap()
    }

    /// Side `i` (0 or 1) of `seg`.
    fn side(seg: &Segment, i: usize) -> &Side {
        let at = i * std::mem::size_of::<CachePadded<Side>>();
        // SAFETY: the mapping is 4096 bytes, page-aligned and zeroed; `Side` is atomics only,
        // for which all-zero is a valid value (state FREE), and two padded sides fit in it.
        unsafe { &*seg.as_ptr().add(at).cast::<Side>() }
    }

    #[test]
    fn own_process_is_alive_and_states_are_followed() {
        let seg = segment();
        let s = side(&seg, 0);
        let mut w = Watch::default();
        assert_eq!(w.status((&seg, s)).unwrap(), Status::NotYet);
        attach(s).unwrap();
        assert_eq!(attach(s), Err(pack(STATE_ATTACHED, me().unwrap())));
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Alive);
        detach(s);
        assert_eq!(w.status((&seg, s)).unwrap(), Status::NotYet);
        attach_until(s, me().unwrap(), None, AttachStep::Claimed).unwrap();
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Attaching);
        detach(s);
        attach(s).unwrap();
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Alive);
        close(s);
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Closed);
        s.owner.store(0x40, Ordering::Release); // free, yet naming a process
        assert_eq!(
            w.status((&seg, s)).unwrap_err().kind(),
            ipc_core::ErrorKind::Corrupted
        );
        s.owner.store(STATE_ATTACHED.into(), Ordering::Release); // pid 0
        assert_eq!(
            w.status((&seg, s)).unwrap_err().kind(),
            ipc_core::ErrorKind::Corrupted
        );
    }

    #[test]
    fn a_wrong_start_time_is_a_dead_peer() {
        let seg = segment();
        let s = side(&seg, 0);
        // Same pid, other start time: what a reused pid looks like.
        let mut other = me().unwrap();
        other.start_time += 1;
        attach_until(s, other, None, AttachStep::Attached).unwrap();
        assert_eq!(Watch::default().status((&seg, s)).unwrap(), Status::Dead);
        // A pid that cannot exist (beyond pid_max), attaching or attached.
        let gone = Identity {
            pid: (1 << PID_BITS) - 1,
            start_time: 1,
        };
        for state in [STATE_ATTACHING, STATE_ATTACHED] {
            s.owner.store(pack(state, gone), Ordering::Release);
            assert_eq!(Watch::default().status((&seg, s)).unwrap(), Status::Dead);
        }
        // A dead claimer's place is taken over, once.
        let found = s.owner.load(Ordering::Relaxed);
        assert!(!reclaim(&seg, s, found), "attached, not a claim");
        s.owner
            .store(pack(STATE_ATTACHING, gone), Ordering::Release);
        let found = s.owner.load(Ordering::Relaxed);
        assert!(reclaim(&seg, s, found));
        assert!(!reclaim(&seg, s, found));
        attach(s).unwrap();
    }

    #[test]
    fn owner_words_round_trip() {
        let id = Identity {
            pid: 4_194_303,
            start_time: START_MASK,
        };
        for state in [STATE_ATTACHING, STATE_ATTACHED, STATE_CLOSED] {
            let w = pack(state, id);
            assert_eq!((state_of(w), identity_of(w)), (state, id));
        }
        assert_eq!(pack(STATE_FREE, me().unwrap()) & 3, 0);
    }

    #[test]
    fn own_start_time_is_known() {
        assert!(me().unwrap().start_time > 0);
    }

    /// A process in another PID namespace: its pid means nothing here, its presence mark
    /// decides, whatever process the pid happens to name here.
    #[test]
    fn a_peer_in_another_pid_namespace_lives_by_its_mark() {
        let seg = segment();
        let (s, other) = (side(&seg, 1), side(&seg, 0));
        // What a claim from another namespace leaves: a pid that names another process here
        // (this one, with another start time) or none, its namespace, its mark.
        let mut stranger = me().unwrap();
        stranger.start_time += 1;
        let mark = mark(&seg, s).unwrap().expect("a memfd segment takes marks");
        attach_until(s, stranger, Some(&mark), AttachStep::Attached).unwrap();
        s.pidns.store(my_pidns() + 1, Ordering::Release);
        let mut w = Watch::default();
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Alive, "by its mark");
        assert!(w.pidfd().is_none(), "no pidfd for a foreign process");
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Alive, "checked again");
        assert_eq!(
            Watch::default().status((&seg, other)).unwrap(),
            Status::NotYet,
            "one mark a place"
        );
        drop(mark);
        assert_eq!(
            w.status((&seg, s)).unwrap(),
            Status::Dead,
            "its mark is gone"
        );
        assert!(w.known_dead(s, s.owner.load(Ordering::Relaxed)));

        // Namespace not yet published (0): the pid check first, then the mark.
        free_dead(&seg, s, s.owner.load(Ordering::Relaxed));
        assert_eq!(s.pidns.load(Ordering::Relaxed), 0, "cleared with the place");
        let gone = Identity {
            pid: (1 << PID_BITS) - 1,
            start_time: 1,
        };
        let mark = self::mark(&seg, s).unwrap().unwrap();
        s.owner
            .store(pack(STATE_ATTACHING, gone), Ordering::Release);
        assert_eq!(
            Watch::default().status((&seg, s)).unwrap(),
            Status::Attaching
        );
        drop(mark);
        assert_eq!(Watch::default().status((&seg, s)).unwrap(), Status::Dead);

        // Known to share this namespace: the pid decides, a mark held on does not count (a
        // child forked without exec may hold its dead parent's).
        let mark = self::mark(&seg, s).unwrap().unwrap();
        s.pidns.store(my_pidns(), Ordering::Release);
        assert_eq!(Watch::default().status((&seg, s)).unwrap(), Status::Dead);
        drop(mark);
    }

    /// Two processes of two namespaces can publish one owner word (pid 1 each, started in
    /// one clock tick): the verdict on the first, dead, does not pass to the second, which
    /// holds the place's mark after it.
    #[test]
    fn one_owner_word_in_two_namespaces_is_two_processes() {
        let seg = segment();
        let s = side(&seg, 0);
        let mut first = me().unwrap();
        first.start_time += 1; // not this process, by its pid
        let word = pack(STATE_ATTACHED, first);
        let mark = mark(&seg, s).unwrap().unwrap();
        s.owner.store(word, Ordering::Release);
        s.pidns.store(my_pidns() + 1, Ordering::Release);
        let mut w = Watch::default();
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Alive);
        drop(mark);
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Dead);
        assert!(w.known_dead(s, word));
        // The place freed, and taken by the second with the same word.
        assert!(free_dead(&seg, s, word));
        let mark = self::mark(&seg, s).unwrap().unwrap();
        s.owner.store(word, Ordering::Release);
        assert_eq!(
            w.status((&seg, s)).unwrap(),
            Status::Alive,
            "namespace not yet published: its pid, then its mark"
        );
        s.pidns.store(my_pidns() + 2, Ordering::Release);
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Alive, "by its mark");
        assert!(!w.known_dead(s, word));
        drop(mark);
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Dead);
    }

    /// A process of another namespace that leaves its place and takes it again has the same
    /// owner word (and namespace) both times: a check made while it was away (no mark) must
    /// not stay its verdict once it is back.
    #[test]
    fn a_foreign_process_back_in_its_place_is_alive_again() {
        let seg = segment();
        let s = side(&seg, 0);
        let mut away = me().unwrap();
        away.start_time += 1;
        let word = pack(STATE_ATTACHED, away);
        let mark = mark(&seg, s).unwrap().unwrap();
        s.owner.store(word, Ordering::Release);
        s.pidns.store(my_pidns() + 1, Ordering::Release);
        let mut w = Watch::default();
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Alive);
        // Its leave, seen half done: the word still there, the mark gone.
        drop(mark);
        assert_eq!(w.status_of((&seg, s), word).unwrap(), Status::Dead);
        // Back, with the same word and namespace.
        let mark = self::mark(&seg, s).unwrap().unwrap();
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Alive);
        assert!(!w.known_dead(s, word));
        drop(mark);
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Dead);
        assert!(w.known_dead(s, word), "kept until the next check");
    }

    /// An end publishes its namespace only with a mark, and hands both over on detach.
    #[test]
    fn the_namespace_is_published_with_the_mark() {
        let seg = segment();
        let s = side(&seg, 0);
        let mark = mark(&seg, s).unwrap().unwrap();
        attach_until(s, me().unwrap(), Some(&mark), AttachStep::Attached).unwrap();
        assert_eq!(s.pidns.load(Ordering::Relaxed), my_pidns());
        detach(s);
        assert_eq!(s.pidns.load(Ordering::Relaxed), 0);
        attach_until(s, me().unwrap(), None, AttachStep::Attached).unwrap();
        assert_eq!(s.pidns.load(Ordering::Relaxed), 0, "no mark, no namespace");
        drop(mark);
        // `claim` takes the mark with the place, and leaves none when the place is held.
        let other = side(&seg, 1);
        let held = claim(&seg, other, me().unwrap(), AttachStep::Attached).unwrap();
        let held = held.expect("free").expect("a memfd segment takes marks");
        assert_eq!(other.pidns.load(Ordering::Relaxed), my_pidns());
        assert_eq!(marked((&seg, other)), Some(true));
        let found = other.owner.load(Ordering::Relaxed);
        assert_eq!(
            claim(&seg, other, me().unwrap(), AttachStep::Attached)
                .unwrap()
                .err(),
            Some(found)
        );
        drop(held);
        assert_eq!(marked((&seg, other)), Some(false));
        assert_eq!(marked((&seg, s)), Some(false));
    }

    /// A process of this namespace that died, and one of another namespace that took its
    /// place with the same owner word (pid and start tick): the first's death is not the
    /// second's.
    #[test]
    fn a_death_known_for_one_namespace_is_not_another_s() {
        let seg = segment();
        let s = side(&seg, 0);
        let gone = Identity {
            pid: (1 << PID_BITS) - 1,
            start_time: 1,
        };
        let word = pack(STATE_ATTACHED, gone);
        s.owner.store(word, Ordering::Release);
        s.pidns.store(my_pidns(), Ordering::Release);
        let mut w = Watch::default();
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Dead);
        assert!(w.known_dead(s, word));
        // Taken over in another namespace with the very same word, its mark held.
        let mark = mark(&seg, s).unwrap().unwrap();
        s.pidns.store(my_pidns() + 1, Ordering::Release);
        assert!(
            !w.known_dead(s, word),
            "a verdict for the other namespace's process"
        );
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Alive);
        drop(mark);
    }

    /// A process judged dead by its mark (none held) that comes back to its place with the
    /// same owner word before the place is freed holds its mark again: it is not freed.
    #[test]
    fn a_place_whose_holder_marked_it_again_is_not_freed() {
        let seg = segment();
        let s = side(&seg, 0);
        let mut away = me().unwrap();
        away.start_time += 1;
        let word = pack(STATE_ATTACHED, away);
        s.owner.store(word, Ordering::Release);
        s.pidns.store(my_pidns() + 1, Ordering::Release);
        let mut w = Watch::default();
        assert_eq!(w.status((&seg, s)).unwrap(), Status::Dead, "no mark held");
        // Back in its place (the same word), its mark held through its own open of the file.
        let theirs = ipc_core::process::Marks::open(seg.fd().unwrap())
            .unwrap()
            .unwrap();
        let mark = std::sync::Arc::new(theirs)
            .mark(place(&seg, s).unwrap())
            .unwrap();
        assert!(!free_dead(&seg, s, word), "a marked place is held");
        assert_eq!(s.owner.load(Ordering::Relaxed), word);
        drop(mark);
        assert!(free_dead(&seg, s, word), "unmarked: freed");
    }
}

//! Who is on the other end: publishing this process in its endpoint's [`Side`], and checking
//! the peer's with a pidfd, which PID reuse cannot fool (the peer's start time, published beside
//! its pid, is compared after the pidfd is opened). Also the CPU facts adaptive waiting uses.

use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use ipc_core::{Error, ErrorKind, Result};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, pidfd_open};

use crate::ring::{STATE_ATTACHED, STATE_ATTACHING, STATE_CLOSED, STATE_FREE, Side};

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

/// The part of an owner word that names the process (its identity without the state).
pub(crate) fn key_of(word: u64) -> u64 {
    word >> STATE_BITS
}

/// The start time of `pid` (field 22 of `/proc/PID/stat`, clock ticks after boot), low 40 bits:
/// `Err` with the errno of the one read (see [`ipc_core::process::read_stat`]), `Ok(None)` for
/// a line that does not parse.
fn start_time_of(pid: impl std::fmt::Display) -> std::result::Result<Option<u64>, Errno> {
    ipc_core::process::read_stat(pid).map(|s| s.map(|s| s.start_ticks & START_MASK))
}

/// This process's identity (cached; recomputed in a child after `fork`).
///
/// Errors: [`ErrorKind::LimitExceeded`] naming `RLIMIT_NOFILE` (or `fs.file-max`) when no
/// descriptor is free to read `/proc/self/stat` with. Nothing is cached then: an identity
/// with a wrong start time, published in an owner word, would make every peer take this
/// live process for a dead one. Without `/proc` at all the start time is 0 (a peer cannot
/// check liveness there either, and says so).
pub(crate) fn me() -> Result<Identity> {
    static CACHE: Mutex<Option<Identity>> = Mutex::new(None);
    let pid = std::process::id();
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    match *cache {
        Some(id) if id.pid == pid => Ok(id),
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
            *cache = Some(id);
            Ok(id)
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
    attach_until(side, me().unwrap(), AttachStep::Attached)
}

/// [`attach`] as `id`, stopping after `stop`: what a process killed there leaves behind (for
/// tests; `open` always goes all the way).
pub(crate) fn attach_until(
    side: &Side,
    id: Identity,
    stop: AttachStep,
) -> std::result::Result<(), u64> {
    side.owner.compare_exchange(
        0,
        pack(STATE_ATTACHING, id),
        Ordering::AcqRel,
        Ordering::Acquire,
    )?;
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
pub(crate) fn reclaim(side: &Side, found: u64) -> bool {
    state_of(found) == STATE_ATTACHING
        && side
            .owner
            .compare_exchange(found, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
}

/// Gives `side` up without closing the channel, so another process can attach (one store).
pub(crate) fn detach(side: &Side) {
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
/// that changes.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// The identity part of the owner word the pidfd belongs to.
    key: Option<u64>,
    pidfd: Option<OwnedFd>,
    dead: bool,
}

impl Watch {
    /// The peer's status: its published state and, if a process holds it, whether that process
    /// lives (one `poll` of its pidfd; `pidfd_open` and a `/proc` read when the owner changed).
    ///
    /// Errors: [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted) for an owner word no
    /// endpoint writes; [`ErrorKind::Unsupported`] when no process can be checked here (no
    /// `/proc`).
    pub(crate) fn status(&mut self, side: &Side) -> Result<Status> {
        self.status_of(side.owner.load(Ordering::Acquire))
    }

    /// [`status`](Watch::status) of the owner word `word`, read by the caller.
    pub(crate) fn status_of(&mut self, word: u64) -> Result<Status> {
        let status = self.follow_word(word)?;
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
    pub(crate) fn dead_or_corrupt(&mut self, word: u64) -> Result<bool> {
        match self.status_of(word) {
            Ok(status) => Ok(status == Status::Dead),
            Err(e) if e.kind() == ErrorKind::Corrupted => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// Whether the process `word` names was already found dead (no syscall).
    pub(crate) fn known_dead(&self, word: u64) -> bool {
        self.dead && self.key == Some(key_of(word))
    }

    /// The pidfd of the peer process [`follow`](Watch::follow) last found, if any.
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
    pub(crate) fn follow(&mut self, side: &Side) -> Result<Status> {
        self.follow_word(side.owner.load(Ordering::Acquire))
    }

    fn follow_word(&mut self, word: u64) -> Result<Status> {
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
        if self.key != Some(key) {
            self.pidfd = None;
            self.dead = false;
            self.key = Some(key);
            match open_verified(id.pid, id.start_time) {
                Ok(fd) => self.pidfd = Some(fd),
                Err(Errno::SRCH) => self.dead = true,
                Err(Errno::NOENT) => {
                    self.key = None;
                    return Err(Error::with_note(
                        ErrorKind::Unsupported,
                        "checking that the peer process lives needs /proc/PID/stat, and /proc \
                         is not readable here: mount /proc (both ends must also share one PID \
                         namespace)",
                    )
                    .in_op("check the peer process"));
                }
                Err(e) => {
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

/// A pidfd for `pid` if it is the process that started at `start`; `ESRCH` if that process is
/// gone (exited, or the pid now names another process).
fn open_verified(pid: u32, start: u64) -> std::result::Result<OwnedFd, Errno> {
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
    match start_time_of(pid) {
        Ok(Some(t)) if t == start => Ok(fd),
        Ok(Some(_)) => Err(Errno::SRCH),
        // Gone (reaped since the pidfd was made), hidden (`/proc` mounted `hidepid=`, another
        // user's process), or no `/proc` at all: this process's own entry tells the last
        // apart (`NOENT` lets the caller say "no /proc" instead of "dead"), and the pidfd the
        // first two: it is readable once its process has exited.
        Err(Errno::NOENT | Errno::ACCESS | Errno::PERM) => match start_time_of("self") {
            Err(e @ (Errno::NOENT | Errno::MFILE | Errno::NFILE)) => Err(e),
            _ if exited(&fd) => Err(Errno::SRCH),
            // Runs, and `/proc` hides it: its start time cannot be checked, so a pid reused
            // by another hidden process would pass for the peer (until that one exits, which
            // the pidfd tells). Taken for alive: the other answer, dead, would end a channel
            // whose peer runs, on every hardened multi-user machine.
            _ => Ok(fd),
        },
        Ok(None) => Err(Errno::SRCH),
        // No descriptor left to read it with (the pidfd may have taken the last one), or
        // another reason it cannot be read now: neither dead nor alive; the caller names it.
        Err(e) => Err(e),
    }
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

    fn side() -> CachePadded<Side> {
        // SAFETY: `Side` is atomics only; all-zero is a valid value (state FREE).
        unsafe { std::mem::zeroed() }
    }

    #[test]
    fn own_process_is_alive_and_states_are_followed() {
        let s = side();
        let mut w = Watch::default();
        assert_eq!(w.status(&s).unwrap(), Status::NotYet);
        attach(&s).unwrap();
        assert_eq!(attach(&s), Err(pack(STATE_ATTACHED, me().unwrap())));
        assert_eq!(w.status(&s).unwrap(), Status::Alive);
        detach(&s);
        assert_eq!(w.status(&s).unwrap(), Status::NotYet);
        attach_until(&s, me().unwrap(), AttachStep::Claimed).unwrap();
        assert_eq!(w.status(&s).unwrap(), Status::Attaching);
        detach(&s);
        attach(&s).unwrap();
        assert_eq!(w.status(&s).unwrap(), Status::Alive);
        close(&s);
        assert_eq!(w.status(&s).unwrap(), Status::Closed);
        s.owner.store(0x40, Ordering::Release); // free, yet naming a process
        assert_eq!(
            w.status(&s).unwrap_err().kind(),
            ipc_core::ErrorKind::Corrupted
        );
        s.owner.store(STATE_ATTACHED.into(), Ordering::Release); // pid 0
        assert_eq!(
            w.status(&s).unwrap_err().kind(),
            ipc_core::ErrorKind::Corrupted
        );
    }

    #[test]
    fn a_wrong_start_time_is_a_dead_peer() {
        let s = side();
        // Same pid, other start time: what a reused pid looks like.
        let mut other = me().unwrap();
        other.start_time += 1;
        attach_until(&s, other, AttachStep::Attached).unwrap();
        assert_eq!(Watch::default().status(&s).unwrap(), Status::Dead);
        // A pid that cannot exist (beyond pid_max), attaching or attached.
        let gone = Identity {
            pid: (1 << PID_BITS) - 1,
            start_time: 1,
        };
        for state in [STATE_ATTACHING, STATE_ATTACHED] {
            s.owner.store(pack(state, gone), Ordering::Release);
            assert_eq!(Watch::default().status(&s).unwrap(), Status::Dead);
        }
        // A dead claimer's place is taken over, once.
        let found = s.owner.load(Ordering::Relaxed);
        assert!(!reclaim(&s, found), "attached, not a claim");
        s.owner
            .store(pack(STATE_ATTACHING, gone), Ordering::Release);
        let found = s.owner.load(Ordering::Relaxed);
        assert!(reclaim(&s, found));
        assert!(!reclaim(&s, found));
        attach(&s).unwrap();
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
}

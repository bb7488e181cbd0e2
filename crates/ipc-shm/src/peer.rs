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

use crate::ring::{STATE_ATTACHED, STATE_CLOSED, STATE_FREE, Side};

/// A transient state while an endpoint writes its identity: peers treat it as not attached yet.
pub(crate) const STATE_ATTACHING: u32 = 3;

/// A process as published in a [`Side`]: pid and start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) pid: u32,
    pub(crate) start_time: u64,
}

/// The start time of `pid` (field 22 of `/proc/PID/stat`, clock ticks after boot).
fn start_time_of(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')': skip past the
    // last ')'. Field 3 is then the first one.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This process's identity (cached; recomputed in a child after `fork`).
pub(crate) fn me() -> Identity {
    static CACHE: Mutex<Option<Identity>> = Mutex::new(None);
    let pid = std::process::id();
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    match *cache {
        Some(id) if id.pid == pid => id,
        _ => {
            let id = Identity {
                pid,
                start_time: start_time_of("self").unwrap_or(0),
            };
            *cache = Some(id);
            id
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

/// Claims `side` for this process: `FREE` -> `ATTACHING`, identity written under the seqlock,
/// then `ATTACHED` (release). Returns the state found if it was not free.
pub(crate) fn attach(side: &Side) -> std::result::Result<(), u32> {
    side.state.compare_exchange(
        STATE_FREE,
        STATE_ATTACHING,
        Ordering::AcqRel,
        Ordering::Acquire,
    )?;
    let id = me();
    let g = side.generation.load(Ordering::Relaxed);
    // Odd while writing; readers that see an odd or changed generation look again later.
    side.generation.store(g | 1, Ordering::Relaxed);
    std::sync::atomic::fence(Ordering::Release);
    side.pid.store(id.pid, Ordering::Relaxed);
    side.start_time.store(id.start_time, Ordering::Relaxed);
    side.single_cpu.store(single_cpu(), Ordering::Relaxed);
    side.sleeping.store(0, Ordering::Relaxed);
    side.generation
        .store((g | 1).wrapping_add(1), Ordering::Release);
    side.state.store(STATE_ATTACHED, Ordering::SeqCst);
    Ok(())
}

/// Gives `side` up without closing the channel, so another process can attach.
pub(crate) fn detach(side: &Side) {
    let g = side.generation.load(Ordering::Relaxed);
    side.generation
        .store((g | 1).wrapping_add(1), Ordering::Relaxed);
    side.state.store(STATE_FREE, Ordering::SeqCst);
}

/// What the peer is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// No process has attached (yet, or since the last hand-over).
    NotYet,
    /// Attached and its process is running.
    Alive,
    /// It closed its end.
    Closed,
    /// Its process is gone without closing (killed, crashed, exited without dropping).
    Dead,
}

/// Follows the peer's [`Side`]: a pidfd for the process it names, reopened when it changes.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    generation: Option<u32>,
    pidfd: Option<OwnedFd>,
    dead: bool,
}

impl Watch {
    /// The peer's status: its published state and, if attached, whether its process lives
    /// (one `poll` of its pidfd; `pidfd_open` and a `/proc` read when the peer changed).
    ///
    /// Errors: [`ErrorKind::Corrupted`](ipc_core::ErrorKind::Corrupted) for a state value no
    /// endpoint writes.
    pub(crate) fn status(&mut self, side: &Side) -> Result<Status> {
        let status = self.follow(side)?;
        if status != Status::Alive {
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
            Ok(0) | Err(Errno::INTR) => Ok(Status::Alive),
            Ok(_) => {
                self.dead = true;
                Ok(Status::Dead)
            }
            Err(e) => Err(Error::from(e).in_op("poll(pidfd)")),
        }
    }

    /// The pidfd of the peer process [`follow`](Watch::follow) last found, if any.
    pub(crate) fn pidfd(&self) -> Option<&OwnedFd> {
        self.pidfd.as_ref()
    }

    /// The generation of the peer's block the pidfd belongs to.
    pub(crate) fn generation(&self) -> Option<u32> {
        self.generation
    }

    /// The peer's published status, opening a pidfd for its process when it changed, but
    /// without asking whether that process still runs: `Alive` here means "attached, and not
    /// known to be dead".
    pub(crate) fn follow(&mut self, side: &Side) -> Result<Status> {
        match side.state.load(Ordering::Acquire) {
            STATE_FREE | STATE_ATTACHING => return Ok(Status::NotYet),
            STATE_CLOSED => return Ok(Status::Closed),
            STATE_ATTACHED => {}
            other => {
                return Err(Error::corrupted(format!("peer endpoint state {other}")));
            }
        }
        let g = side.generation.load(Ordering::Acquire);
        if g & 1 == 1 {
            return Ok(Status::NotYet);
        }
        if self.generation != Some(g) {
            let pid = side.pid.load(Ordering::Relaxed);
            let start = side.start_time.load(Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::Acquire);
            if side.generation.load(Ordering::Relaxed) != g {
                return Ok(Status::NotYet); // changing under us: look again next time
            }
            self.pidfd = None;
            self.dead = false;
            self.generation = Some(g);
            match open_verified(pid, start) {
                Ok(fd) => self.pidfd = Some(fd),
                Err(Errno::SRCH) => self.dead = true,
                Err(Errno::NOENT) => {
                    self.generation = None;
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
                    self.generation = None;
                    return Err(Error::from(e).in_op("pidfd_open"));
                }
            }
        }
        if self.dead {
            return Ok(Status::Dead);
        }
        Ok(Status::Alive)
    }
}

/// A pidfd for `pid` if it is the process that started at `start`; `ESRCH` if that process is
/// gone (exited, or the pid now names another process).
fn open_verified(pid: u32, start: u64) -> std::result::Result<OwnedFd, Errno> {
    let raw = i32::try_from(pid).map_err(|_| Errno::SRCH)?;
    let pid_t = Pid::from_raw(raw).ok_or(Errno::SRCH)?;
    let fd = pidfd_open(pid_t, PidfdFlags::empty())?;
    // The pidfd now pins whichever process has this pid. If its start time is not the one the
    // peer published, the peer died and the pid was reused.
    match start_time_of(&pid.to_string()) {
        Some(t) if t == start => Ok(fd),
        // Not even this process's own entry is readable: no `/proc` here, so no process can
        // be told alive or dead. `NOENT` lets the caller say that instead of "dead".
        None if start_time_of("self").is_none() => Err(Errno::NOENT),
        _ => Err(Errno::SRCH),
    }
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
        assert_eq!(attach(&s), Err(STATE_ATTACHED));
        assert_eq!(w.status(&s).unwrap(), Status::Alive);
        detach(&s);
        assert_eq!(w.status(&s).unwrap(), Status::NotYet);
        attach(&s).unwrap();
        assert_eq!(w.status(&s).unwrap(), Status::Alive);
        s.state.store(STATE_CLOSED, Ordering::Release);
        assert_eq!(w.status(&s).unwrap(), Status::Closed);
        s.state.store(77, Ordering::Release);
        assert_eq!(
            w.status(&s).unwrap_err().kind(),
            ipc_core::ErrorKind::Corrupted
        );
    }

    #[test]
    fn a_wrong_start_time_is_a_dead_peer() {
        let s = side();
        attach(&s).unwrap();
        // Same pid, other start time: what a reused pid looks like.
        let g = s.generation.load(Ordering::Relaxed);
        s.start_time.fetch_add(1, Ordering::Relaxed);
        s.generation.store(g + 2, Ordering::Release);
        assert_eq!(Watch::default().status(&s).unwrap(), Status::Dead);
        // A pid that cannot exist.
        s.pid.store(u32::MAX, Ordering::Relaxed);
        s.generation.store(g + 4, Ordering::Release);
        assert_eq!(Watch::default().status(&s).unwrap(), Status::Dead);
    }

    #[test]
    fn own_start_time_is_known() {
        assert!(me().start_time > 0);
    }
}

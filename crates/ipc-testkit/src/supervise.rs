//! What a program that is not a test binary needs to run roles (the benchmark does): an
//! entry point for its `main`, and a timer that kills a child that takes too long while the
//! parent is blocked talking to it.

use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, Signal};

use crate::{Child, RoleFn};

/// For a program's `main`, first thing: if this process was started by [`spawn`](crate::spawn)
/// to run one of `roles`, runs it and exits (status 0 when the role returns); otherwise
/// returns, and `main` goes on as the parent. A test binary uses [`roles!`](crate::roles)
/// instead.
pub fn role_main(roles: &[(&str, RoleFn)]) {
    crate::child_entry(roles);
}

/// Kills a child with `SIGKILL` if it is still running when the timer runs out; made by
/// [`Child::kill_after`]. Disarm it with [`stop`](KillTimer::stop).
#[derive(Debug)]
pub struct KillTimer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<bool>,
}

impl Child {
    /// Arms a timer that kills this child after `limit`, through a pidfd (immune to pid
    /// reuse): for a parent whose own blocking calls on a link to the child would otherwise
    /// wait for a hung child forever (the kill makes them return).
    ///
    /// Panics if the pidfd cannot be opened (the child has been reaped).
    pub fn kill_after(&self, limit: Duration) -> KillTimer {
        let pid = Pid::from_raw(self.child.id() as i32).expect("a child has a pid");
        let pidfd: OwnedFd =
            rustix::process::pidfd_open(pid, PidfdFlags::empty()).expect("pidfd_open");
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || match rx.recv_timeout(limit) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = rustix::process::pidfd_send_signal(&pidfd, Signal::KILL);
                true
            }
            _ => false,
        });
        KillTimer { stop, thread }
    }
}

impl KillTimer {
    /// Disarms the timer; returns whether it had fired.
    pub fn stop(self) -> bool {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or(false)
    }
}

//! `mq_notify`: [`Queue::notify`] and its [`Notification`] (a pollable netlink descriptor that
//! becomes readable when a message arrives on the empty queue), [`Queue::notify_signal`] and
//! [`Queue::cancel_notify`].

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use ipc_core::fd::{Interest, wait};
use ipc_core::{Blocked, Deadline, Error, ErrorKind, Result};
use rustix::io::Errno;

use super::Queue;
use super::queue::not_a_queue_error;
use crate::sys;

impl Queue {
    /// Asks the kernel to notify this process, once, when a message arrives on the empty
    /// queue; the notification is a descriptor that becomes readable ([`Notification`]).
    ///
    /// This uses the kernel's `SIGEV_THREAD` interface directly (the one C libraries build
    /// their notification threads on): the kernel sends a 32-byte cookie to a netlink socket,
    /// which the [`Notification`] owns. No signal, no thread, and the descriptor can be polled
    /// alongside others.
    ///
    /// The kernel's rules apply:
    /// - one process at a time may be registered per queue;
    /// - the notification fires only when a message arrives on an **empty** queue while no
    ///   process is blocked receiving from it (in a blocking receive: one with a deadline
    ///   waits in `poll(2)`, see the [module documentation](super), and holds no notification
    ///   back), and the registration ends when it fires (call `notify` again to re-arm, then
    ///   drain the queue, so no arrival is missed);
    /// - it is removed ([`NotifyEvent::Removed`]) when this process calls
    ///   [`cancel_notify`](Queue::cancel_notify) or closes *any* descriptor of the queue
    ///   (including a [`try_clone`](Queue::try_clone)); dropping the [`Notification`] does not
    ///   remove it.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] if a process (this one or another) is registered already;
    /// [`ErrorKind::WrongType`] for a descriptor adopted with `From<OwnedFd>` that is not a
    /// queue (so for [`notify_signal`](Queue::notify_signal) and
    /// [`cancel_notify`](Queue::cancel_notify)).
    ///
    /// # References
    /// - [`mq_notify(3)`](https://man7.org/linux/man-pages/man3/mq_notify.3.html);
    ///   `<linux/mqueue.h>` documents the `SIGEV_THREAD` netlink interface.
    #[doc(alias = "mq_notify")]
    pub fn notify(&self) -> Result<Notification> {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, socket_with};
        let sock = socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| self.fail(Error::from(e), "socket(AF_NETLINK)"))?;
        let cookie = Cookie::next();
        sys::mq_notify_netlink(self.as_fd(), sock.as_fd(), &cookie.bytes)
            .map_err(|errno| self.fail(notify_error(errno), "mq_notify"))?;
        tracing::trace!(queue = %self.object(), "registered for mq_notify (netlink)");
        Ok(Notification {
            sock,
            cookie,
            queue: Arc::clone(self.object()),
            event: AtomicU8::new(0),
        })
    }

    /// Asks the kernel to send `signal` to this process, once, when a message arrives on the
    /// empty queue (`SIGEV_SIGNAL`). The same rules as for [`notify`](Queue::notify) apply. The
    /// caller is responsible for the signal's disposition: a signal whose default action ends
    /// the process will end it.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `signal` is not a signal number (1 to `SIGRTMAX`);
    /// [`ErrorKind::AlreadyExists`] if a process is registered already.
    ///
    /// # References
    /// - [`mq_notify(3)`](https://man7.org/linux/man-pages/man3/mq_notify.3.html)
    #[doc(alias = "mq_notify")]
    pub fn notify_signal(&self, signal: i32) -> Result<()> {
        if !(1..=libc::SIGRTMAX()).contains(&signal) {
            let e = Error::with_note(
                ErrorKind::InvalidInput,
                format!(
                    "{signal} is not a signal number (1 to {})",
                    libc::SIGRTMAX()
                ),
            );
            return Err(self.fail(e, "mq_notify"));
        }
        sys::mq_notify_signal(self.as_fd(), signal)
            .map_err(|errno| self.fail(notify_error(errno), "mq_notify"))?;
        tracing::trace!(queue = %self.object(), signal, "registered for mq_notify (signal)");
        Ok(())
    }

    /// Removes this process's notification registration, if it has one (`mq_notify(fd,
    /// NULL)`). A [`Notification`] then reports [`NotifyEvent::Removed`].
    ///
    /// # References
    /// - [`mq_notify(3)`](https://man7.org/linux/man-pages/man3/mq_notify.3.html)
    #[doc(alias = "mq_notify")]
    pub fn cancel_notify(&self) -> Result<()> {
        sys::mq_notify_cancel(self.as_fd())
            .map_err(|errno| self.fail(notify_error(errno), "mq_notify"))
    }
}

fn notify_error(errno: Errno) -> Error {
    if errno == Errno::BUSY {
        Error::with_note(
            ErrorKind::AlreadyExists,
            "a process is registered for notification on this queue already (one at a time)",
        )
        .with_source(std::io::Error::from_raw_os_error(errno.raw_os_error()))
    } else {
        not_a_queue_error(errno)
    }
}

/// What a [`Notification`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    /// A message arrived on the empty queue (`NOTIFY_WOKENUP`). The registration has ended.
    Arrived,
    /// The registration was removed before anything arrived (`NOTIFY_REMOVED`): this process
    /// cancelled it or closed a descriptor of the queue.
    Removed,
}

const NOTIFY_WOKENUP: u8 = 1;
const NOTIFY_REMOVED: u8 = 2;

/// The cookie the kernel echoes back: a marker, this process's id and a counter, so a
/// notification can be matched to its registration.
#[derive(Clone, Copy)]
struct Cookie {
    bytes: [u8; sys::NOTIFY_COOKIE_LEN],
}

impl Cookie {
    const MAGIC: &'static [u8; 8] = b"ipc-mq\0\x01";

    fn next() -> Cookie {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut bytes = [0; sys::NOTIFY_COOKIE_LEN];
        bytes[..8].copy_from_slice(Cookie::MAGIC);
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        bytes[12..20].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        Cookie { bytes }
    }

    /// Whether `got` is this cookie as the kernel returns it (the last byte is the event).
    fn matches(&self, got: &[u8]) -> bool {
        got.len() == sys::NOTIFY_COOKIE_LEN && got[..got.len() - 1] == self.bytes[..got.len() - 1]
    }
}

/// A pending `mq_notify` registration, as a descriptor that becomes readable when it fires
/// ([`Queue::notify`]).
///
/// Poll it ([`AsFd`]) alongside other descriptors, or wait on it here. After it fired, every
/// wait returns the same [`NotifyEvent`] at once.
///
/// ```
/// use ipc_mq::posix::{NotifyEvent, Queue};
///
/// let name = format!("/doc-notify-{}", std::process::id());
/// let q = Queue::create(&*name, 4, 32)?;
/// let _unlink = q.remove_guard()?;
/// let n = q.notify()?;
/// assert_eq!(n.try_wait().unwrap_err().kind(), ipc_mq::ErrorKind::WouldBlock);
/// q.send_with_priority(b"wake up", 0)?; // any process could send this
/// assert_eq!(n.wait()?, NotifyEvent::Arrived);
/// # Ok::<(), ipc_mq::Error>(())
/// ```
pub struct Notification {
    sock: OwnedFd,
    cookie: Cookie,
    queue: Arc<str>,
    /// 0 until an event arrived, then its code.
    event: AtomicU8,
}

impl fmt::Debug for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notification")
            .field("queue", &self.queue)
            .field("fd", &self.sock.as_raw_fd())
            .field("event", &self.event())
            .finish()
    }
}

impl Notification {
    /// Waits until the notification fires or is removed.
    pub fn wait(&self) -> Result<NotifyEvent> {
        self.wait_deadline(Deadline::Never)
    }

    /// The event, if it has happened; else [`ErrorKind::WouldBlock`].
    pub fn try_wait(&self) -> Result<NotifyEvent> {
        self.wait_deadline(Deadline::Now)
    }

    /// Waits at most `timeout` for the event.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<NotifyEvent> {
        self.wait_deadline(Deadline::after(timeout))
    }

    /// Waits until `deadline` for the event (`poll(2)` and `recv(2)` on the netlink socket;
    /// the deadline is kept on the monotonic clock).
    ///
    /// # Errors
    /// [`ErrorKind::WouldBlock`] for [`Deadline::Now`] and [`ErrorKind::TimedOut`] at the
    /// deadline, if nothing happened.
    ///
    /// # References
    /// - [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html),
    ///   [`recv(2)`](https://man7.org/linux/man-pages/man2/recv.2.html)
    pub fn wait_deadline(&self, deadline: Deadline) -> Result<NotifyEvent> {
        use rustix::net::{RecvFlags, recv};
        if let Some(ev) = self.event() {
            return Ok(ev);
        }
        let fail = |e: Error| {
            let e = e.in_op("wait for mq_notify").on_shared(&self.queue);
            if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                tracing::debug!(error = %e, "notification");
            }
            e
        };
        let mut buf = [0u8; 2 * sys::NOTIFY_COOKIE_LEN];
        loop {
            match recv(&self.sock, &mut buf[..], RecvFlags::DONTWAIT) {
                Ok((n, _)) if self.cookie.matches(&buf[..n]) => {
                    let code = buf[n - 1];
                    let ev = match code {
                        NOTIFY_WOKENUP => NotifyEvent::Arrived,
                        NOTIFY_REMOVED => NotifyEvent::Removed,
                        other => {
                            return Err(fail(Error::corrupted(format!(
                                "notification code {other}, expected 1 or 2"
                            ))));
                        }
                    };
                    self.event.store(code, Ordering::Release);
                    return Ok(ev);
                }
                // Not our cookie: nothing else should reach this unbound socket; skip it.
                Ok(_) => {}
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    if deadline == Deadline::Now {
                        return Err(fail(Error::would_block(Blocked::Empty)));
                    }
                    match wait(self.sock.as_fd(), Interest::Readable, deadline) {
                        Ok(true) => {}
                        Ok(false) => return Err(fail(deadline.expired_error(Blocked::Empty))),
                        Err(e) => return Err(fail(Error::from(e))),
                    }
                }
                Err(e) => return Err(fail(Error::from(e))),
            }
        }
    }

    /// The event, if it has been received.
    fn event(&self) -> Option<NotifyEvent> {
        match self.event.load(Ordering::Acquire) {
            NOTIFY_WOKENUP => Some(NotifyEvent::Arrived),
            NOTIFY_REMOVED => Some(NotifyEvent::Removed),
            _ => None,
        }
    }
}

impl AsFd for Notification {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl AsRawFd for Notification {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_matches_its_echo_only() {
        let c = Cookie::next();
        let mut echo = c.bytes;
        echo[sys::NOTIFY_COOKIE_LEN - 1] = NOTIFY_WOKENUP;
        assert!(c.matches(&echo));
        assert!(!Cookie::next().matches(&echo));
        assert!(!c.matches(&echo[..10]));
    }
}

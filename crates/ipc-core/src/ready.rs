//! Readiness: the one descriptor every message endpoint offers to a poll loop or an async
//! runtime, and the arm/disarm hooks of endpoints whose descriptor is a doorbell.

use std::os::fd::BorrowedFd;

use crate::Result;
use crate::fd::Interest;

/// A message endpoint that a poll loop (`poll`, `epoll`) or an async runtime can wait on.
///
/// The contract, the same for every mechanism:
///
/// 1. Try the operation without waiting (`try_send`, `try_recv`, or a zero-copy `try_` form).
///    Only [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock) means "wait".
/// 2. Call [`arm`](Readiness::arm). If it returns `true`, the endpoint may be ready already:
///    go back to 1 without waiting.
/// 3. Wait until [`readiness_fd`](Readiness::readiness_fd) reports
///    [`recv_interest`](Readiness::recv_interest) (to receive) or
///    [`send_interest`](Readiness::send_interest) (to send), then call
///    [`disarm`](Readiness::disarm) (also when giving up the wait) and go back to 1.
///
/// A readiness report is a hint: the next try may still find nothing (another reader took
/// the message, a frame is only half there), and then the loop simply goes round again. Peer
/// death and close make the descriptor ready, so step 1 returns
/// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) exactly as the blocking forms do.
///
/// What the descriptor is, per mechanism:
///
/// | endpoint | descriptor | receive | send | `arm` |
/// |---|---|---|---|---|
/// | pipe and FIFO ends ([`FrameReceiver`](crate::stream::FrameReceiver), [`FrameSender`](crate::stream::FrameSender)) | the pipe itself | readable | writable | nothing |
/// | POSIX message queue | the queue descriptor | readable | writable | nothing |
/// | shared-memory channel, publish-subscribe, many-to-one | an eventfd doorbell | readable | readable | raises the end's sleeping flag (a subscriber: the sleepers count) |
/// | sockets (`ipc_socket::Seqpacket`, `Stream`) | the socket | readable | writable | nothing |
///
/// System V message queues have no descriptor and do not implement this trait.
pub trait Readiness {
    /// The descriptor to wait on. Endpoints that need one made for them (the shm channel's
    /// doorbell) make it at the first call, hence `&mut self`; it then stays the same for the
    /// endpoint's life, so it can be registered once with `epoll` or a runtime.
    fn readiness_fd(&mut self) -> Result<BorrowedFd<'_>>;

    /// The readiness of [`readiness_fd`](Readiness::readiness_fd) that means "a receive may
    /// succeed now". Readable unless the endpoint says otherwise.
    fn recv_interest(&self) -> Interest {
        Interest::Readable
    }

    /// The readiness of [`readiness_fd`](Readiness::readiness_fd) that means "a send may
    /// succeed now". Writable unless the endpoint says otherwise (the shm channel's doorbell
    /// is an eventfd, read ready when it rings, for both ends).
    fn send_interest(&self) -> Interest {
        Interest::Writable
    }

    /// Prepares to wait, after a try found nothing to do. Returns `true` when the endpoint may
    /// have become ready in between (try again instead of waiting).
    ///
    /// Descriptor-backed endpoints (pipes, FIFOs, POSIX queues) do nothing here. The shm
    /// channel raises its sleeping flag, so that the peer rings the doorbell at its next
    /// message, and checks once more; while the flag is down (both sides busy) the peer makes
    /// no system call per message.
    fn arm(&mut self) -> Result<bool> {
        Ok(false)
    }

    /// Ends a wait begun by [`arm`](Readiness::arm): after the descriptor reported ready, or
    /// when the waiter gave up (a cancelled future, a poll timeout). The shm channel drains
    /// its doorbell and lowers its sleeping flag. Takes `&self` so that a guard holding a
    /// shared reference can call it when a future is dropped.
    fn disarm(&self) {}

    /// Ends a wait like [`disarm`](Readiness::disarm), for a waiter that watches the
    /// descriptor edge-triggered (tokio's reactor; `epoll` with `EPOLLET`): such a waiter is
    /// woken by new readiness only, so the endpoint may leave the descriptor's present
    /// readiness as it is and save the call that would clear it (the shm doorbell's eventfd
    /// is not drained: one `read` fewer per wait). A level-triggered loop (`poll`, plain
    /// `epoll`) must call `disarm`, or the descriptor stays ready. The default is `disarm`.
    fn disarm_edge_triggered(&self) {
        self.disarm()
    }

    /// Writes, without waiting, the rest of a message whose first bytes are already out (a
    /// stream-framed pipe or FIFO send cut short by a full pipe); `Ok(())` when none is left,
    /// [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock) while some still is. Endpoints
    /// that send all or nothing have none and return `Ok(())`.
    fn try_flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Forwards [`Readiness`] through a pointer to an endpoint.
macro_rules! forward {
    ($($ptr:ty),*) => {$(
        impl<T: Readiness + ?Sized> Readiness for $ptr {
            fn readiness_fd(&mut self) -> Result<BorrowedFd<'_>> {
                (**self).readiness_fd()
            }
            fn recv_interest(&self) -> Interest {
                (**self).recv_interest()
            }
            fn send_interest(&self) -> Interest {
                (**self).send_interest()
            }
            fn arm(&mut self) -> Result<bool> {
                (**self).arm()
            }
            fn disarm(&self) {
                (**self).disarm()
            }
            fn disarm_edge_triggered(&self) {
                (**self).disarm_edge_triggered()
            }
            fn try_flush(&mut self) -> Result<()> {
                (**self).try_flush()
            }
        }
    )*};
}

forward!(&mut T, Box<T>);

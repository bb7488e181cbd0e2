//! The message endpoint traits every mechanism implements: [`MessageSender`] and
//! [`MessageReceiver`], each with one required method taking a [`Deadline`].

use std::time::Duration;

use crate::{Deadline, Result};

/// Sends whole messages.
///
/// Implementors provide [`send_deadline`](MessageSender::send_deadline); the blocking, `try_`
/// and `_timeout` forms are built on it. A message is delivered whole or not at all: a call that
/// fails has sent nothing, unless its documentation says otherwise.
///
/// Errors every implementation reports the same way:
/// - [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock) from [`try_send`](MessageSender::try_send) when there is no room;
/// - [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut) when the deadline passes;
/// - [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) when no receiver is left;
/// - [`ErrorKind::MessageTooLarge`](crate::ErrorKind::MessageTooLarge) when `msg` exceeds
///   [`max_message_size`](MessageSender::max_message_size); nothing already queued is affected.
pub trait MessageSender {
    /// Sends `msg`, waiting for room until `deadline`.
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()>;

    /// The largest message this endpoint accepts, in bytes.
    fn max_message_size(&self) -> usize;

    /// Sends `msg`, waiting as long as it takes for room.
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_deadline(msg, Deadline::Never)
    }

    /// Sends `msg` if there is room now; otherwise fails with `WouldBlock`.
    fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_deadline(msg, Deadline::Now)
    }

    /// Sends `msg`, waiting at most `timeout` for room.
    fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_deadline(msg, Deadline::after(timeout))
    }
}

/// Receives whole messages into a caller-owned buffer, so the hot path does not allocate.
///
/// Implementors provide [`recv_deadline`](MessageReceiver::recv_deadline); the blocking, `try_`
/// and `_timeout` forms are built on it. Each call returns exactly one message and its length.
///
/// Errors every implementation reports the same way:
/// - [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock) from [`try_recv`](MessageReceiver::try_recv) when nothing is queued;
/// - [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut) when the deadline passes;
/// - [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) once every sender is gone and
///   everything they queued has been received;
/// - [`ErrorKind::MessageTooLarge`](crate::ErrorKind::MessageTooLarge) when the next message does
///   not fit in `buf`: the message stays queued, and [`Error::message_size`](crate::Error::message_size)
///   says how large a buffer it needs. A message above the endpoint's own maximum
///   ([`max_message_size`](MessageReceiver::max_message_size); a peer allowed larger ones)
///   cannot be kept: it is dropped, the error's size is above that maximum, and the next
///   receive returns the message after it (an endpoint that cannot tell where such a message
///   ends says [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted) instead).
pub trait MessageReceiver {
    /// Receives the next message into `buf`, waiting for one until `deadline`; returns its length.
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize>;

    /// The largest message this endpoint can deliver: a buffer of this size always suffices.
    fn max_message_size(&self) -> usize;

    /// Receives the next message, waiting as long as it takes.
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.recv_deadline(buf, Deadline::Never)
    }

    /// Receives the next message if one is queued now; otherwise fails with `WouldBlock`.
    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.recv_deadline(buf, Deadline::Now)
    }

    /// Receives the next message, waiting at most `timeout`.
    fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.recv_deadline(buf, Deadline::after(timeout))
    }
}

impl<T: MessageSender + ?Sized> MessageSender for &mut T {
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        (**self).send_deadline(msg, deadline)
    }
    fn max_message_size(&self) -> usize {
        (**self).max_message_size()
    }
}

impl<T: MessageReceiver + ?Sized> MessageReceiver for &mut T {
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        (**self).recv_deadline(buf, deadline)
    }
    fn max_message_size(&self) -> usize {
        (**self).max_message_size()
    }
}

impl<T: MessageSender + ?Sized> MessageSender for Box<T> {
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        (**self).send_deadline(msg, deadline)
    }
    fn max_message_size(&self) -> usize {
        (**self).max_message_size()
    }
}

impl<T: MessageReceiver + ?Sized> MessageReceiver for Box<T> {
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        (**self).recv_deadline(buf, deadline)
    }
    fn max_message_size(&self) -> usize {
        (**self).max_message_size()
    }
}

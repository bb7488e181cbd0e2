//! What a System V receive selects and returns: [`Selector`] (`msgtyp` and `MSG_EXCEPT`),
//! [`Received`], [`Message`], and [`MsgBuf`] (a message in the kernel's layout, sent and
//! received without a copy in user space).

// `c_long`, `time_t`, `msgqnum_t`, `msglen_t` and the `mq_attr` fields are 64-bit here but not
// on every Linux ABI: the casts that look redundant keep the code portable.
#![allow(clippy::unnecessary_cast, clippy::useless_conversion)]

use std::cell::RefCell;
use std::fmt;

use ipc_core::Result;
use libc::c_long;

#[cfg(doc)]
use super::Queue;
use super::{DEFAULT_MSGMAX, message_type};
use crate::sys::RawMsg;

/// Which message a receive takes (`msgtyp` and `MSG_EXCEPT` of `msgrcv(2)`). Within the
/// messages a selector admits, the oldest is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Selector {
    /// The first message in the queue, of any type (`msgtyp == 0`).
    #[default]
    Any,
    /// The first message of exactly this type (`msgtyp > 0`).
    Type(i64),
    /// The first message of the lowest type that is at most this value (`msgtyp < 0`, here
    /// given as its absolute value): a priority queue where lower types go first.
    AtMost(i64),
    /// The first message of any type except this one (`msgtyp > 0` with `MSG_EXCEPT`).
    Except(i64),
}

impl Selector {
    /// `(msgtyp, flags)` for `msgrcv`.
    pub(super) fn raw(self) -> Result<(c_long, i32)> {
        let t = match self {
            Selector::Any => return Ok((0, 0)),
            Selector::Type(t) | Selector::AtMost(t) | Selector::Except(t) => t,
        };
        let t = message_type(t)?;
        Ok(match self {
            Selector::AtMost(_) => (-t, 0),
            Selector::Except(_) => (t, libc::MSG_EXCEPT),
            _ => (t, 0),
        })
    }
}

/// What a receive got: the message length and its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Received {
    /// The message's length: it is in the first `len` bytes of the buffer.
    pub len: usize,
    /// Its type.
    pub mtype: i64,
}

/// A received message in its own allocation ([`Queue::recv_message`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    /// The type.
    pub mtype: i64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A message buffer in the layout `msgsnd` and `msgrcv` use (a `long` type, then the text), so
/// sending and receiving need no copy in user space ([`Queue::send_buf`],
/// [`Queue::recv_buf`]).
///
/// ```
/// use ipc_mq::Deadline;
/// use ipc_mq::sysv::{MsgBuf, Queue, Selector};
///
/// let q = Queue::private()?;
/// let _remove = q.remove_guard();
/// let mut m = MsgBuf::with_capacity(64);
/// m.set_mtype(7);
/// m.set_text(b"no extra copy");
/// q.send_buf(&m, Deadline::Never)?;
/// let mut r = MsgBuf::with_capacity(64);
/// q.recv_buf(&mut r, Selector::Any, Deadline::Never)?;
/// assert_eq!((r.mtype(), r.text()), (7, &b"no extra copy"[..]));
/// # Ok::<(), ipc_mq::Error>(())
/// ```
#[derive(Clone)]
pub struct MsgBuf {
    pub(super) raw: RawMsg,
    pub(super) len: usize,
}

impl fmt::Debug for MsgBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsgBuf")
            .field("mtype", &self.mtype())
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl MsgBuf {
    /// An empty message of type 1 with room for `capacity` bytes of text.
    pub fn with_capacity(capacity: usize) -> MsgBuf {
        let mut raw = RawMsg::with_text_capacity(capacity);
        raw.set_mtype(1);
        MsgBuf { raw, len: 0 }
    }

    /// The type.
    pub fn mtype(&self) -> i64 {
        i64::from(self.raw.mtype())
    }

    /// Sets the type (checked when sending: above zero).
    pub fn set_mtype(&mut self, mtype: i64) {
        self.raw.set_mtype(mtype as c_long);
    }

    /// The text.
    pub fn text(&self) -> &[u8] {
        &self.raw.text()[..self.len]
    }

    /// Replaces the text with `text`, growing the buffer if needed.
    pub fn set_text(&mut self, text: &[u8]) {
        self.text_mut(text.len()).copy_from_slice(text);
    }

    /// Sets the text length to `len` (growing the buffer if needed; new bytes are zero or
    /// left over) and returns the text to fill in place.
    pub fn text_mut(&mut self, len: usize) -> &mut [u8] {
        self.raw.reserve_text(len);
        self.len = len;
        &mut self.raw.text_mut()[..len]
    }

    /// How many bytes of text fit without growing; also how much a receive accepts.
    pub fn capacity(&self) -> usize {
        self.raw.text_capacity()
    }

    /// Grows the buffer to hold at least `capacity` bytes of text.
    pub fn reserve(&mut self, capacity: usize) {
        self.raw.reserve_text(capacity);
    }
}

thread_local! {
    /// The per-thread buffer the `&[u8]` methods copy through.
    pub(super) static SCRATCH: RefCell<RawMsg> = RefCell::new(RawMsg::with_text_capacity(DEFAULT_MSGMAX));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_core::ErrorKind;

    #[test]
    fn selectors_map_to_msgtyp_and_flags() {
        assert_eq!(Selector::Any.raw().unwrap(), (0, 0));
        assert_eq!(Selector::Type(3).raw().unwrap(), (3, 0));
        assert_eq!(Selector::AtMost(3).raw().unwrap(), (-3, 0));
        assert_eq!(Selector::Except(3).raw().unwrap(), (3, libc::MSG_EXCEPT));
        for bad in [Selector::Type(0), Selector::AtMost(-1), Selector::Except(0)] {
            assert_eq!(bad.raw().unwrap_err().kind(), ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn msgbuf_keeps_type_and_text() {
        let mut m = MsgBuf::with_capacity(4);
        assert_eq!(m.mtype(), 1);
        m.set_text(b"longer than four");
        m.set_mtype(9);
        assert_eq!((m.mtype(), m.text()), (9, &b"longer than four"[..]));
        assert!(m.capacity() >= 16);
    }
}

//! Typed messages over *any* message endpoint (feature `serde`): [`TypedSender`] encodes a
//! value with [postcard](https://docs.rs/postcard) and sends it as one message;
//! [`TypedReceiver`] receives one message and decodes it.
//!
//! # Why postcard
//!
//! Compact (varint integers, no field names, no framing of its own: the endpoint keeps the
//! boundaries), maintained, `no_std`-capable with a documented, stable wire format (1.0), and
//! it decodes from a byte slice without reading past it.
//!
//! # No type on the wire
//!
//! postcard writes values, not types: a message decodes as any type whose encoding those bytes
//! happen to fit, so a receiver of the wrong type can get `Ok` with nonsense where it would
//! hope for [`ErrorKind::Corrupted`]. Both ends must agree on `T`. Where versions can differ,
//! send an enum (its tag is checked against the variants) or a version field first.
//!
//! # Byte buffers
//!
//! serde sends a `Vec<u8>` or `&[u8]` field as a sequence, one element at a time: a 64 KiB
//! buffer took ~20 times a plain seqpacket round trip that way, against under 2 times as one
//! byte string (the benchmark's `typed-seqpacket` row, one noisy run). Mark byte-buffer fields
//! `#[serde(with = "serde_bytes")]` (the `serde_bytes` crate; or send `serde_bytes::Bytes` /
//! receive `serde_bytes::ByteBuf`) so they are written as one byte string,
//! or send a large blob as a plain message beside the typed header. The sender's encoding
//! buffer is reused; a receiver allocates what the decoded value owns, or nothing with
//! [`TypedReceiver::recv_borrowed`], whose value borrows its strings and byte buffers from the
//! received message (the benchmark's row receives `&serde_bytes::Bytes` that way: at 1 MiB,
//! owned receives took ~2.8-5.4 times the raw seqpacket loop's time per message on one core,
//! borrowed ones ~1.8-2.2, the rest being the encode copy and the copy out; rough, loaded
//! machine).
//!
//! # Hostile input
//!
//! A receiver trusts nothing it receives. The size limit (the receive buffer, at most
//! [`TypedReceiver::limit`] bytes) is enforced by the endpoint before a byte is decoded: a
//! larger message is [`ErrorKind::MessageTooLarge`] and left queued. A peer that breaks the
//! endpoint's own maximum gets the endpoint's answer, never a decode: `MessageTooLarge`, with
//! that message dropped (a seqpacket record by the kernel, a stream's frame as it arrives) and
//! the next one following.
//! Malformed bytes (a bad varint, an enum tag out of range, invalid UTF-8, a length running
//! past the end, trailing bytes) are [`ErrorKind::Corrupted`]; decoding never panics.
//! Allocations are bounded: a string or byte buffer by the bytes actually present, and a
//! sequence announcing more elements than follow reserves at most 1 MiB up front (serde's
//! cautious size hint) and fails when the bytes run out. Fuzzed by the proptest in `tests/typed.rs`.
//!
//!
//! Time is bounded too. Postcard decodes the count of elements a sequence (or map) announces
//! one element at a time, and elements that take no bytes at all (`()`, a unit struct,
//! `[T; 0]`, a struct whose fields are all skipped) never run out of bytes: a count of 2^64
//! in a 10-byte message would keep the receiving thread busy for good. So one message decodes
//! into at most one element per byte plus [`ZERO_SIZED_ELEMENTS`] (65,536), counted over all
//! its sequences and maps; past that it is [`ErrorKind::Corrupted`]. Elements that take a
//! byte or more never reach the cap.

use std::fmt;
use std::marker::PhantomData;

use ipc_core::{Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Result};
use serde::de::DeserializeOwned;

use crate::budget::Budget;
use serde::{Deserialize, Serialize};

/// Sends values of type `T` over the message endpoint `S`, one message each. `T` may be
/// unsized (`TypedSender<[u8], _>`, `TypedSender<str, _>`).
pub struct TypedSender<T: ?Sized, S> {
    inner: S,
    buf: Vec<u8>,
    _t: PhantomData<fn(&T)>,
}

impl<T: ?Sized, S: fmt::Debug> fmt::Debug for TypedSender<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedSender")
            .field("inner", &self.inner)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T: Serialize + ?Sized, S: MessageSender> TypedSender<T, S> {
    /// Typed sends over `inner`.
    pub fn new(inner: S) -> TypedSender<T, S> {
        TypedSender {
            inner,
            buf: Vec::new(),
            _t: PhantomData,
        }
    }

    /// Encodes `value` and sends it, waiting until `deadline`. The encoding buffer is reused:
    /// after warm-up, a send allocates nothing.
    ///
    /// # Errors
    /// [`ErrorKind::MessageTooLarge`] when the encoding exceeds the endpoint's largest
    /// message; [`ErrorKind::InvalidInput`] when `T`'s `Serialize` fails (postcard cannot
    /// encode sequences of unknown length, for example); the endpoint's errors otherwise.
    pub fn send_deadline(&mut self, value: &T, deadline: Deadline) -> Result<()> {
        self.buf.clear();
        let buf = std::mem::take(&mut self.buf);
        self.buf = postcard::to_extend(value, buf).map_err(|e| {
            Error::with_note(ErrorKind::InvalidInput, format!("cannot encode: {e}")).in_op("encode")
        })?;
        self.inner.send_deadline(&self.buf, deadline)
    }

    /// [`send_deadline`](TypedSender::send_deadline) without a deadline.
    pub fn send(&mut self, value: &T) -> Result<()> {
        self.send_deadline(value, Deadline::Never)
    }

    /// The endpoint.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The endpoint back.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Receives values of type `T` from the message endpoint `R`, one message each.
pub struct TypedReceiver<T, R> {
    inner: R,
    buf: Vec<u8>,
    _t: PhantomData<fn() -> T>,
}

impl<T, R: fmt::Debug> fmt::Debug for TypedReceiver<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedReceiver")
            .field("inner", &self.inner)
            .field("limit", &self.buf.len())
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T: DeserializeOwned, R: MessageReceiver> TypedReceiver<T, R> {
    /// Typed receives from `inner`, accepting messages up to the endpoint's largest message
    /// (capped at 16 MiB: use [`with_limit`](TypedReceiver::with_limit) to choose).
    pub fn new(inner: R) -> TypedReceiver<T, R> {
        let limit = inner.max_message_size().min(16 << 20);
        TypedReceiver::with_limit(inner, limit)
    }

    /// Typed receives accepting encoded messages of at most `limit` bytes (the buffer is
    /// allocated once, now).
    pub fn with_limit(inner: R, limit: usize) -> TypedReceiver<T, R> {
        TypedReceiver {
            inner,
            buf: vec![0; limit],
            _t: PhantomData,
        }
    }

    /// The largest encoded message accepted.
    pub fn limit(&self) -> usize {
        self.buf.len()
    }

    /// Receives one message, waiting until `deadline`, and decodes it.
    ///
    /// # Errors
    /// [`ErrorKind::MessageTooLarge`] for a message above the limit (checked before decoding;
    /// it stays queued); [`ErrorKind::Corrupted`] for bytes that are not a `T` (the message is
    /// consumed); the endpoint's errors otherwise.
    pub fn recv_deadline(&mut self, deadline: Deadline) -> Result<T> {
        let n = self.inner.recv_deadline(&mut self.buf, deadline)?;
        decode(&self.buf[..n])
    }

    /// [`recv_deadline`](TypedReceiver::recv_deadline) without a deadline.
    pub fn recv(&mut self) -> Result<T> {
        self.recv_deadline(Deadline::Never)
    }

    /// The endpoint.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The endpoint back.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<T, R: MessageReceiver> TypedReceiver<T, R> {
    /// Receives one message, waiting until `deadline`, and decodes a value of `V` that may
    /// *borrow* from it: `&str`, `&[u8]` (as `&serde_bytes::Bytes`, or a `&'a [u8]` field
    /// marked `#[serde(borrow, with = "serde_bytes")]`), or a struct of them: `T`'s borrowing
    /// form. Nothing is allocated for the borrowed parts, and nothing copied out of the
    /// received message; the value lives until the next receive on this receiver.
    ///
    /// # Errors
    /// As [`recv_deadline`](TypedReceiver::recv_deadline): [`ErrorKind::MessageTooLarge`]
    /// before decoding (the message stays queued), [`ErrorKind::Corrupted`] for bytes that are
    /// not a `V` (the message is consumed), the endpoint's errors otherwise.
    pub fn recv_borrowed<'a, V: Deserialize<'a>>(&'a mut self, deadline: Deadline) -> Result<V> {
        let n = self.inner.recv_deadline(&mut self.buf, deadline)?;
        decode_borrowed(&self.buf[..n])
    }
}

/// Decodes one `T` that must fill `bytes` exactly.
///
/// # Errors
/// [`ErrorKind::Corrupted`] for malformed bytes or bytes left over.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode_borrowed(bytes)
}

/// The elements (sequence items, map entries) a message may decode into beyond one per byte:
/// room for zero-sized elements, which take no bytes (see "Hostile input" above).
pub const ZERO_SIZED_ELEMENTS: u64 = 1 << 16;

/// Decodes one `T` that must fill `bytes` exactly and may borrow from them (`&str`,
/// `&serde_bytes::Bytes`, ...).
///
/// # Errors
/// [`ErrorKind::Corrupted`] for malformed bytes, bytes left over, or more elements than one
/// per byte plus [`ZERO_SIZED_ELEMENTS`].
pub fn decode_borrowed<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    let budget = Budget::new(bytes.len() as u64 + ZERO_SIZED_ELEMENTS);
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let decoded = T::deserialize(budget.over(&mut de)).and_then(|v| Ok((v, de.finalize()?)));
    match decoded {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(Error::corrupted(format!(
            "{} bytes left over after a {}",
            rest.len(),
            std::any::type_name::<T>()
        ))
        .in_op("decode")),
        Err(_) if budget.ran_out() => Err(Error::corrupted(format!(
            "not a {}: more elements than one per byte of the message ({}) plus {} \
             zero-sized ones",
            std::any::type_name::<T>(),
            bytes.len(),
            ZERO_SIZED_ELEMENTS
        ))
        .in_op("decode")),
        Err(e) => Err(
            Error::corrupted(format!("not a {}: {e}", std::any::type_name::<T>())).in_op("decode"),
        ),
    }
}

/// Encodes `value` as [`TypedSender`] does.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] when `T`'s `Serialize` fails.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| {
        Error::with_note(ErrorKind::InvalidInput, format!("cannot encode: {e}")).in_op("encode")
    })
}

//! Message endpoints over byte-stream file descriptors (pipes, FIFOs): [`FrameSender`] and
//! [`FrameReceiver`] carry length-prefixed frames and implement the core traits with deadlines.
//!
//! # How waiting works
//!
//! The descriptor is left in the mode it came in. On a blocking descriptor a call without a
//! deadline is the plain blocking `read`/`writev` (the same syscall a hand-written loop makes);
//! a call with a deadline uses per-call non-blocking I/O (`preadv2`/`pwritev2` with
//! `RWF_NOWAIT`) and `poll(2)` for the time left, so the `O_NONBLOCK` flag, which the open file
//! description shares with every process holding it, is not touched. On kernels that do not
//! support `RWF_NOWAIT` on pipes, the endpoint sets `O_NONBLOCK` once and polls. A descriptor
//! that is already non-blocking is driven with `poll`.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use rustix::io::Errno;

use crate::fd::{Interest, SigpipeGuard, Stop, read_buf, read_iov, retry};
use crate::frame::{FRAME_HEADER_LEN, FrameDecoder, MAX_ATOMIC_PAYLOAD, PIPE_BUF, encode_header};
use crate::{Blocked, Deadline, Detail, Error, ErrorKind, MessageReceiver, MessageSender, Result};

/// The default largest message of a streaming (non-atomic) frame endpoint: 16 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 16 << 20;

/// The payload size from which a receive reads the rest of a message straight into the
/// caller's buffer rather than through the decoder's (one copy fewer; smaller messages are
/// read several at a time into the decoder, fewer system calls).
const DIRECT_READ_MIN: usize = PIPE_BUF;

/// How many bytes a read asks for while a receiver reads ahead (see [`ReadAhead`]), past the
/// rest of a large message when it reads that: 64 KiB, a default pipe's whole capacity, so
/// one read empties the pipe and the writer refills it in one burst (see [`FrameReceiver`]).
const READ_AHEAD: usize = 64 << 10;

/// Every this many messages an adaptive receiver counts its thread's context switches (one
/// `getrusage`) and reads ahead for the next ones if there were at least [`AHEAD_SWITCHES`]
/// (see [`ReadAhead::Adaptive`]).
const PROBE_EVERY: u32 = 64;

/// Context switches in [`PROBE_EVERY`] messages from which an adaptive receiver reads ahead.
const AHEAD_SWITCHES: i64 = 4;

/// The payload size from which, after a message that large, a blocking or timed receive
/// reads the next frame's prefix into its own buffer and the payload behind it straight into
/// the caller's, in one `readv` (see [`FrameReceiver`]), reading nothing ahead.
const PREFIX_FIRST_MIN: usize = 32 << 10;

/// How long dropping a [`FrameSender`] waits, at most, to finish a message in progress
/// (see [`FrameSender::set_linger`]): 1 second.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(1);

/// How a [`FrameSender`] bounds and writes its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameMode {
    /// Every frame is at most `PIPE_BUF` bytes and goes out in one `write`, which the kernel
    /// makes atomic: safe with several writers on one pipe or FIFO. Messages above
    /// [`MAX_ATOMIC_PAYLOAD`] (4092 bytes) are refused with
    /// [`ErrorKind::MessageTooLarge`].
    Atomic,
    /// Frames of any size up to `max_message`; frames above `PIPE_BUF` may interleave with
    /// other writers' bytes, so use this with one writer only.
    Stream {
        /// The largest message accepted.
        max_message: usize,
    },
}

impl FrameMode {
    /// The largest payload this mode accepts.
    pub fn max_message(self) -> usize {
        match self {
            FrameMode::Atomic => MAX_ATOMIC_PAYLOAD,
            FrameMode::Stream { max_message } => max_message,
        }
    }
}

impl Default for FrameMode {
    fn default() -> FrameMode {
        FrameMode::Stream {
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }
}

/// Whether a [`FrameReceiver`] reads more than the message it is after (see
/// [`FrameReceiver::set_read_ahead`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadAhead {
    /// Decided by what the receiving thread sees: it reads ahead while it keeps losing the
    /// CPU (at least 4 context switches in 64 messages: it and the writer take turns on one
    /// core, and one read that empties the pipe lets the writer refill it in one burst), and
    /// reads one frame at a time otherwise (the writer runs on another core: no copy out of
    /// the receiver's buffer). Counted with one `getrusage(2)` every 64 messages. Starts one
    /// frame at a time.
    #[default]
    Adaptive,
    /// Every read asks for up to 64 KiB, whatever the message size.
    Always,
    /// Every read asks for one frame, not more: the rest of the frame whose length prefix is
    /// in, else a frame the size of the last message's (the maximum's before the first), so
    /// a stream of like-sized messages takes one read each, as a raw loop does, whatever the
    /// maximum; a message larger than the last takes a second read for its rest. After the
    /// rest of a large message, the next length prefix only.
    Never,
}

/// Moved to [`crate::fd`], where the one retry loop lives; re-exported here for the old path.
pub use crate::fd::{Nowait, write_iov};

/// Sends length-prefixed messages over a byte-stream descriptor.
///
/// # What a send's result means
///
/// - `Ok(())`: the whole message is in the kernel.
/// - [`ErrorKind::Incomplete`]: the deadline passed after the first bytes of the message
///   went out (only a frame above `PIPE_BUF` bytes, or one cut short on a socket, can be
///   partly written). The rest ([`pending`](FrameSender::pending) bytes, named in the note) is
///   kept here: the message is in progress, neither lost nor to be sent again. The next send,
///   or [`flush`](FrameSender::flush), writes it first; a send whose deadline passes before
///   that is done fails with [`ErrorKind::TimedOut`] / [`ErrorKind::WouldBlock`] and sent
///   nothing of its own message (its note says so).
/// - Any other error: nothing of this message was sent.
///
/// No call waits past its deadline, and dropping the sender waits at most its
/// [linger time](FrameSender::set_linger) for a message in progress. Past that, the rest is
/// abandoned and the descriptor closed: a receiver that sees the stream end in the middle of
/// a message drops the partial message and never delivers it. (It sees that end when this
/// was the last open write end. A frame endpoint in [`FrameMode::Stream`] must be the only
/// writer anyway; a copy of the write end kept elsewhere, a `dup` or a child's, would keep the
/// stream open, and the receiver would read what that copy writes next as the rest of the
/// abandoned message.)
///
/// Writes never raise `SIGPIPE` (see [`SigpipeGuard`]); a reader that is gone is reported as
/// [`ErrorKind::Disconnected`].
#[derive(Debug)]
pub struct FrameSender<F: AsFd> {
    fd: F,
    mode: FrameMode,
    nowait: Nowait,
    sigpipe: SigpipeGuard,
    /// A frame whose deadline passed mid-write (empty when none); `pending_at` bytes of it are
    /// out.
    pending: Vec<u8>,
    pending_at: usize,
    /// Where a small frame is assembled, header and payload, to go out with one `write`.
    small: Vec<u8>,
    /// The object's name, formatted once: errors on the expected path share it, allocating
    /// nothing.
    label: Arc<str>,
    /// How long `drop` waits to finish a message in progress.
    linger: Duration,
}

impl<F: AsFd> FrameSender<F> {
    /// A sender on `fd` framing messages as `mode` says. `label` names the object in errors
    /// (`"pipe"`, a FIFO's path); it is kept as an `Arc<str>`, so the errors of a full pipe or
    /// a passed deadline share it and allocate nothing.
    pub fn new(fd: F, mode: FrameMode, label: impl Into<Arc<str>>) -> Result<FrameSender<F>> {
        let label = label.into();
        let nowait = Nowait::default();
        Ok(FrameSender {
            fd,
            mode,
            nowait,
            sigpipe: SigpipeGuard::detect(),
            pending: Vec::new(),
            pending_at: 0,
            small: Vec::new(),
            label,
            linger: DEFAULT_LINGER,
        })
    }

    /// Bytes of a message in progress still to be written (0 when none is): see
    /// [what a send's result means](FrameSender#what-a-sends-result-means).
    pub fn pending(&self) -> usize {
        self.pending.len() - self.pending_at
    }

    /// How long dropping this sender waits, at most, to write the rest of a message in
    /// progress ([`DEFAULT_LINGER`] unless set). Past it the rest is abandoned; the receiver
    /// drops the partial message when the stream ends. `Duration::ZERO` abandons at once
    /// (after one attempt that does not wait).
    pub fn set_linger(&mut self, linger: Duration) {
        self.linger = linger;
    }

    /// The linger time (see [`set_linger`](FrameSender::set_linger)).
    pub fn linger(&self) -> Duration {
        self.linger
    }

    /// The framing mode.
    pub fn mode(&self) -> FrameMode {
        self.mode
    }

    /// The descriptor.
    pub fn get_ref(&self) -> &F {
        &self.fd
    }

    /// The object name used in errors.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Writes out the rest of a message in progress (an earlier send failed with
    /// [`ErrorKind::Incomplete`]), waiting until `deadline`. Does nothing when none is.
    ///
    /// Errors: [`ErrorKind::Incomplete`] when the deadline passes first (the message is still
    /// in progress, [`pending`](FrameSender::pending) says how much is left);
    /// [`ErrorKind::Disconnected`] when the reader is gone (the rest is dropped).
    pub fn flush(&mut self, deadline: Deadline) -> Result<()> {
        while self.pending_at < self.pending.len() {
            let fd = self.fd.as_fd();
            let rest = &self.pending[self.pending_at..];
            let (sigpipe, nowait) = (self.sigpipe, &self.nowait);
            let r = retry(&[(fd, Interest::Writable)], deadline, || {
                nowait.attempt(fd, deadline, |nowait| {
                    write_iov(sigpipe, fd, &[IoSlice::new(rest)], nowait)
                })
            });
            match r {
                Ok(n) => self.pending_at += n,
                Err(Stop::Expired) => return Err(self.err(self.in_progress(), "flush")),
                Err(Stop::Os(e)) => {
                    // The reader is gone or the descriptor broke: the tail is undeliverable.
                    self.pending.clear();
                    self.pending_at = 0;
                    return Err(self.errno(e, "flush"));
                }
            }
        }
        self.pending.clear();
        self.pending_at = 0;
        Ok(())
    }

    /// The [`ErrorKind::MessageTooLarge`] error of a message of `len` bytes.
    #[cold]
    fn too_large(&self, len: usize) -> Error {
        let what = match self.mode {
            FrameMode::Atomic => "PIPE_BUF minus the 4-byte frame header: atomic multi-writer mode",
            FrameMode::Stream { .. } => "configured maximum message size",
        };
        self.err(
            Error::message_too_large(len, self.mode.max_message(), what),
            "send",
        )
    }

    /// Writes the rest of the message in progress before a new one, waiting until `deadline`.
    #[cold]
    #[inline(never)]
    fn finish_pending(&mut self, deadline: Deadline) -> Result<()> {
        // The earlier message still in progress when the deadline passed: this one was not
        // started, so the send would block (full), as any send on a full stream. The
        // explanation is a static op, so the error keeps its full/empty side and nothing
        // is formatted on this expected path; `pending()` says how much is left.
        self.flush(deadline).map_err(|e| {
            if e.kind() == ErrorKind::Incomplete {
                self.err(
                    deadline.expired_error(Blocked::Full),
                    "send (not sent: an earlier message in progress goes first)",
                )
            } else {
                e
            }
        })
    }

    /// Writes the frame of `msg` of which `written` bytes are out: a frame above `PIPE_BUF`
    /// (header and payload with `writev`), or the rest of a small one, assembled in `small`,
    /// that a first write cut short. Keeps the rest as the message in progress when the
    /// deadline passes after its first bytes.
    #[inline(never)]
    fn write_frame(&mut self, msg: &[u8], mut written: usize, deadline: Deadline) -> Result<()> {
        let header = encode_header(msg.len()).map_err(|e| self.err(e, "send"))?;
        let total = FRAME_HEADER_LEN + msg.len();
        let small = total <= PIPE_BUF;
        while written < total {
            let fd = self.fd.as_fd();
            let sigpipe = self.sigpipe;
            let (h, m) = if small {
                (&self.small[written..total], &[][..])
            } else if written < FRAME_HEADER_LEN {
                (&header[written..], msg)
            } else {
                (&header[..0], &msg[written - FRAME_HEADER_LEN..])
            };
            let both = [IoSlice::new(h), IoSlice::new(m)];
            let iov = if m.is_empty() { &both[..1] } else { &both[..] };
            let nowait = &self.nowait;
            let r = retry(&[(fd, Interest::Writable)], deadline, || {
                nowait.attempt(fd, deadline, |nowait| write_iov(sigpipe, fd, iov, nowait))
            });
            match r {
                Ok(n) => written += n,
                Err(Stop::Expired) => {
                    if written == 0 {
                        return Err(self.err(deadline.expired_error(Blocked::Full), "send"));
                    }
                    // Part of the frame is in the pipe: the rest must follow before any other
                    // frame, or the stream is corrupt. Keep it (the whole frame, to report
                    // the counts), and say so.
                    let mut frame = Vec::with_capacity(total);
                    frame.extend_from_slice(&header);
                    frame.extend_from_slice(msg);
                    self.pending = frame;
                    self.pending_at = written;
                    tracing::debug!(
                        object = %self.label,
                        left = total - written,
                        "deadline passed mid-frame; tail kept for the next send"
                    );
                    return Err(self.err(self.in_progress(), "send"));
                }
                Err(Stop::Os(e)) => return Err(self.errno(e, "send")),
            }
        }
        Ok(())
    }

    /// The [`ErrorKind::Incomplete`] error for the message in progress.
    fn in_progress(&self) -> Error {
        Error::with_note(
            ErrorKind::Incomplete,
            format!(
                "the deadline passed with a message in progress: {} of its {} bytes (frame \
                 header included) are written, {} bytes are still to write; it is not lost \
                 and must not be sent again: the next send or flush writes the rest first, \
                 and dropping the sender abandons it after the linger time",
                self.pending_at,
                self.pending.len(),
                self.pending(),
            ),
        )
    }

    fn err(&self, e: Error, op: &'static str) -> Error {
        e.in_op(op).on_shared(&self.label)
    }

    fn errno(&self, e: Errno, op: &'static str) -> Error {
        Stop::Os(e).into_error(Deadline::Never, Blocked::Full, op, &self.label)
    }
}

impl<F: AsFd> MessageSender for FrameSender<F> {
    #[inline]
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        if msg.len() > self.mode.max_message() {
            return Err(self.too_large(msg.len()));
        }
        if !self.pending.is_empty() {
            self.finish_pending(deadline)?;
        }
        if msg.len() > MAX_ATOMIC_PAYLOAD {
            return self.write_frame(msg, 0, deadline);
        }
        // A frame of at most PIPE_BUF bytes is copied behind its header and goes out with one
        // `write`: the copy costs less than `writev` of two slices (the benchmark's `pipe` and
        // `pipe-raw` rows measured ~0.15 us per message on a VM). The buffer is sized once.
        let total = FRAME_HEADER_LEN + msg.len();
        if self.small.len() < PIPE_BUF {
            self.small.resize(PIPE_BUF, 0);
        }
        let frame = &mut self.small[..total];
        // At most MAX_ATOMIC_PAYLOAD: the cast is exact.
        frame[..FRAME_HEADER_LEN].copy_from_slice(&(msg.len() as u32).to_le_bytes());
        frame[FRAME_HEADER_LEN..].copy_from_slice(msg);
        let frame = &self.small[..total];
        let fd = self.fd.as_fd();
        let (sigpipe, nowait) = (self.sigpipe, &self.nowait);
        let r = retry(&[(fd, Interest::Writable)], deadline, || {
            nowait.attempt(fd, deadline, |nowait| {
                write_iov(sigpipe, fd, &[IoSlice::new(frame)], nowait)
            })
        });
        match r {
            Ok(n) if n == total => Ok(()),
            // Cut short (a socket whose buffer filled): the rest follows before anything else.
            Ok(n) => self.write_frame(msg, n, deadline),
            Err(Stop::Expired) => Err(self.err(deadline.expired_error(Blocked::Full), "send")),
            Err(Stop::Os(e)) => Err(self.errno(e, "send")),
        }
    }

    fn max_message_size(&self) -> usize {
        self.mode.max_message()
    }
}

impl<F: AsFd> Drop for FrameSender<F> {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            // The reader is owed the rest of a frame it has started: finish it if that can be
            // done within the linger time. Past it, abandon it: closing the descriptor ends
            // the stream mid-frame, and the receiver drops the partial message.
            let deadline = if self.linger.is_zero() {
                Deadline::Now
            } else {
                Deadline::after(self.linger)
            };
            if let Err(e) = self.flush(deadline) {
                tracing::debug!(error = %e, "message in progress abandoned on drop");
            }
        }
    }
}

/// Readiness is the descriptor's own: writable when the pipe has room.
impl<F: AsFd> crate::ready::Readiness for FrameSender<F> {
    fn readiness_fd(&mut self) -> Result<BorrowedFd<'_>> {
        Ok(self.fd.as_fd())
    }

    fn try_flush(&mut self) -> Result<()> {
        self.flush(Deadline::Now).map_err(|e| {
            if e.kind() == ErrorKind::Incomplete {
                self.err(Deadline::Now.expired_error(Blocked::Full), "flush")
            } else {
                e
            }
        })
    }
}

impl<F: AsFd> AsFd for FrameSender<F> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<F: AsFd> AsRawFd for FrameSender<F> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_fd().as_raw_fd()
    }
}

/// Receives length-prefixed messages from a byte-stream descriptor.
///
/// End-of-file (every writer closed or died) is reported as [`ErrorKind::Disconnected`] once
/// every complete message before it has been returned. A message cut off by the end of the
/// stream (a writer died mid-message) is dropped and reported in that error's note.
///
/// A frame announcing more than the maximum (its sender was given a larger one) is
/// [`ErrorKind::MessageTooLarge`] for the receive that meets its header; it is dropped as its
/// bytes arrive, never buffered, and the next receive returns the message after it, as a
/// seqpacket socket drops a record above its maximum. For a receiver of atomic records (a
/// maximum of at most [`MAX_ATOMIC_PAYLOAD`], as a FIFO's many writers need) a frame above
/// `PIPE_BUF` is [`ErrorKind::Corrupted`] for good instead: it was more than one write, which
/// other writers' frames can interleave, so where it ends cannot be told (see
/// [`FrameDecoder::decode`]); unless [`set_one_writer`](FrameReceiver::set_one_writer) says
/// no other writer is there. So is a header announcing more than
/// [`MAX_DROPPED_FRAME`](crate::frame::MAX_DROPPED_FRAME) (256 MiB), for any receiver: bytes
/// that are not this framing (text reads as at least 512 MiB), where dropping would swallow
/// what follows and say nothing more.
///
/// # How it reads
///
/// Messages are read into the receiver's own buffer and copied out. With a deadline to wait
/// for (not `try_recv`), the rest of a message of 4 KiB or more is read straight into the
/// caller's buffer, in the same `readv` as the next frame's prefix. After a message of 32 KiB
/// or more, one `readv` (in `try_recv` too) takes the next prefix into the receiver's buffer
/// and the payload behind it into the caller's (at most the caller's buffer, at most the
/// maximum message), so
/// a stream of large messages costs one system call per message and no copy beyond the
/// kernel's; bytes of the frames behind it, read when a message turns out smaller, go back
/// into the receiver's buffer, and a message larger than the caller's buffer is put back
/// whole (`MessageTooLarge`, kept).
///
/// While reading ahead ([`ReadAhead`]; by default while the receiving thread keeps losing the
/// CPU), every read asks for up to 64 KiB instead: the receiver's buffer is that large
/// whatever its maximum message (it grows beyond only to hold a larger message that arrives in
/// pieces), and the rest of a message below 32 KiB is read with up to 64 KiB of what follows.
/// That keeps a pipe shared with its writer on one core streaming: a frame of 4 KiB + 4 bytes
/// spans one and a half pipe pages on average (the kernel packs only a write's sub-page
/// remainder into the last page), so the pipe fills mid-frame; a read that empties it lets the
/// writer refill it in one burst, where a read of one frame freed a page or two and woke the
/// writer for one frame at a time (measured on one core: 0.35 context switches per 4 KiB
/// message against 0.11 reading ahead and 0.23 for a raw loop of 4096-byte reads).
#[derive(Debug)]
pub struct FrameReceiver<F: AsFd> {
    fd: F,
    decoder: FrameDecoder,
    nowait: Nowait,
    /// The last message was at least [`PREFIX_FIRST_MIN`] bytes: read the next prefix and
    /// payload with [`recv_prefix_first`](Self::recv_prefix_first).
    prefix_first: bool,
    /// The last read from the descriptor returned fewer bytes than it asked for, or none
    /// (`EAGAIN`): the descriptor held nothing more at that moment (see
    /// [`drained`](FrameReceiver::drained)).
    short_read: bool,
    /// The read-ahead policy, whether reads read ahead now, messages received, and the
    /// thread's context switches at the last count (see [`ReadAhead::Adaptive`]).
    policy: ReadAhead,
    ahead: bool,
    received: u32,
    switches: i64,
    /// What a read that does not read ahead asks for when no frame prefix is buffered: the
    /// last message's frame (prefix and payload), the whole maximum's before the first.
    frame_guess: usize,
    /// The object's name, formatted once (see [`FrameSender::new`]).
    label: Arc<str>,
}

impl<F: AsFd> FrameReceiver<F> {
    /// A receiver on `fd` accepting messages of at most `max_message` bytes. `label` names the
    /// object in errors; kept as an `Arc<str>`, so the errors of an empty pipe or a passed
    /// deadline allocate nothing.
    pub fn new(fd: F, max_message: usize, label: impl Into<Arc<str>>) -> Result<FrameReceiver<F>> {
        let label = label.into();
        let nowait = Nowait::default();
        Ok(FrameReceiver {
            fd,
            decoder: read_ahead_decoder(max_message),
            nowait,
            prefix_first: false,
            short_read: false,
            policy: ReadAhead::Adaptive,
            ahead: false,
            received: 0,
            switches: 0,
            frame_guess: max_message.saturating_add(FRAME_HEADER_LEN),
            label,
        })
    }

    /// The descriptor.
    pub fn get_ref(&self) -> &F {
        &self.fd
    }

    /// The object name used in errors.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Says that one writer alone writes this stream (a connected socket): a frame above the
    /// maximum is then dropped whatever its size, also when the maximum is that of atomic
    /// records (see [`FrameDecoder::set_one_writer`]). No system call.
    pub fn set_one_writer(&mut self) {
        self.decoder.set_one_writer();
    }

    /// Whether bytes of a further message are already buffered here (a caller polling the
    /// descriptor must drain these first: the descriptor will not signal them again).
    pub fn has_buffered(&self) -> bool {
        self.decoder.buffered() > 0
    }

    /// Sets whether reads take more than the message being received ([`ReadAhead`];
    /// [`Adaptive`](ReadAhead::Adaptive) unless set). No system call.
    pub fn set_read_ahead(&mut self, policy: ReadAhead) {
        self.policy = policy;
    }

    /// The read-ahead policy (see [`set_read_ahead`](FrameReceiver::set_read_ahead)).
    pub fn read_ahead_policy(&self) -> ReadAhead {
        self.policy
    }

    /// Whether a [`try_recv`](MessageReceiver::try_recv) now would find nothing without a
    /// new arrival: no complete message (nor a corrupt header) is buffered here, and the last
    /// read from the descriptor came back short or empty (`EAGAIN`), so the descriptor held
    /// nothing more at that moment. An event loop can then wait for readability at once
    /// instead of making a read that fails with `WouldBlock`; bytes that arrived since the
    /// read make the descriptor readable, so nothing is missed. `false` when unknown (no read
    /// yet, the last read filled what it asked for, or the stream ended). No system call.
    pub fn drained(&self) -> bool {
        self.short_read && !self.decoder.ready()
    }

    fn err(&self, e: Error, op: &'static str) -> Error {
        e.in_op(op).on_shared(&self.label)
    }

    fn end_of_stream(&mut self) -> Error {
        let mut e = Error::disconnected();
        if self.decoder.skipping() > 0 {
            let note = format!(
                "the writer closed in the middle of a message above this receiver's maximum \
                 (reported and dropped; {} of its bytes never came)",
                self.decoder.skipping()
            );
            e = e.with_detail(Detail::Note(note.into()));
            self.decoder.reset();
        } else if let Some((have, len)) = self.decoder.partial() {
            let note = match len {
                Some(len) => format!(
                    "the writer closed in the middle of a message ({} of {len} bytes arrived); \
                     the partial message was dropped",
                    have - FRAME_HEADER_LEN
                ),
                None => "the writer closed in the middle of a frame header".to_string(),
            };
            e = e.with_detail(Detail::Note(note.into()));
            // A FIFO can get a new writer: start it on a clean frame boundary.
            self.decoder.reset();
        }
        self.err(e, "recv")
    }
}

/// The calling thread's context switches so far, voluntary and not (`getrusage(2)`,
/// `RUSAGE_THREAD`); 0 if it cannot be read.
fn thread_switches() -> i64 {
    // SAFETY: `getrusage` writes one `rusage` struct into `usage`, a properly sized, writable
    // value owned by this frame; an all-zero `rusage` is a valid value of that plain C struct.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_THREAD, &mut usage) != 0 {
            return 0;
        }
        usage.ru_nvcsw + usage.ru_nivcsw
    }
}

/// Whether a read of up to `asked` bytes shows the descriptor empty at that moment (what
/// [`FrameReceiver::drained`] reports): it came back short, or found nothing (`EAGAIN`, after
/// which `retry` reports an expired deadline). End of stream (0) and errors say nothing.
fn came_short(r: &std::result::Result<usize, Stop>, asked: usize) -> bool {
    matches!(r, Ok(n) if *n > 0 && *n < asked) || matches!(r, Err(Stop::Expired))
}

/// A decoder for messages of at most `max_message` bytes whose buffer holds [`READ_AHEAD`]
/// bytes whatever that maximum: with a buffer of one frame (a receiver for messages of 4 KiB),
/// a read freed a page or two of a pipe and the writer refilled it one frame per wake-up (see
/// [`FrameReceiver`]).
fn read_ahead_decoder(max_message: usize) -> FrameDecoder {
    let mut decoder = FrameDecoder::new(max_message);
    decoder.reserve(READ_AHEAD);
    decoder
}

impl<F: AsFd> FrameReceiver<F> {
    /// Whether the next read reads ahead (see [`ReadAhead`]).
    fn read_ahead(&self) -> bool {
        match self.policy {
            ReadAhead::Adaptive => self.ahead,
            ReadAhead::Always => true,
            ReadAhead::Never => false,
        }
    }

    /// Counts a message received; every [`PROBE_EVERY`] of them an adaptive receiver decides
    /// whether to read ahead: while this thread keeps losing the CPU (it and the writer take
    /// turns on one core) reading ahead lets the writer refill the pipe in one burst; while it
    /// does not (the writer runs on another core, the reader is the slower side), one frame
    /// at a time saves the copy out of this buffer.
    fn received(&mut self, len: usize) {
        self.received = self.received.wrapping_add(1);
        self.frame_guess = len.saturating_add(FRAME_HEADER_LEN);
        if matches!(self.policy, ReadAhead::Adaptive) && self.received % PROBE_EVERY == 0 {
            let now = thread_switches();
            self.ahead = now - self.switches >= AHEAD_SWITCHES;
            self.switches = now;
        }
    }

    /// Reads the rest of a large message straight into the caller's buffer `msg` (its payload
    /// length), of which `have` bytes are there, and what follows it into the decoder's buffer
    /// in the same `readv`: up to [`READ_AHEAD`] bytes, or only the next frame's length prefix
    /// when `ahead` is false (after a very large message, whose successor is expected large
    /// too and read straight into its own buffer). No copy of this message through the
    /// decoder's buffer. If the deadline passes or the stream ends first, the bytes read so far
    /// go back into the decoder (a later receive, with any buffer, continues the same message).
    fn recv_rest(
        &mut self,
        msg: &mut [u8],
        mut have: usize,
        ahead: bool,
        deadline: Deadline,
    ) -> Result<usize> {
        while have < msg.len() {
            let fd = self.fd.as_fd();
            let nowait = &self.nowait;
            let rest = &mut msg[have..];
            let want = rest.len();
            // Empty after `take_partial`, so its room starts at 0 and holds at least a prefix.
            let bound = if ahead { READ_AHEAD } else { FRAME_HEADER_LEN };
            let spare = self.decoder.read_buf();
            let room = spare.len();
            let next = &mut spare[..bound.min(room)];
            let asked = want + next.len();
            let r = retry(&[(fd, Interest::Readable)], deadline, || {
                let iov = &mut [IoSliceMut::new(&mut *rest), IoSliceMut::new(&mut *next)];
                nowait.attempt(fd, deadline, |nowait| read_iov(fd, iov, nowait))
            });
            self.short_read = came_short(&r, asked);
            match r {
                Ok(n) if n > want => {
                    self.decoder.advance(n - want);
                    have += want;
                }
                Ok(n) if n > 0 => have += n,
                other => {
                    self.decoder.restore(msg.len(), &msg[..have]);
                    return Err(match other {
                        Err(stop) => stop.into_error(deadline, Blocked::Empty, "recv", &self.label),
                        _ => self.end_of_stream(),
                    });
                }
            }
        }
        Ok(msg.len())
    }

    /// Reads the next frame's prefix into the (empty) decoder and what follows it into `buf`,
    /// at most `buf.len()` and at most the maximum payload, in one `readv`. Returns the
    /// message's length once it is whole in `buf` (the rest read by
    /// [`recv_rest`](Self::recv_rest) if it was not all there); `None` when the decoder is to
    /// go on: only part of the prefix came, or the frame cannot go into `buf` (empty, larger
    /// than `buf`, or over the maximum), whose bytes are then put back behind its prefix so
    /// that `decode` reports it exactly as for any frame (`MessageTooLarge` keeps it). Bytes
    /// of the frames behind the message go back into the decoder.
    fn recv_prefix_first(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<Option<usize>> {
        let cap = buf.len().min(self.decoder.max_payload());
        let fd = self.fd.as_fd();
        let nowait = &self.nowait;
        // Empty decoder: its room holds at least a prefix.
        let head = &mut self.decoder.read_buf()[..FRAME_HEADER_LEN];
        let body = &mut buf[..cap];
        let asked = FRAME_HEADER_LEN + cap;
        let r = retry(&[(fd, Interest::Readable)], deadline, || {
            let iov = &mut [IoSliceMut::new(&mut *head), IoSliceMut::new(&mut *body)];
            nowait.attempt(fd, deadline, |nowait| read_iov(fd, iov, nowait))
        });
        self.short_read = came_short(&r, asked);
        let n = match r {
            Ok(0) => return Err(self.end_of_stream()),
            Ok(n) => n,
            Err(stop) => {
                return Err(stop.into_error(deadline, Blocked::Empty, "recv", &self.label));
            }
        };
        self.decoder.advance(n.min(FRAME_HEADER_LEN));
        let got = n.saturating_sub(FRAME_HEADER_LEN);
        if got == 0 {
            return Ok(None);
        }
        // An empty message is left to `decode` too: `take_partial` takes only frames whose
        // payload is still to come.
        let nonempty = self.decoder.next_len().is_some_and(|len| len > 0);
        let taken = nonempty.then(|| self.decoder.take_partial(buf)).flatten();
        let Some((len, _)) = taken else {
            // Not for `buf` (see above): back behind its prefix, for `decode` to report.
            self.decoder.reserve(FRAME_HEADER_LEN + got);
            let back = self.decoder.push(&buf[..got]);
            debug_assert_eq!(back, got, "an empty decoder grown for them takes them all");
            return Ok(None);
        };
        let r = if got >= len {
            // Whole; what came after it starts the next frames.
            let behind = &buf[len..got];
            self.decoder.reserve(behind.len());
            let back = self.decoder.push(behind);
            debug_assert_eq!(
                back,
                behind.len(),
                "an empty decoder grown for them takes them all"
            );
            Ok(len)
        } else {
            let ahead = len < PREFIX_FIRST_MIN && self.read_ahead();
            self.recv_rest(&mut buf[..len], got, ahead, deadline)
        };
        self.prefix_first = r.is_ok() && len >= PREFIX_FIRST_MIN;
        if r.is_ok() {
            self.received(len);
        }
        r.map(Some)
    }
}

impl<F: AsFd> FrameReceiver<F> {
    /// One blocking read into the empty decoder (as much as the loop of `recv_deadline` asks
    /// for there: the whole buffer while reading ahead, else one frame the size of the last
    /// message's, see [`ReadAhead::Never`]), then one decode: the whole receive of a message
    /// that arrives in one piece, with no wait and no check that the general loop would not
    /// make. `None` when the loop is to go on (part of a frame came, `EINTR`, or `EAGAIN` on
    /// a descriptor that is non-blocking: the loop reads again and polls).
    #[inline]
    fn recv_once(&mut self, buf: &mut [u8]) -> Result<Option<usize>> {
        let frame = self.frame_guess;
        // Bytes of a dropped frame are read a whole buffer at a time, whatever the policy.
        let big = self.read_ahead() || self.decoder.skipping() > 0;
        let fd = self.fd.as_fd();
        let spare = self.decoder.read_buf();
        let asked = if big {
            spare.len()
        } else {
            frame.min(spare.len())
        };
        let spare = &mut spare[..asked];
        let r = self
            .nowait
            .attempt(fd, Deadline::Never, |nowait| read_buf(fd, spare, nowait));
        // As `came_short` says for the loop's reads (`EINTR` and `EAGAIN` go on there).
        self.short_read = matches!(r, Ok(n) if n > 0 && n < asked);
        match r {
            Ok(0) => Err(self.end_of_stream()),
            Ok(n) => {
                self.decoder.advance(n);
                match self.decoder.decode(buf) {
                    Ok(Some(n)) => {
                        self.prefix_first = n >= PREFIX_FIRST_MIN;
                        self.received(n);
                        Ok(Some(n))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(self.err(e, "recv")),
                }
            }
            Err(Errno::INTR | Errno::AGAIN) => Ok(None),
            Err(e) => {
                Err(Stop::Os(e).into_error(Deadline::Never, Blocked::Empty, "recv", &self.label))
            }
        }
    }
}

impl<F: AsFd> MessageReceiver for FrameReceiver<F> {
    #[inline]
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        // The message path of a blocking receive between frames: one read, one decode (see
        // `recv_once`); anything else, or what it leaves, goes on in `recv_loop`.
        if matches!(deadline, Deadline::Never) && self.decoder.buffered() == 0 && !self.prefix_first
        {
            if let Some(n) = self.recv_once(buf)? {
                return Ok(n);
            }
        }
        self.recv_loop(buf, deadline)
    }

    fn max_message_size(&self) -> usize {
        self.decoder.max_payload()
    }
}

impl<F: AsFd> FrameReceiver<F> {
    /// [`recv_deadline`](MessageReceiver::recv_deadline) past its message path: frames
    /// buffered, the rest of a large message, a deadline to wait for.
    #[inline(never)]
    fn recv_loop(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        loop {
            match self.decoder.decode(buf) {
                Ok(Some(n)) => {
                    self.prefix_first = n >= PREFIX_FIRST_MIN;
                    self.received(n);
                    return Ok(n);
                }
                Ok(None) => {}
                Err(e) => return Err(self.err(e, "recv")),
            }
            // A large message with a deadline to wait for (not `try_recv`, which would copy
            // the part read back each time it finds the rest missing): its rest goes straight
            // into `buf`.
            let direct = deadline != Deadline::Now
                && self
                    .decoder
                    .next_len()
                    .is_some_and(|len| len >= DIRECT_READ_MIN);
            if let Some((len, have)) = direct.then(|| self.decoder.take_partial(buf)).flatten() {
                let ahead = len < PREFIX_FIRST_MIN && self.read_ahead();
                let r = self.recv_rest(&mut buf[..len], have, ahead, deadline);
                self.prefix_first = r.is_ok() && len >= PREFIX_FIRST_MIN;
                if r.is_ok() {
                    self.received(len);
                }
                return r;
            }
            // After a very large message, expect another: read the next prefix into this buffer
            // and the payload behind it straight into the caller's, in one `readv` (no copy of
            // the message through this buffer, and one system call per message as a raw loop
            // makes). `try_recv` too (an async receiver's, whose messages are mostly whole
            // when it looks): a message not all there yet is put back once, and the next tries
            // find it buffered and read on into this buffer, so nothing is copied back twice.
            if self.prefix_first && self.decoder.buffered() == 0 && self.decoder.skipping() == 0 {
                match self.recv_prefix_first(buf, deadline)? {
                    Some(n) => return Ok(n),
                    None => continue,
                }
            }
            // Bytes of a dropped frame are read a whole buffer at a time, whatever the policy
            // (a frame the size of the last message's could be a few bytes: a read each).
            let big = self.read_ahead() || self.decoder.skipping() > 0;
            // Not reading ahead: the rest of the frame at the head when its prefix is in (at
            // most the maximum: a larger one failed to decode above), else a frame of the last
            // message's size; nothing more.
            let frame = self
                .decoder
                .next_len()
                .map_or(self.frame_guess, |len| len.saturating_add(FRAME_HEADER_LEN))
                .saturating_sub(self.decoder.buffered())
                .max(1);
            let fd = self.fd.as_fd();
            let spare = self.decoder.read_buf();
            let room = spare.len();
            let spare = if big {
                spare
            } else {
                &mut spare[..frame.min(room)]
            };
            let asked = spare.len();
            let nowait = &self.nowait;
            let r = retry(&[(fd, Interest::Readable)], deadline, || {
                nowait.attempt(fd, deadline, |nowait| read_buf(fd, &mut *spare, nowait))
            });
            self.short_read = came_short(&r, asked);
            match r {
                Ok(0) => return Err(self.end_of_stream()),
                Ok(n) => self.decoder.advance(n),
                Err(stop) => {
                    return Err(stop.into_error(deadline, Blocked::Empty, "recv", &self.label));
                }
            }
        }
    }
}

/// Readiness is the descriptor's own: readable when bytes (or the end of the stream) are
/// there. A poll loop drains [`has_buffered`](FrameReceiver::has_buffered) messages first:
/// `try_recv` until `WouldBlock`, then wait.
impl<F: AsFd> crate::ready::Readiness for FrameReceiver<F> {
    fn readiness_fd(&mut self) -> Result<BorrowedFd<'_>> {
        Ok(self.fd.as_fd())
    }
}

impl<F: AsFd> AsFd for FrameReceiver<F> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<F: AsFd> AsRawFd for FrameReceiver<F> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::os::fd::OwnedFd;
    use std::time::Duration;

    /// A receive with a 10 ms timeout on a pipe that has no whole message: `TimedOut`.
    fn times_out<F: AsFd>(rx: &mut FrameReceiver<F>, buf: &mut [u8]) {
        let e = rx.recv_timeout(buf, Duration::from_millis(10)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    }

    fn pair(mode: FrameMode) -> (FrameSender<OwnedFd>, FrameReceiver<OwnedFd>) {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let max = mode.max_message();
        (
            FrameSender::new(w, mode, "test pipe").unwrap(),
            FrameReceiver::new(r, max, "test pipe").unwrap(),
        )
    }

    /// Small frames go out as one contiguous `write`; on a TCP socket (loopback) such a write
    /// can be cut short when the send buffer fills, and the rest must still follow before the
    /// next frame.
    #[test]
    fn small_frames_cut_short_on_a_full_socket_arrive_whole() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        let mut tx = FrameSender::new(OwnedFd::from(a), FrameMode::default(), "socket").unwrap();
        let mut rx = FrameReceiver::new(OwnedFd::from(b), 4096, "socket").unwrap();
        let msg = |i: u32| -> Vec<u8> {
            let len = 1000 + (i as usize * 37) % 3000;
            (0..len).map(|j| (i as usize + j) as u8).collect()
        };
        let mut sent = 0;
        loop {
            match tx.try_send(&msg(sent)) {
                Ok(()) => sent += 1,
                Err(e) if e.kind() == ErrorKind::Incomplete => {
                    // Cut short: in progress, completed by the next send.
                    sent += 1;
                    break;
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::WouldBlock);
                    break;
                }
            }
        }
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0; 4096];
            let mut got = 0;
            loop {
                match rx.recv(&mut buf) {
                    Ok(n) => {
                        assert_eq!(&buf[..n], &msg(got)[..], "message {got}");
                        got += 1;
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::Disconnected);
                        return got;
                    }
                }
            }
        });
        // Blocking sends complete any cut frame first, then go on.
        for i in sent..sent + 50 {
            tx.send(&msg(i)).unwrap();
        }
        drop(tx);
        assert_eq!(reader.join().unwrap(), sent + 50);
    }

    #[test]
    fn messages_keep_their_boundaries() {
        let (mut tx, mut rx) = pair(FrameMode::default());
        tx.send(b"one").unwrap();
        tx.send(b"").unwrap();
        tx.send(&[9; 5000]).unwrap();
        let mut buf = vec![0; 8192];
        assert_eq!(rx.recv(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"one");
        assert_eq!(rx.try_recv(&mut buf).unwrap(), 0);
        assert_eq!(
            rx.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap(),
            5000
        );
        assert!(buf[..5000].iter().all(|&b| b == 9));
        assert_eq!(
            rx.try_recv(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        drop(tx);
        assert_eq!(
            rx.recv(&mut buf).unwrap_err().kind(),
            ErrorKind::Disconnected
        );
    }

    #[test]
    fn atomic_mode_refuses_large_messages_and_keeps_the_queue() {
        let (mut tx, mut rx) = pair(FrameMode::Atomic);
        tx.send(b"kept").unwrap();
        let e = tx.send(&[0; MAX_ATOMIC_PAYLOAD + 1]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge);
        assert_eq!(
            e.message_size(),
            Some((MAX_ATOMIC_PAYLOAD + 1, MAX_ATOMIC_PAYLOAD))
        );
        tx.send(&[1; MAX_ATOMIC_PAYLOAD]).unwrap();
        let mut buf = [0; MAX_ATOMIC_PAYLOAD];
        assert_eq!(rx.recv(&mut buf).unwrap(), 4);
        assert_eq!(rx.recv(&mut buf).unwrap(), MAX_ATOMIC_PAYLOAD);
    }

    #[test]
    fn full_pipe_gives_would_block_then_timed_out() {
        let (mut tx, _rx) = pair(FrameMode::Atomic);
        let msg = [0u8; 1000];
        loop {
            match tx.try_send(&msg) {
                Ok(()) => {}
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::WouldBlock);
                    assert_eq!(e.blocked(), Some(Blocked::Full));
                    break;
                }
            }
        }
        let e = tx
            .send_timeout(&msg, Duration::from_millis(10))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
    }

    #[test]
    fn write_without_reader_is_disconnected() {
        let (mut tx, rx) = pair(FrameMode::Atomic);
        drop(rx);
        let e = tx.send(b"x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected);
        assert!(e.to_string().contains("test pipe"), "{e}");
    }

    /// A send whose deadline passes mid-message says so: a typed error that tells the message
    /// is in progress (not lost, not to be sent again), and the next send completes it first.
    #[test]
    fn large_message_cut_by_a_deadline_is_an_error_and_completed_by_the_next_send() {
        let (mut tx, mut rx) = pair(FrameMode::default());
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        // The pipe holds 64 KiB: the deadline passes mid-frame and the tail is kept.
        let e = tx
            .send_deadline(&big, Deadline::after(Duration::from_millis(10)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Incomplete, "{e}");
        assert!(e.to_string().contains("in progress"), "{e}");
        let left = tx.pending();
        assert!(left > 0 && left < big.len(), "{left}");
        assert!(e.to_string().contains(&format!("{left} bytes")), "{e}");
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0; 200_000];
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &big[..]);
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"after");
        });
        tx.send(b"after").unwrap();
        assert_eq!(tx.pending(), 0);
        reader.join().unwrap();
    }

    /// `try_send` of a message that only partly fits: `Incomplete`; the next message cannot go
    /// before its rest: `WouldBlock`, nothing of it sent.
    #[test]
    fn try_send_of_a_message_that_partly_fits_is_incomplete_then_would_block() {
        let (mut tx, _rx) = pair(FrameMode::default());
        let e = tx.try_send(&[7; 100_000]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Incomplete, "{e}");
        assert!(e.to_string().contains("in progress"), "{e}");
        assert!(tx.pending() > 0);
        // A further message cannot go before the rest of this one.
        let e = tx.try_send(b"next").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        assert_eq!(e.blocked(), Some(Blocked::Full), "{e}");
        assert!(e.to_string().contains("not sent"), "{e}");
    }

    /// Dropping a sender with a message in progress while the reader is alive but idle returns
    /// after the linger time instead of waiting for the reader forever; the reader, seeing the
    /// stream end mid-frame, drops the partial message.
    #[test]
    fn drop_with_pending_data_and_an_idle_reader_is_bounded() {
        let (mut tx, mut rx) = pair(FrameMode::default());
        tx.send(b"whole").unwrap();
        assert!(tx.try_send(&[1; 200_000]).is_err());
        tx.set_linger(Duration::from_millis(20));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(tx);
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("drop of a sender with pending data hung");
        let mut buf = vec![0; 200_000];
        assert_eq!(rx.recv(&mut buf).unwrap(), 5);
        let e = rx.recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        assert!(e.to_string().contains("partial message was dropped"), "{e}");
    }

    /// A large message read straight into the caller's buffer and cut by the deadline is put
    /// back: the next receive, into another buffer, returns it whole, then the next message.
    #[test]
    fn a_large_message_cut_by_the_deadline_is_kept_for_the_next_receive() {
        let (r, mut w) = rustix::pipe::pipe()
            .map(|(r, w)| (r, std::fs::File::from(w)))
            .unwrap();
        let msg: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
        let mut frame = Vec::new();
        crate::frame::encode_frame(&msg, &mut frame).unwrap();
        crate::frame::encode_frame(b"next", &mut frame).unwrap();
        use std::io::Write;
        w.write_all(&frame[..9000]).unwrap();
        let mut rx = FrameReceiver::new(r, 20_000, "test pipe").unwrap();
        let mut first = vec![0; 20_000];
        times_out(&mut rx, &mut first);
        assert!(rx.has_buffered());
        // Also cut on the try path, which reads through the decoder.
        assert_eq!(
            rx.try_recv(&mut first).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        w.write_all(&frame[9000..]).unwrap();
        let mut second = vec![0; 30_000];
        let n = rx.recv(&mut second).unwrap();
        assert_eq!(&second[..n], &msg[..]);
        let n = rx.recv(&mut second).unwrap();
        assert_eq!(&second[..n], b"next");
        drop(w);
        assert_eq!(
            rx.recv(&mut second).unwrap_err().kind(),
            ErrorKind::Disconnected
        );
    }

    /// Reading ahead, the rest of a large message is read together with what follows it, up to
    /// 64 KiB: one read empties the pipe (a copy of the read end then finds nothing), the
    /// messages behind it come from the receiver's buffer, and `drained` tells when a
    /// `try_recv` would find nothing new.
    #[test]
    fn the_rest_of_a_large_message_is_read_with_the_messages_behind_it() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let peek = rustix::io::dup(&r).unwrap();
        rustix::fs::fcntl_setfl(&peek, rustix::fs::OFlags::NONBLOCK).unwrap();
        let mut w = std::fs::File::from(w);
        let msgs: Vec<Vec<u8>> = (0..4u8)
            .map(|i| (0..8192u32).map(|j| (j as u8) ^ i).collect())
            .collect();
        let mut wire = Vec::new();
        for m in &msgs {
            crate::frame::encode_frame(m, &mut wire).unwrap();
        }
        use std::io::Write;
        let mut rx = FrameReceiver::new(r, 8192, "test pipe").unwrap();
        assert_eq!(rx.read_ahead_policy(), ReadAhead::Adaptive);
        rx.set_read_ahead(ReadAhead::Always);
        assert!(!rx.drained(), "nothing read yet: unknown");
        // Frame 1's prefix and a few bytes: a timed receive takes them and times out, so the
        // next receive reads the rest straight into the caller's buffer.
        w.write_all(&wire[..100]).unwrap();
        let mut buf = vec![0; 8192];
        times_out(&mut rx, &mut buf);
        assert!(rx.drained());
        // The rest of frame 1, frames 2 and 3 whole, half of frame 4.
        let half = wire.len() - 4096;
        w.write_all(&wire[100..half]).unwrap();
        assert_eq!(rx.recv(&mut buf).unwrap(), 8192);
        assert_eq!(buf, msgs[0]);
        let mut probe = [0u8; 1];
        assert_eq!(
            rustix::io::read(&peek, &mut probe).unwrap_err(),
            Errno::AGAIN,
            "the first receive left bytes in the pipe: no read-ahead"
        );
        assert!(!rx.drained(), "complete messages are buffered");
        for m in &msgs[1..3] {
            assert_eq!(rx.try_recv(&mut buf).unwrap(), 8192);
            assert_eq!(&buf, m);
        }
        assert!(
            rx.drained(),
            "only a partial message is left, the pipe was empty"
        );
        assert_eq!(
            rx.try_recv(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        assert!(rx.drained());
        w.write_all(&wire[half..]).unwrap();
        assert_eq!(rx.recv(&mut buf).unwrap(), 8192);
        assert_eq!(buf, msgs[3]);
        drop(w);
        assert_eq!(
            rx.recv(&mut buf).unwrap_err().kind(),
            ErrorKind::Disconnected
        );
        assert!(!rx.drained(), "the stream ended: a receive returns at once");
    }

    /// A receiver whose maximum is far above its messages, not reading ahead, reads one frame of
    /// the last message's size at a time, not a maximum's worth of frames (across cores that
    /// made a reader of small messages faster than its writer, so the writer paid a wake-up
    /// per message: the atomic FIFO row streamed 64-byte messages at 0.95 M/s against 1.3).
    #[test]
    fn without_read_ahead_small_messages_are_read_one_at_a_time() {
        let (mut tx, mut rx) = pair(FrameMode::Atomic);
        rx.set_read_ahead(ReadAhead::Never);
        let mut buf = vec![0; MAX_ATOMIC_PAYLOAD];
        tx.send(&[7; 64]).unwrap();
        assert_eq!(rx.recv(&mut buf).unwrap(), 64);
        for i in 0..3u8 {
            tx.send(&[i; 64]).unwrap();
        }
        for i in 0..3u8 {
            assert_eq!(rx.recv(&mut buf).unwrap(), 64);
            assert_eq!(&buf[..64], &[i; 64]);
            assert!(
                !rx.has_buffered(),
                "message {i}: the next ones were read with it"
            );
        }
        // Larger than the last: its rest is read after its prefix, exactly, and it is whole.
        tx.send(&[9; 1000]).unwrap();
        tx.send(&[8; 10]).unwrap();
        assert_eq!(rx.recv(&mut buf).unwrap(), 1000);
        assert!(buf[..1000].iter().all(|&b| b == 9));
        assert!(
            !rx.has_buffered(),
            "the read of its rest took the next message too"
        );
        assert_eq!(rx.recv(&mut buf).unwrap(), 10);
        assert_eq!(&buf[..10], &[8; 10]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Messages of sizes around the read sizes a receiver picks (empty, smaller and larger
        /// than the last, around a page, past the direct-read and prefix-first sizes), written
        /// by another thread while they are received with any policy and any kind of receive:
        /// each arrives whole and in order.
        #[test]
        fn any_sizes_arrive_whole_with_any_policy_and_receive(
            sizes in proptest::collection::vec(
                proptest::prop_oneof![0..8usize, 60..70usize, 900..1100usize, 4090..4100usize,
                    8000..8300usize, 32_760..40_000usize],
                1..48,
            ),
            how in proptest::collection::vec(0..3u8, 48),
            policy in proptest::prop_oneof![
                proptest::strategy::Just(ReadAhead::Never),
                proptest::strategy::Just(ReadAhead::Adaptive),
                proptest::strategy::Just(ReadAhead::Always),
            ],
        ) {
            let (mut tx, mut rx) = pair(FrameMode::Stream { max_message: 40_000 });
            rx.set_read_ahead(policy);
            let msg = |i: usize, len: usize| -> Vec<u8> {
                (0..len).map(|j| (i as u8) ^ (j as u8).wrapping_mul(31)).collect()
            };
            let sent = sizes.clone();
            let writer = std::thread::spawn(move || {
                for (i, &len) in sent.iter().enumerate() {
                    tx.send(&msg(i, len)).unwrap();
                }
            });
            let mut buf = vec![0u8; 40_000];
            for (i, &len) in sizes.iter().enumerate() {
                let n = match how[i] {
                    0 => rx.recv(&mut buf).unwrap(),
                    1 => loop {
                        match rx.try_recv(&mut buf) {
                            Ok(n) => break n,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    },
                    _ => rx.recv_timeout(&mut buf, Duration::from_secs(30)).unwrap(),
                };
                proptest::prop_assert_eq!(n, len, "message {}", i);
                proptest::prop_assert!(buf[..n] == msg(i, len)[..], "message {} torn", i);
            }
            writer.join().unwrap();
            proptest::prop_assert_eq!(
                rx.recv(&mut buf).unwrap_err().kind(),
                ErrorKind::Disconnected
            );
        }
    }

    /// Not reading ahead (`Never`, and `Adaptive` until its thread has been seen losing the CPU),
    /// a receive takes its message and the next prefix, and leaves the rest in the pipe.
    #[test]
    fn without_read_ahead_a_receive_takes_one_message() {
        for policy in [ReadAhead::Never, ReadAhead::Adaptive] {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
            let peek = rustix::io::dup(&r).unwrap();
            rustix::fs::fcntl_setfl(&peek, rustix::fs::OFlags::NONBLOCK).unwrap();
            let mut wire = Vec::new();
            for i in 0..3u8 {
                crate::frame::encode_frame(&[i; 8192], &mut wire).unwrap();
            }
            rustix::io::write(&w, &wire).unwrap();
            let mut rx = FrameReceiver::new(r, 8192, "test pipe").unwrap();
            rx.set_read_ahead(policy);
            let mut buf = vec![0; 8192];
            assert_eq!(rx.recv(&mut buf).unwrap(), 8192);
            assert_eq!(buf, [0; 8192]);
            let mut probe = [0u8; 1];
            assert_eq!(
                rustix::io::read(&peek, &mut probe).unwrap(),
                1,
                "{policy:?}: the first receive emptied the pipe"
            );
        }
    }

    /// A receiver whose writer shares its core loses the CPU to it every few messages: the
    /// adaptive policy then reads ahead.
    #[test]
    fn adaptive_reads_ahead_when_the_writer_shares_the_core() {
        fn pin_to(cpu: usize) {
            // SAFETY: `set` is a zeroed `cpu_set_t` owned by this frame (a valid value of the
            // plain C struct); `CPU_SET` writes within it and `sched_setaffinity` only reads it.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                assert_eq!(
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                    0
                );
            }
        }
        // SAFETY: `sched_getcpu` takes no arguments and only returns a number.
        let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).unwrap();
        let (mut tx, mut rx) = pair(FrameMode::Stream { max_message: 4096 });
        let writer = std::thread::spawn(move || {
            pin_to(cpu);
            for i in 0..2000u32 {
                tx.send(&[i as u8; 4096]).unwrap();
            }
        });
        let reader = std::thread::spawn(move || {
            pin_to(cpu);
            let mut buf = [0; 4096];
            for i in 0..2000u32 {
                assert_eq!(rx.recv(&mut buf).unwrap(), 4096);
                assert_eq!(buf, [i as u8; 4096], "message {i}");
            }
            rx
        });
        writer.join().unwrap();
        let rx = reader.join().unwrap();
        assert!(
            rx.ahead,
            "a reader sharing its core with its writer reads one frame at a time"
        );
    }

    /// A pipe pair whose sender, on a thread of its own, sends one message of each of `sizes`
    /// (message `i`'s byte `j` is `i * 31 + j * 13`): the messages, the thread, the receiver.
    fn send_in_thread(
        sizes: &[usize],
    ) -> (
        Vec<Vec<u8>>,
        std::thread::JoinHandle<()>,
        FrameReceiver<OwnedFd>,
    ) {
        let (mut tx, rx) = pair(FrameMode::default());
        let msgs: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j * 13) as u8).collect())
            .collect();
        let sent = msgs.clone();
        let writer = std::thread::spawn(move || {
            for m in &sent {
                tx.send(m).unwrap();
            }
        });
        (msgs, writer, rx)
    }

    /// After a message of 32 KiB or more the next prefix and payload are read together: small and large
    /// messages mixed still arrive whole and in order, cut by deadlines anywhere.
    #[test]
    fn mixed_sizes_after_large_messages_arrive_whole() {
        let (expect, writer, mut rx) =
            send_in_thread(&[40_000, 3, 0, 70_000, 50_000, 5000, 1, 33_000, 100]);
        let mut buf = vec![0; 70_000];
        for (i, m) in expect.iter().enumerate() {
            let n = loop {
                match rx.recv_timeout(&mut buf, Duration::from_micros(50)) {
                    Ok(n) => break n,
                    Err(e) => assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}"),
                }
            };
            assert_eq!(&buf[..n], &m[..], "message {i}");
        }
        writer.join().unwrap();
        assert_eq!(
            rx.recv(&mut buf).unwrap_err().kind(),
            ErrorKind::Disconnected
        );
    }

    /// The same through `try_recv` (what an async receiver calls): after a large message the
    /// next prefix and payload are read together there too, and one that is not all there
    /// yet (200,000 bytes through a 64 KiB pipe) is put back and read on, whole and in order.
    #[test]
    fn mixed_sizes_after_large_messages_arrive_whole_through_try_recv() {
        let sizes = [
            40_000, 3, 0, 70_000, 50_000, 5000, 200_000, 1, 33_000, 100, 40_000,
        ];
        let (expect, writer, mut rx) = send_in_thread(&sizes);
        let mut buf = vec![0; 200_000];
        for (i, m) in expect.iter().enumerate() {
            let n = loop {
                match rx.try_recv(&mut buf) {
                    Ok(n) => break n,
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
                        std::thread::yield_now();
                    }
                }
            };
            assert_eq!(&buf[..n], &m[..], "message {i}");
        }
        writer.join().unwrap();
        assert_eq!(
            rx.try_recv(&mut buf).unwrap_err().kind(),
            ErrorKind::Disconnected
        );
    }

    /// After a large message the next prefix and payload are read in one `readv` straight into
    /// the caller's buffer: a next message larger than that buffer is `MessageTooLarge` and
    /// stays queued whole, an empty one and the frames read behind a small one are kept.
    #[test]
    fn a_too_small_buffer_after_a_large_message_keeps_the_next_one() {
        let (expect, writer, mut rx) = send_in_thread(&[40_000, 60_000, 0, 35_000, 7, 9, 40_000]);
        let mut small = vec![0; 50_000];
        let n = rx.recv(&mut small).unwrap();
        assert_eq!(&small[..n], &expect[0][..]);
        let e = rx.recv(&mut small).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        let mut big = vec![0; 60_000];
        for (i, m) in expect.iter().enumerate().skip(1) {
            let n = rx.recv(&mut big).unwrap();
            assert_eq!(&big[..n], &m[..], "message {i}");
        }
        writer.join().unwrap();
        assert_eq!(
            rx.recv(&mut big).unwrap_err().kind(),
            ErrorKind::Disconnected
        );
    }

    /// A buffer too small for a large message is an error that keeps the message; the stream
    /// ending in the middle of a large message is reported with the counts.
    #[test]
    fn large_messages_keep_the_small_buffer_and_cut_stream_rules() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut frame = Vec::new();
        crate::frame::encode_frame(&[3; 10_000], &mut frame).unwrap();
        rustix::io::write(&w, &frame[..6000]).unwrap();
        let mut rx = FrameReceiver::new(r, 10_000, "p").unwrap();
        let e = rx.recv(&mut [0; 5000]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        drop(w);
        let e = rx.recv(&mut [0; 10_000]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        assert!(e.to_string().contains("5996 of 10000"), "{e}");
    }

    /// A blocking receive between frames takes its message path (one read, one decode), which
    /// keeps every check of the general loop: a buffer too small keeps the message, a part of
    /// a frame waits for the rest, a frame over the maximum is `MessageTooLarge` and dropped
    /// (one over `PIPE_BUF` for this receiver of atomic records is `Corrupted` for good), and
    /// the end of the stream after whole messages is `Disconnected` without a note.
    #[test]
    fn a_blocking_receive_between_frames_keeps_every_check() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut rx = FrameReceiver::new(r, 100, "p").unwrap();
        let mut wire = Vec::new();
        crate::frame::encode_frame(&[9; 50], &mut wire).unwrap();
        rustix::io::write(&w, &wire).unwrap();
        let e = rx.recv(&mut [0; 10]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        assert_eq!(e.message_size(), Some((50, 10)));
        let mut buf = [0; 100];
        assert_eq!(rx.recv(&mut buf).unwrap(), 50);
        assert_eq!(buf[..50], [9; 50]);

        // Part of a frame: the receive waits for the rest.
        rustix::io::write(&w, &wire[..10]).unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            rustix::io::write(&w, &wire[10..]).unwrap();
            w
        });
        assert_eq!(rx.recv(&mut buf).unwrap(), 50);
        assert_eq!(buf[..50], [9; 50]);
        let w = writer.join().unwrap();

        let mut wire = Vec::new();
        crate::frame::encode_frame(&[1; 101], &mut wire).unwrap();
        crate::frame::encode_frame(&[2; 3], &mut wire).unwrap();
        rustix::io::write(&w, &wire).unwrap();
        let e = rx.recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        assert_eq!(e.message_size(), Some((101, 100)));
        assert_eq!(rx.recv(&mut buf).unwrap(), 3);
        assert_eq!(buf[..3], [2; 3]);

        rustix::io::write(&w, &encode_header(PIPE_BUF).unwrap()).unwrap();
        for _ in 0..2 {
            let e = rx.recv(&mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
        }

        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut rx = FrameReceiver::new(r, 100, "p").unwrap();
        rustix::io::write(&w, &encode_header(0).unwrap()).unwrap();
        drop(w);
        assert_eq!(rx.recv(&mut buf).unwrap(), 0);
        let e = rx.recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        assert!(!e.to_string().contains("partial"), "{e}");
    }

    /// A sender allowed larger messages than its receiver: each message above the receiver's
    /// maximum is one `MessageTooLarge` naming both sizes, and every message around it arrives
    /// whole and in order, by every form of receive and read-ahead policy, on every read path
    /// (the decoder's, the one-`readv` prefix-first path after a message of 32 KiB or more,
    /// the direct read of a large message's rest). A writer closing in the middle of a dropped
    /// message is `Disconnected` saying so. Fails on the old code, where the first such
    /// message made the stream `Corrupted` for good and lost every message after it.
    #[test]
    fn messages_above_the_receiver_maximum_are_dropped_and_the_rest_arrive() {
        let sizes = [
            10, 200_000, 40_000, 65_537, 40_000, 300_000, 65_536, 70_000, 0, 10,
        ];
        for policy in [ReadAhead::Adaptive, ReadAhead::Always, ReadAhead::Never] {
            for form in ["recv", "deadline", "try"] {
                let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
                let mut tx = FrameSender::new(
                    w,
                    FrameMode::Stream {
                        max_message: 1 << 20,
                    },
                    "p",
                )
                .unwrap();
                let mut rx = FrameReceiver::new(r, 65_536, "p").unwrap();
                rx.set_read_ahead(policy);
                let writer = std::thread::spawn(move || {
                    for (i, &len) in sizes.iter().enumerate() {
                        tx.send(&vec![i as u8; len]).unwrap();
                    }
                    // The last one is cut by the close: 1000 of 100,000 bytes.
                    let mut cut = encode_header(100_000).unwrap().to_vec();
                    cut.extend_from_slice(&[9; 1000]);
                    rustix::io::write(tx.get_ref(), &cut).unwrap();
                });
                let mut buf = vec![0u8; 65_536];
                for (i, &len) in sizes.iter().enumerate() {
                    let r = loop {
                        let r = match form {
                            "recv" => rx.recv(&mut buf),
                            "deadline" => rx.recv_timeout(&mut buf, Duration::from_secs(60)),
                            _ => rx.try_recv(&mut buf),
                        };
                        match r {
                            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
                            r => break r,
                        }
                    };
                    let what = format!("{policy:?} {form} message {i} of {len} bytes");
                    if len > 65_536 {
                        let e = r.expect_err(&what);
                        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{what}: {e}");
                        assert_eq!(e.message_size(), Some((len, 65_536)), "{what}");
                    } else {
                        assert_eq!(r.expect(&what), len, "{what}");
                        assert!(buf[..len].iter().all(|&b| b == i as u8), "{what}: torn");
                    }
                }
                writer.join().unwrap();
                let e = loop {
                    match rx.try_recv(&mut buf) {
                        Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
                        r => break r.unwrap_err(),
                    }
                };
                assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
                let e = rx.recv(&mut buf).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
                assert!(
                    e.to_string().contains("99000 of its bytes never came"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn writer_dying_mid_message_is_disconnected_with_a_note() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        rustix::io::write(&w, &encode_header(100).unwrap()).unwrap();
        rustix::io::write(&w, &[0; 10]).unwrap();
        drop(w);
        let mut rx = FrameReceiver::new(r, 1000, "p").unwrap();
        let e = rx.recv(&mut [0; 1000]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected);
        assert!(e.to_string().contains("10 of 100"), "{e}");
    }
}

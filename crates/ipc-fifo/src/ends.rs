//! The two ends of an open FIFO: [`FifoReader`] and [`FifoWriter`], byte streams
//! (`Read`/`Write`, fd traits) that turn into message endpoints ([`FifoReceiver`],
//! [`FifoSender`]).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ipc_core::fd::{SigpipeGuard, is_nonblocking, set_nonblocking};
use ipc_core::frame::MAX_ATOMIC_PAYLOAD;
use ipc_core::stream::{FrameMode, FrameReceiver, FrameSender};
use ipc_core::{Blocked, Error, ErrorKind, PIPE_BUF, Result};
use rustix::io::Errno;

use crate::open::debug_err;

/// Message sender over a FIFO: length-prefixed frames ([`FrameSender`]) on a [`FifoWriter`].
pub type FifoSender = FrameSender<FifoWriter>;

/// Message receiver over a FIFO: length-prefixed frames ([`FrameReceiver`]) from a
/// [`FifoReader`].
pub type FifoReceiver = FrameReceiver<FifoReader>;

/// The object name errors use: the path, or the descriptor for an adopted one.
fn label(path: Option<&Path>, fd: BorrowedFd<'_>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => format!("FIFO (fd {})", fd.as_raw_fd()),
    }
}

/// An errno from `read`/`write` as an `io::Error`: bare for the kinds callers branch on in
/// loops (would-block, interrupted), otherwise an [`Error`] naming the FIFO.
fn io_err(e: Errno, op: &'static str, path: Option<&Path>, fd: BorrowedFd<'_>) -> io::Error {
    match e {
        Errno::AGAIN | Errno::INTR => io::Error::from_raw_os_error(e.raw_os_error()),
        _ => Error::from(e).in_op(op).on(label(path, fd)).into(),
    }
}

/// The read end of a FIFO.
///
/// A byte stream: [`Read`](std::io::Read) returns what writers wrote, in order, with no message
/// boundaries, and `Ok(0)` (end-of-file) once no writer has the FIFO open and everything
/// written was read. For messages, [`into_receiver`](FifoReader::into_receiver).
///
/// Made by [`OpenOptions::open_read`](crate::OpenOptions::open_read), or adopted from a
/// descriptor with `From<OwnedFd>` (no checks are made on an adopted descriptor).
#[derive(Debug)]
pub struct FifoReader {
    fd: OwnedFd,
    /// The write end held by [`keep_open`](crate::OpenOptions::keep_open). Behind a lock so
    /// it can be let go of through a shared reference (a [`FifoReceiver`] lends only those).
    keepalive: Mutex<Option<OwnedFd>>,
    path: Option<PathBuf>,
}

impl FifoReader {
    pub(crate) fn from_parts(fd: OwnedFd, keepalive: Option<OwnedFd>, path: PathBuf) -> Self {
        FifoReader {
            fd,
            keepalive: Mutex::new(keepalive),
            path: Some(path),
        }
    }

    /// The path it was opened at (`None` if adopted from a descriptor).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Whether this reader holds a write end of its own, so it does not see end-of-file while
    /// writers come and go ([`OpenOptions::keep_open`](crate::OpenOptions::keep_open)).
    pub fn keeps_open(&self) -> bool {
        self.keepalive().is_some()
    }

    /// Closes the write end held by [`keep_open`](crate::OpenOptions::keep_open): from now on
    /// the reader sees end-of-file once the other writers have closed and their data is read.
    /// For a graceful shutdown of a server; callable through a receiver's
    /// [`get_ref`](FifoReceiver::get_ref).
    pub fn stop_keeping_open(&self) {
        if self.keepalive().take().is_some() {
            tracing::trace!(path = ?self.path, "FIFO keep-open write end closed");
        }
    }

    /// Sets or clears `O_NONBLOCK` (`fcntl(2)`). Only this end is affected: every open of a
    /// FIFO has its own open file description (a `dup` or a child that inherited this
    /// descriptor shares it, though).
    #[doc(alias = "fcntl")]
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<()> {
        set_nonblocking(&self.fd, nonblocking).map_err(|e| self.err(e.into(), "fcntl(F_SETFL)"))
    }

    /// Whether `O_NONBLOCK` is set.
    pub fn is_nonblocking(&self) -> Result<bool> {
        is_nonblocking(&self.fd).map_err(|e| self.err(e.into(), "fcntl(F_GETFL)"))
    }

    /// The FIFO's buffer capacity in bytes (`fcntl(F_GETPIPE_SZ)`; 64 KiB by default).
    #[doc(alias = "F_GETPIPE_SZ")]
    pub fn capacity(&self) -> Result<usize> {
        rustix::pipe::fcntl_getpipe_size(&self.fd)
            .map_err(|e| self.err(e.into(), "fcntl(F_GETPIPE_SZ)"))
    }

    /// Sets the FIFO's buffer capacity (`fcntl(F_SETPIPE_SZ)`); the kernel rounds it up to a
    /// power-of-two number of pages and returns the size it set. Unprivileged processes are
    /// bounded by `/proc/sys/fs/pipe-max-size` ([`ErrorKind::LimitExceeded`] naming it); a size
    /// below what the FIFO holds now fails with `EBUSY`.
    #[doc(alias = "F_SETPIPE_SZ")]
    pub fn set_capacity(&self, bytes: usize) -> Result<usize> {
        rustix::pipe::fcntl_setpipe_size(&self.fd, bytes).map_err(|e| {
            let err = if e == Errno::PERM {
                Error::limit(
                    "/proc/sys/fs/pipe-max-size",
                    read_knob("/proc/sys/fs/pipe-max-size"),
                )
                .with_source(io::Error::from_raw_os_error(e.raw_os_error()))
            } else {
                e.into()
            };
            self.err(err, "fcntl(F_SETPIPE_SZ)")
        })
    }

    /// Turns this end into a message receiver accepting messages of at most `max_message`
    /// bytes. For records from [`FifoWriter::into_sender`] (several writers), use
    /// [`MAX_ATOMIC_PAYLOAD`]; see [`into_atomic_receiver`](FifoReader::into_atomic_receiver).
    ///
    /// The receiver reports [`ErrorKind::Disconnected`] when the last writer has closed and
    /// every complete message was received. One receiver per FIFO: two readers would split
    /// frames between them.
    ///
    /// # Keep-open readers take atomic records only
    ///
    /// A reader that [keeps the FIFO open](crate::OpenOptions::keep_open) is refused here with
    /// [`ErrorKind::InvalidInput`] when `max_message` is above [`MAX_ATOMIC_PAYLOAD`]. A
    /// message larger than that takes several writes, and two things then break it with no way
    /// for the reader to tell: a writer killed in the middle of it leaves a partial frame that
    /// no end-of-file ever cuts off (the reader's own write end keeps the FIFO open), so the
    /// next writer's frames would be read as the rest of it; and any other writer's frames can
    /// land between its writes. Records of at most `MAX_ATOMIC_PAYLOAD` bytes are one atomic
    /// write each: a killed writer leaves either a whole record or nothing. A keep-open
    /// receiver that meets a larger frame anyway (a writer that broke this rule) reports
    /// [`ErrorKind::Corrupted`], never a message, and keeps reporting it: what the FIFO holds
    /// cannot be split into messages any more (recreate the FIFO to go on). Without `keep_open`, or after
    /// [`stop_keeping_open`](FifoReader::stop_keeping_open), messages of any size are fine
    /// with one writer: a writer that dies mid-message closes the stream, and the partial
    /// message is dropped.
    pub fn into_receiver(self, max_message: usize) -> Result<FifoReceiver> {
        let label = label(self.path.as_deref(), self.fd.as_fd());
        if max_message > MAX_ATOMIC_PAYLOAD && self.keeps_open() {
            return Err(debug_err(
                Error::with_note(
                    ErrorKind::InvalidInput,
                    format!(
                        "a keep_open reader takes messages of at most {MAX_ATOMIC_PAYLOAD} bytes \
                         (one atomic write each), not {max_message}: a larger message from a \
                         writer killed mid-message would have no end-of-file to end it"
                    ),
                )
                .in_op("make a message receiver")
                .on(label),
            ));
        }
        FrameReceiver::new(self, max_message, label)
    }

    /// A message receiver for atomic records (at most [`MAX_ATOMIC_PAYLOAD`] = 4092 bytes), the
    /// counterpart of [`FifoWriter::into_sender`].
    pub fn into_atomic_receiver(self) -> Result<FifoReceiver> {
        self.into_receiver(MAX_ATOMIC_PAYLOAD)
    }

    fn keepalive(&self) -> std::sync::MutexGuard<'_, Option<OwnedFd>> {
        // Nothing can panic while the lock is held; a poisoned lock still holds a valid Option.
        self.keepalive.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, e: Error, op: &'static str) -> Error {
        debug_err(e.in_op(op).on(label(self.path.as_deref(), self.fd.as_fd())))
    }
}

impl io::Read for FifoReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }
}

impl io::Read for &FifoReader {
    /// `read(2)`. Blocks while the FIFO is empty and a writer has it open (unless non-blocking);
    /// `Ok(0)` at end-of-file.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        rustix::io::read(&self.fd, buf)
            .map_err(|e| io_err(e, "read", self.path.as_deref(), self.fd.as_fd()))
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        rustix::io::readv(&self.fd, bufs)
            .map_err(|e| io_err(e, "read", self.path.as_deref(), self.fd.as_fd()))
    }
}

impl AsFd for FifoReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for FifoReader {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<OwnedFd> for FifoReader {
    /// Adopts a descriptor open for reading on a FIFO (or pipe), unchecked.
    fn from(fd: OwnedFd) -> FifoReader {
        FifoReader {
            fd,
            keepalive: Mutex::new(None),
            path: None,
        }
    }
}

impl From<FifoReader> for OwnedFd {
    /// The read descriptor. A keep-open write end is closed.
    fn from(r: FifoReader) -> OwnedFd {
        r.fd
    }
}

/// The write end of a FIFO.
///
/// A byte stream: [`Write`](std::io::Write) never raises `SIGPIPE` (with the disposition as it
/// was when the end was opened, see [`SigpipeGuard`]); with no reader left it
/// fails with `BrokenPipe` ([`ErrorKind::Disconnected`]). A write of at most `PIPE_BUF` (4096)
/// bytes is atomic: it never interleaves with other writers' data.
/// [`write_atomic`](FifoWriter::write_atomic) makes that a checked promise for records such as
/// log lines, and [`into_sender`](FifoWriter::into_sender) gives a message endpoint that is safe
/// with any number of writers.
///
/// Made by [`OpenOptions::open_write`](crate::OpenOptions::open_write), or adopted from a
/// descriptor with `From<OwnedFd>`.
#[derive(Debug)]
pub struct FifoWriter {
    fd: OwnedFd,
    path: Option<PathBuf>,
    sigpipe: SigpipeGuard,
}

impl FifoWriter {
    pub(crate) fn from_parts(fd: OwnedFd, path: PathBuf) -> Self {
        FifoWriter {
            fd,
            path: Some(path),
            sigpipe: SigpipeGuard::detect(),
        }
    }

    /// The path it was opened at (`None` if adopted from a descriptor).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes `record` with one `write(2)`, which the kernel makes atomic: the reader gets it
    /// in one piece, never mixed with other writers' bytes. Blocks until there is room for all
    /// of it (unless non-blocking).
    ///
    /// # Errors
    /// - [`ErrorKind::MessageTooLarge`]: `record` is longer than `PIPE_BUF` (4096) bytes;
    ///   nothing was written.
    /// - [`ErrorKind::WouldBlock`]: non-blocking and no room for the whole record; nothing was
    ///   written.
    /// - [`ErrorKind::Disconnected`]: no process has the FIFO open for reading (`EPIPE`).
    ///
    /// # References
    /// - [`pipe(7)`](https://man7.org/linux/man-pages/man7/pipe.7.html) (`PIPE_BUF`)
    #[doc(alias = "write")]
    pub fn write_atomic(&mut self, record: &[u8]) -> Result<()> {
        if record.len() > PIPE_BUF {
            return Err(self.err(
                Error::message_too_large(record.len(), PIPE_BUF, "PIPE_BUF: atomic FIFO writes"),
                "write",
            ));
        }
        loop {
            return match self.sigpipe.write(self.fd.as_fd(), record) {
                Ok(n) if n == record.len() => Ok(()),
                Ok(n) => Err(self.err(
                    Error::with_note(
                        ErrorKind::Io,
                        format!("short write of {n} of {} bytes", record.len()),
                    ),
                    "write",
                )),
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => Err(self.err(Error::would_block(Blocked::Full), "write")),
                Err(e) => Err(self.err(e.into(), "write")),
            };
        }
    }

    /// Sets or clears `O_NONBLOCK` (`fcntl(2)`); only this end is affected (see
    /// [`FifoReader::set_nonblocking`]).
    #[doc(alias = "fcntl")]
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<()> {
        set_nonblocking(&self.fd, nonblocking).map_err(|e| self.err(e.into(), "fcntl(F_SETFL)"))
    }

    /// Whether `O_NONBLOCK` is set.
    pub fn is_nonblocking(&self) -> Result<bool> {
        is_nonblocking(&self.fd).map_err(|e| self.err(e.into(), "fcntl(F_GETFL)"))
    }

    /// The FIFO's buffer capacity in bytes (`fcntl(F_GETPIPE_SZ)`).
    #[doc(alias = "F_GETPIPE_SZ")]
    pub fn capacity(&self) -> Result<usize> {
        rustix::pipe::fcntl_getpipe_size(&self.fd)
            .map_err(|e| self.err(e.into(), "fcntl(F_GETPIPE_SZ)"))
    }

    /// Turns this end into a message sender for several writers: every message is one frame of
    /// at most `PIPE_BUF` bytes written with one `write`, so messages from any number of
    /// writers never interleave. Messages above [`MAX_ATOMIC_PAYLOAD`] (4092 bytes) are refused
    /// with [`ErrorKind::MessageTooLarge`] and nothing is written.
    pub fn into_sender(self) -> Result<FifoSender> {
        let label = label(self.path.as_deref(), self.fd.as_fd());
        FrameSender::new(self, FrameMode::Atomic, label)
    }

    /// Turns this end into a message sender for a single writer: messages of up to
    /// `max_message` bytes. Larger than `PIPE_BUF`, a message takes several writes, so this
    /// must be the FIFO's only writer.
    pub fn into_stream_sender(self, max_message: usize) -> Result<FifoSender> {
        let label = label(self.path.as_deref(), self.fd.as_fd());
        FrameSender::new(self, FrameMode::Stream { max_message }, label)
    }

    fn err(&self, e: Error, op: &'static str) -> Error {
        debug_err(e.in_op(op).on(label(self.path.as_deref(), self.fd.as_fd())))
    }
}

impl io::Write for FifoWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Write for &FifoWriter {
    /// `write(2)`, without `SIGPIPE`. Blocks while the FIFO is full (unless non-blocking).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sigpipe
            .write(self.fd.as_fd(), buf)
            .map_err(|e| io_err(e, "write", self.path.as_deref(), self.fd.as_fd()))
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.sigpipe
            .writev(self.fd.as_fd(), bufs)
            .map_err(|e| io_err(e, "write", self.path.as_deref(), self.fd.as_fd()))
    }
    /// Nothing is buffered here: a no-op.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for FifoWriter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for FifoWriter {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<OwnedFd> for FifoWriter {
    /// Adopts a descriptor open for writing on a FIFO (or pipe), unchecked.
    fn from(fd: OwnedFd) -> FifoWriter {
        FifoWriter {
            fd,
            path: None,
            sigpipe: SigpipeGuard::detect(),
        }
    }
}

impl From<FifoWriter> for OwnedFd {
    fn from(w: FifoWriter) -> OwnedFd {
        w.fd
    }
}

/// Reads a numeric `/proc/sys` knob, for error messages.
fn read_knob(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

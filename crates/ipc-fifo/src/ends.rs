//! The ends of an open FIFO: the workspace's one pipe end ([`PipeReader`], [`PipeWriter`] from
//! `ipc_core::pipe`, also what `ipc-pipe` returns) under their FIFO names, and the message
//! endpoints over them ([`FifoSender`], [`FifoReceiver`]).
//!
//! An end opened at a path remembers it ([`path`](PipeReader::path)) and names it in errors; a
//! reader opened with [`keep_open`](crate::OpenOptions::keep_open) holds a write end of its own
//! ([`keeps_open`](PipeReader::keeps_open), [`stop_keeping_open`](PipeReader::stop_keeping_open)).
//! Everything else (reads and writes with deadlines, [`write_atomic`](PipeWriter::write_atomic),
//! non-blocking mode, capacity, the fd traits, `SIGPIPE`-free writes) is the pipe end's.

use ipc_core::pipe::{PipeReader, PipeWriter};
use ipc_core::stream::{FrameReceiver, FrameSender};

/// The read end of a FIFO: a [`PipeReader`], made by
/// [`OpenOptions::open_read`](crate::OpenOptions::open_read) or adopted from a descriptor with
/// `From<OwnedFd>` (unchecked) or [`adopt`](PipeReader::adopt) (checked).
///
/// A byte stream: [`Read`](std::io::Read) returns what writers wrote, in order, with no message
/// boundaries, and `Ok(0)` (end-of-file) once no writer has the FIFO open and everything
/// written was read. For messages, [`into_receiver`](PipeReader::into_receiver) or
/// [`into_atomic_receiver`](PipeReader::into_atomic_receiver).
pub type FifoReader = PipeReader;

/// The write end of a FIFO: a [`PipeWriter`], made by
/// [`OpenOptions::open_write`](crate::OpenOptions::open_write) or adopted from a descriptor.
///
/// A byte stream: [`Write`](std::io::Write) never raises `SIGPIPE`; with no reader left it
/// fails with `BrokenPipe` ([`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected)). A
/// write of at most `PIPE_BUF` (4096) bytes is atomic: it never interleaves with other
/// writers' data. [`write_atomic`](PipeWriter::write_atomic) makes that a checked promise for
/// records such as log lines, and [`into_atomic_sender`](PipeWriter::into_atomic_sender) gives
/// a message endpoint that is safe with any number of writers.
pub type FifoWriter = PipeWriter;

/// Message sender over a FIFO: length-prefixed frames ([`FrameSender`]) on a [`FifoWriter`]
/// (the same type as `ipc_pipe::PipeSender`).
pub type FifoSender = FrameSender<FifoWriter>;

/// Message receiver over a FIFO: length-prefixed frames ([`FrameReceiver`]) from a
/// [`FifoReader`] (the same type as `ipc_pipe::PipeReceiver`).
pub type FifoReceiver = FrameReceiver<FifoReader>;

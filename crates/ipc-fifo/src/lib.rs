//! Named pipes (FIFOs) for Linux: a pipe with a name in the filesystem, so processes that are
//! not related can find each other.
//!
//! - [`Fifo::create`] / [`CreateOptions`]: `mkfifo` with exactly the mode asked for (`0o600`
//!   by default, the umask does not narrow it), and a guard that unlinks it on drop.
//! - [`OpenOptions`]: open for reading or writing, waiting for the other end as the kernel does,
//!   not at all, or until a deadline; refusing symbolic links, other file types and other
//!   owners (see [Safety of paths](#safety-of-paths)).
//! - [`FifoReader`] / [`FifoWriter`]: byte streams (`Read`/`Write`, `AsFd`, `From<OwnedFd>`,
//!   ...) with [`FifoWriter::write_atomic`] for records that must not interleave, reads and
//!   writes with a [`Deadline`] ([`FifoReader::read_deadline`], [`FifoWriter::write_deadline`]),
//!   and the [capacity](FifoWriter::set_capacity). They are the workspace's one pipe end
//!   ([`PipeEnd`] in `ipc_core::pipe`, the type `ipc-pipe` returns too): a FIFO is a path-safe
//!   way to create and open those ends.
//! - [`FifoSender`] / [`FifoReceiver`]: message endpoints implementing the `ipc-core` traits;
//!   [`FifoWriter::into_atomic_sender`] is safe with any number of writer processes.
//! - [`Listener`] / [`Connection`]: full duplex over two FIFOs, each client with its own pair.
//! - The core vocabulary ([`MessageSender`], [`MessageReceiver`], [`Deadline`], [`Error`],
//!   [`ErrorKind`], [`Result`], [`Owner`]) is re-exported here and in [`prelude`]: a program can
//!   depend on this crate alone.
//!
//! # When to use a FIFO
//!
//! Use a FIFO when processes that do not share a parent must talk through a name they agree
//! on, and especially when one side is a shell or another program that only knows files
//! (`cat`, `echo … >`, `tail -f`-style loggers): a FIFO is a file to them. Many writers to one
//! reader (a log collector, a job queue) is the FIFO's strength: writes of at most `PIPE_BUF`
//! (4096) bytes are atomic. Prefer an anonymous pipe (`ipc-pipe`) between a parent and its
//! child (no name to clean up or to protect), a POSIX message queue (`ipc-mq`) when you need
//! message priorities or records up to the queue's message size from many writers, shared
//! memory (`ipc-shm`) for bulk data without kernel copies, and sockets for anything across
//! machines (a FIFO on a network filesystem does not connect machines: each kernel has its own
//! pipe buffer).
//!
//! # Example: the shell session, with this crate
//!
//! ```sh
//! $ mkfifo mypipe
//! $ echo "12345" > mypipe &
//! $ cat mypipe
//! 12345
//! ```
//!
//! ```
//! use std::io::{Read, Write};
//! use ipc_fifo::Fifo;
//!
//! let dir = std::env::temp_dir().join(format!("ipc-fifo-doc-top-{}", std::process::id()));
//! std::fs::create_dir(&dir)?;
//! let fifo = Fifo::create(dir.join("mypipe"))?; // mkfifo mypipe (mode 0o600)
//!
//! let path = fifo.path().to_path_buf();
//! let echo = std::thread::spawn(move || -> ipc_fifo::Result<()> {
//!     // echo "12345" > mypipe: the open waits for a reader
//!     let mut w = ipc_fifo::OpenOptions::new().open_write(&path)?;
//!     w.write_all(b"12345\n")?;
//!     Ok(())
//! });
//!
//! let mut cat = fifo.open_read()?; // cat mypipe: the open waits for a writer
//! let mut out = String::new();
//! cat.read_to_string(&mut out)?; // until the writer closes
//! echo.join().unwrap()?;
//! assert_eq!(out, "12345\n");
//!
//! drop(fifo); // rm mypipe
//! std::fs::remove_dir(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The runnable examples `shell_session` (the same session, with the real `echo` and `cat`)
//! and `log_collector` (many writer processes, one reader) are in `examples/`.
//!
//! # Async and poll loops
//!
//! [`FifoSender`] and [`FifoReceiver`] implement [`Readiness`] (the FIFO's descriptor), so
//! they join a `poll`/`epoll` loop beside other endpoints; with the `tokio` feature,
//! `AsyncEndpoint::new(end)` makes them async (the same adapter and cancel safety as pipes).
//!
//! # Safety of paths
//!
//! A FIFO's name lives in a directory other processes may be able to write to, so whatever is
//! at the path when it is opened may not be what the caller expects. Opening never follows a
//! symbolic link in the last component, never blocks on or opens for I/O anything that is not a
//! FIFO (a device planted at the path would otherwise be opened, with whatever side effects
//! that has), and checks the owner; each refusal is a typed error naming the path
//! ([`ErrorKind::WrongType`],
//! [`ErrorKind::PermissionDenied`]). The checks are
//! made with `fstat` on an `O_PATH` handle, and the FIFO is then opened through that handle,
//! never by a second lookup of the path (details in [`OpenOptions`]). Creation is equally
//! careful (see [`CreateOptions::create`]).
//!
//! # End-of-file
//!
//! A reader sees end-of-file when the last writer closes (a message receiver reports
//! [`ErrorKind::Disconnected`]), after everything written
//! was read; also before any writer came, when it was opened without waiting for one
//! ([`Deadline::Now`], [`OpenOptions::nonblocking`]): a FIFO with no
//! writer reads as ended, and a receive after a writer opened it gets the writer's messages.
//! A server that serves one writer after another opens its reader with
//! [`OpenOptions::keep_open`]: it then holds a write end of its own and its reads wait for the
//! next writer instead. Such a reader takes atomic records only (at most 4092 bytes each): a
//! larger message could be cut by a writer killed in the middle of it with no end-of-file to
//! tell the reader, so [`FifoReader::into_receiver`] refuses the combination with
//! [`ErrorKind::InvalidInput`].
//!
//! # Several writers, several readers
//!
//! Any number of processes can write to one FIFO: a write of at most `PIPE_BUF` bytes lands in
//! one piece. The message endpoints from [`FifoWriter::into_atomic_sender`] rely on that: each message
//! is one frame of at most `PIPE_BUF` bytes written at once, and larger messages are refused
//! with [`ErrorKind::MessageTooLarge`]. A message receiver takes only such frames: bytes
//! from any other writer (a shell's `echo … >` into the FIFO, a buggy peer) are read as a
//! frame header, which then announces far more than any message (text does: "hell" is 1.8 GB):
//! [`ErrorKind::Corrupted`], and the receiver cannot find the frames behind them (a frame has no
//! marker to look for), so every later receive fails the same way: give a FIFO of messages
//! only to writers that frame, and read one that any program may write to as bytes.
//! ([`Listener`] is the exception: it finds its hellos behind junk.) Several readers
//! are another matter: the kernel hands each `read` whatever bytes are there, so two readers
//! split a stream of variable-size records between them at arbitrary points. Use one reader per
//! FIFO (fan out from there), or records of one fixed size read with exactly that size.
//!
//! `SIGPIPE` never kills the process: a write with no reader left fails with
//! [`ErrorKind::Disconnected`], also when the reader leaves
//! while the write is blocked half-way. (The disposition is read when an end is opened: a
//! program that sets `SIGPIPE` to its default action does so before opening its ends; see
//! [`SigpipeGuard`](ipc_core::fd::SigpipeGuard).)
//!
//! # Deadlines and dropping a sender
//!
//! No call waits past the deadline it was given. A message larger than `PIPE_BUF` whose
//! deadline passes after its first bytes went out is reported as
//! [`ErrorKind::Incomplete`]: in progress, finished first by
//! the next send, not to be sent again. Dropping a sender waits at most its
//! [linger time](ipc_core::stream::FrameSender::set_linger) (1 s by default) for such a
//! message, then abandons it, and the reader drops the partial message when the stream ends.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod create;
pub mod duplex;
mod ends;
mod open;

pub use create::{CreateOptions, DEFAULT_MODE, Fifo};
pub use duplex::{
    BACKLOG, ConnectOptions, Connection, HANDSHAKE, Listener, PAIR_SUFFIX_MAX, STALE_AFTER,
};
pub use ends::{FifoReader, FifoReceiver, FifoSender, FifoWriter};
pub use ipc_core::frame::{MAX_ATOMIC_PAYLOAD, PIPE_BUF};
pub use ipc_core::pipe::{PipeEnd, PipeReader, PipeWriter, Reading, Writing, max_capacity};
pub use ipc_core::stream::{FrameMode, ReadAhead};
pub use ipc_core::{Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Owner, Result};
pub use open::OpenOptions;

pub use ipc_core::Readiness;
pub use ipc_core::fd::Interest;
/// The async form of any endpoint of this crate (feature `tokio`): `AsyncEndpoint::new(end)`;
/// `YieldPolicy`: what its waits do before they park the task; `WaitStats`: what they did.
#[cfg(feature = "tokio")]
pub use ipc_core::tokio::{AsyncEndpoint, WaitStats, YieldPolicy};

/// What a program using FIFOs needs in scope: the core vocabulary (message traits, deadlines,
/// errors). `use ipc_fifo::prelude::*;`
pub mod prelude {
    pub use ipc_core::{Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Result};
}

use ipc_core::{MaxMessage, Properties};

/// A FIFO carrying messages from any number of writers ([`FifoWriter::into_atomic_sender`]): each
/// message one atomic write of at most `PIPE_BUF`, so at most 4092 bytes of payload.
pub const PROPERTIES: Properties = Properties {
    mechanism: "fifo",
    keeps_boundaries: true,
    max_message: MaxMessage::Bytes(MAX_ATOMIC_PAYLOAD),
    multi_producer: true,
    // Readers split variable-size frames between them (see the crate docs).
    multi_consumer: false,
    needs_related_process: false,
    namespace: Some("filesystem path"),
    kernel_copies_per_message: 2,
    crosses_machines: false,
};

/// A FIFO with a single writer ([`FifoWriter::into_stream_sender`], and each direction of a
/// [`Connection`]): messages of any size.
pub const STREAM_PROPERTIES: Properties = Properties {
    mechanism: "fifo (single writer)",
    keeps_boundaries: true,
    max_message: MaxMessage::Unbounded,
    multi_producer: false,
    multi_consumer: false,
    needs_related_process: false,
    namespace: Some("filesystem path"),
    kernel_copies_per_message: 2,
    crosses_machines: false,
};

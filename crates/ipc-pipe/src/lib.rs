//! Anonymous pipes for Linux: the oldest IPC mechanism, between a parent and its children.
//!
//! A pipe is a one-way byte stream through a kernel buffer: what one process writes into the
//! write end, another reads from the read end, in order. It has no name; the ends are file
//! descriptors, and a process gets them by creating the pipe or by inheriting them from the
//! process that did. When the last write end closes, the reader sees end-of-file; when the last
//! read end closes, a writer gets `EPIPE`. So a pipe reports a peer that exits or crashes
//! without any extra protocol.
//!
//! # What is here
//!
//! - [`pipe`] gives a [`PipeReader`] and a [`PipeWriter`]: `Read`/`Write`, the fd traits,
//!   non-blocking mode, reads and writes with a [`Deadline`], the
//!   [capacity](PipeWriter::set_capacity) (`F_SETPIPE_SZ`), close-on-exec by default. They are
//!   the workspace's one pipe end ([`PipeEnd`] in `ipc_core::pipe`): a FIFO opened with
//!   `ipc-fifo` gives the same types.
//! - [`channel`] gives a [`PipeSender`] and a [`PipeReceiver`]: whole messages through the core
//!   traits [`MessageSender`] / [`MessageReceiver`], length-prefix framed, in
//!   [`FrameMode::Atomic`] (messages up to 4092 bytes, safe with several writers) or
//!   [`FrameMode::Stream`] (large messages, one writer).
//! - [`duplex`] and [`duplex_channel`]: two pipes crossed make a full-duplex pair, as bytes or
//!   as messages.
//! - [`ChildPipes`] hands ends to a child process as its stdin, stdout, any fd number or by name,
//!   leaking no other descriptor and closing the parent's copies at spawn; the child adopts a
//!   named end with [`PipeReader::from_inherited`] / [`PipeWriter::from_inherited`].
//! - Zero-copy, through the traits [`SpliceRead`] and [`SpliceWrite`] (in the [`prelude`]):
//!   [`splice_to`](SpliceRead::splice_to) / [`splice_from`](SpliceWrite::splice_from)
//!   (`splice(2)` to or from a file, socket or pipe), [`tee_to`](SpliceRead::tee_to)
//!   (`tee(2)`), and [`vmsplice`](SpliceWrite::vmsplice) of a [`PageBuf`], whose type keeps spliced pages out of reach so
//!   the reader gets exactly what was spliced. [`packet_pipe`] makes a pipe in packet mode
//!   (`O_DIRECT`): one write, one read.
//!
//! # When to pick a pipe
//!
//! | You need | Use |
//! |---|---|
//! | to talk to a child you start (or a program's stdin/stdout), one way or both | **a pipe** (this crate) |
//! | unrelated processes meeting at a path, several writers' records into one reader | a FIFO (`ipc-fifo`): a pipe with a name |
//! | kernel-kept message boundaries and priorities, by name, readers and writers coming and going | a message queue (`ipc-mq`); it does not report a dead peer |
//! | bulk data or the lowest latency, with no kernel copy after setup | shared memory (`ipc-shm`), at the price of synchronisation and validating what the peer wrote |
//! | another machine, passing descriptors, or one descriptor for both directions | sockets (`ipc-socket`: Unix-domain and TCP, behind the same traits) |
//!
//! Pipes need no name (so nothing to clean up after a crash and nothing another user can
//! squat), tell each side when the other is gone, and work with any program's standard
//! streams. They cost two copies per message (into the kernel and out), carry 64 KiB in flight
//! by default, and connect only processes that share an ancestor that made the pipe. For how
//! they compare in speed on your machine, run `cargo xtask bench`.
//!
//! # Async and poll loops
//!
//! Message endpoints ([`PipeSender`], [`PipeReceiver`]) implement [`Readiness`]: the pipe's
//! own descriptor, readable when a message (or the end) is there, writable when there is
//! room; a poll loop drains `try_recv` until `WouldBlock` before it waits. With the `tokio`
//! feature, `AsyncEndpoint::new(end)` gives them `async fn send`/`recv`/`flush` (cancel
//! safety: a dropped receive took nothing; a stream-framed message above `PIPE_BUF` cut
//! mid-write is committed and finished by the next call, see `ipc_core::tokio`).
//!
//! # Facts this crate follows
//!
//! - A write of at most [`PIPE_BUF`] (4096) bytes is atomic: it never interleaves with other
//!   writers' bytes. Larger writes may. Atomic-mode messages are framed to fit.
//! - A write with no reader fails with `EPIPE`, reported as
//!   [`ErrorKind::Disconnected`] (or
//!   `io::ErrorKind::BrokenPipe`): the process never dies of `SIGPIPE`, whatever disposition it
//!   inherited, also when the reader leaves while a write is blocked half-way (the write then
//!   returns a short count). The disposition is read when an end is made: set it before.
//! - No call waits past its deadline, with one exception: a splice call's deadline covers the
//!   pipe, and the other descriptor (a socket, say) blocks as its own mode says, since
//!   `SPLICE_F_NONBLOCK` reaches only the pipe and its `O_NONBLOCK` flag is shared with every
//!   holder: make that descriptor non-blocking for a deadline that holds both ways (see
//!   [`SpliceRead::splice_to`]). A message whose deadline passes half-way is
//!   [`ErrorKind::Incomplete`] (in progress, finished by the
//!   next send); dropping a sender waits at most its
//!   [linger time](ipc_core::stream::FrameSender::set_linger) for it, then abandons it, and the
//!   receiver drops the partial message.
//! - End-of-file is `Ok(0)` on the byte stream and
//!   [`ErrorKind::Disconnected`] on the message receiver,
//!   after everything queued before it.
//! - The capacity defaults to 64 KiB and can be raised up to `/proc/sys/fs/pipe-max-size`
//!   (further with `CAP_SYS_RESOURCE`: the kernel decides, and a refusal names the knob). A
//!   stream sender raises it itself when its messages may exceed a page: to hold one frame of
//!   its largest message, and to [`STREAM_SLOTS`] (32) pages, from the user's pipe page budget
//!   ([`USER_PAGES_SOFT_KNOB`]); refused, the pipe keeps its capacity and works
//!   ([`PipeWriter::fit_frame`], [`PipeWriter::into_sender_keeping_capacity`]).
//! - Everything a program needs is re-exported here (and in [`prelude`]): it can depend on
//!   this crate alone.
//!
//! # Example: a parent writes, its child reads
//!
//! The seed's first example: a pipe from parent to child, here with `sh` as the child reading
//! one line from its stdin. `examples/parent_to_child.rs` does the same with this crate on
//! both sides, `examples/duplex.rs` holds a conversation, `examples/zero_copy.rs` moves data
//! with `vmsplice` and `splice`.
//!
//! ```
//! use std::io::Write;
//! use std::process::Command;
//! use ipc_pipe::ChildPipes;
//!
//! let (reader, mut writer) = ipc_pipe::pipe()?;
//! let mut pipes = ChildPipes::new();
//! pipes.stdin(reader)?; // the child reads the pipe as its stdin; we keep no read end
//! let mut sh = Command::new("sh");
//! sh.args(["-c", r#"read line && test "$line" = "hello, child""#]);
//! let mut child = pipes.spawn(sh)?;
//!
//! writer.write_all(b"hello, child\n")?;
//! drop(writer); // end-of-file for the child
//! assert!(child.wait()?.success(), "the child read what the parent wrote");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod child;
mod duplex;
mod end;
mod message;
mod zerocopy;

pub use child::ChildPipes;
pub use duplex::{Duplex, DuplexChannel, duplex, duplex_channel};
pub use end::{packet_pipe, pipe};
pub use ipc_core::frame::{MAX_ATOMIC_PAYLOAD, PIPE_BUF};
pub use ipc_core::pipe::{
    PipeEnd, PipeReader, PipeWriter, Reading, STREAM_SLOTS, Writing, max_capacity,
};
pub use ipc_core::stream::{FrameMode, ReadAhead};
pub use ipc_core::{Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Result};
pub use message::{PipeReceiver, PipeSender, channel};
pub use zerocopy::{PageBuf, SpliceRead, SpliceWrite};

use ipc_core::{MaxMessage, Properties};

/// The kernel knob that caps the capacity an unprivileged process may set:
/// `/proc/sys/fs/pipe-max-size` (1 MiB by default; `ipc_core::knob::PIPE_MAX_SIZE`).
pub const MAX_SIZE_KNOB: &str = ipc_core::knob::PIPE_MAX_SIZE;

/// The kernel knob that caps the pages all pipes of one unprivileged user may use:
/// `/proc/sys/fs/pipe-user-pages-hard` (0 = no limit).
pub const USER_PAGES_HARD_KNOB: &str = ipc_core::pipe::USER_PAGES_HARD;

/// The kernel knob past which an unprivileged user's new pipes get 2 pages and none may grow:
/// `/proc/sys/fs/pipe-user-pages-soft` (16,384 pages by default). A stream sender spends it
/// (see [`STREAM_SLOTS`]).
pub const USER_PAGES_SOFT_KNOB: &str = ipc_core::pipe::USER_PAGES_SOFT;

pub use ipc_core::Readiness;
pub use ipc_core::fd::Interest;
/// The async form of any endpoint of this crate (feature `tokio`): `AsyncEndpoint::new(end)`;
/// `YieldPolicy`: what its waits do before they park the task; `WaitStats`: what they did.
#[cfg(feature = "tokio")]
pub use ipc_core::tokio::{AsyncEndpoint, WaitStats, YieldPolicy};

/// What a program using pipes needs in scope: the core vocabulary (message traits, deadlines,
/// errors) and the zero-copy traits. `use ipc_pipe::prelude::*;`
pub mod prelude {
    pub use crate::{SpliceRead, SpliceWrite};
    pub use ipc_core::{Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Result};
}

/// What a pipe message channel in [`FrameMode::Stream`] is: boundaries kept by the framing,
/// messages of any size (up to the receiver's maximum), one writer and one reader, between
/// related processes, two kernel copies per message.
pub const PROPERTIES: Properties = Properties {
    mechanism: "pipe",
    keeps_boundaries: true,
    max_message: MaxMessage::Unbounded,
    multi_producer: false,
    multi_consumer: false,
    needs_related_process: true,
    namespace: None,
    kernel_copies_per_message: 2,
    crosses_machines: false,
};

/// What a pipe message channel in [`FrameMode::Atomic`] is: as [`PROPERTIES`], with messages
/// of at most [`MAX_ATOMIC_PAYLOAD`] bytes, each written with one atomic `write`, so several
/// writers may share the pipe. Still one reader: two readers could each take part of a frame.
pub const ATOMIC_PROPERTIES: Properties = Properties {
    mechanism: "pipe (atomic)",
    max_message: MaxMessage::Bytes(MAX_ATOMIC_PAYLOAD),
    multi_producer: true,
    ..PROPERTIES
};

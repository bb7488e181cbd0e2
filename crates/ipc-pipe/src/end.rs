//! The functions that make an anonymous pipe, [`pipe`] and [`packet_pipe`]. Their ends are the
//! workspace's one pipe end, [`PipeReader`] and [`PipeWriter`] (`ipc_core::pipe`), the same
//! type `ipc-fifo` returns.

use crate::{PipeReader, PipeWriter, Result};

/// Creates a pipe: `pipe2(2)` with `O_CLOEXEC`, so neither end leaks into a program this
/// process executes unless it is handed over on purpose ([`ChildPipes`](crate::ChildPipes)).
///
/// Both ends are blocking. Bytes written to the [`PipeWriter`] are read, in order, from the
/// [`PipeReader`]; the kernel buffers up to the pipe's [capacity](PipeWriter::capacity) (64 KiB
/// by default). A write of at most [`PIPE_BUF`](crate::PIPE_BUF) bytes is atomic.
///
/// Errors: [`ErrorKind::LimitExceeded`](crate::ErrorKind::LimitExceeded) when this process is out of descriptors (naming
/// `RLIMIT_NOFILE` and its value), the system is (`/proc/sys/fs/file-max`), or an unprivileged
/// user's pipes hold all the pages `/proc/sys/fs/pipe-user-pages-hard` allows.
///
/// ```
/// use std::io::{Read, Write};
///
/// let (mut reader, mut writer) = ipc_pipe::pipe()?;
/// writer.write_all(b"through the kernel")?;
/// drop(writer); // the reader sees end-of-file once every writer is closed
/// let mut got = String::new();
/// reader.read_to_string(&mut got)?;
/// assert_eq!(got, "through the kernel");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # References
/// - [`pipe(2)`](https://man7.org/linux/man-pages/man2/pipe.2.html)
/// - [`pipe(7)`](https://man7.org/linux/man-pages/man7/pipe.7.html)
#[doc(alias = "pipe2")]
pub fn pipe() -> Result<(PipeReader, PipeWriter)> {
    ipc_core::pipe::pair(false)
}

/// Creates a pipe in packet mode: `pipe2(2)` with `O_CLOEXEC | O_DIRECT`.
///
/// In packet mode every `write` of at most [`PIPE_BUF`](crate::PIPE_BUF) bytes is one packet,
/// and every `read` returns at most one packet: the kernel keeps the boundaries, with no framing
/// in between. A read into a buffer smaller than the packet returns the start of the packet and
/// **discards the rest**, so read with a buffer of `PIPE_BUF` bytes. A write larger than
/// `PIPE_BUF` is split into several packets; a zero-length write sends nothing. Several writers
/// and several readers may share the pipe: each packet goes whole to one reader. Packet mode
/// belongs to the write end ([`PipeWriter::is_packet_mode`]): a write end handed to another
/// process keeps writing packets.
///
/// Errors: as [`pipe`]; [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) on kernels without packet mode (before 3.4).
///
/// ```
/// use std::io::{Read, Write};
///
/// let (mut reader, mut writer) = ipc_pipe::packet_pipe()?;
/// writer.write_all(b"one")?;
/// writer.write_all(b"two")?;
/// let mut buf = [0; ipc_pipe::PIPE_BUF];
/// assert_eq!(reader.read(&mut buf)?, 3); // one packet per read, although 6 bytes are queued
/// assert_eq!(&buf[..3], b"one");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # References
/// - [`pipe(2)`](https://man7.org/linux/man-pages/man2/pipe.2.html) (`O_DIRECT`)
#[doc(alias = "O_DIRECT")]
pub fn packet_pipe() -> Result<(PipeReader, PipeWriter)> {
    ipc_core::pipe::pair(true)
}

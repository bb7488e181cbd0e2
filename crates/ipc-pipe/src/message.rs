//! Message endpoints over a pipe: [`PipeSender`] and [`PipeReceiver`], the core framing
//! endpoints ([`FrameSender`], [`FrameReceiver`]) over a pipe's ends, and [`channel`].

use ipc_core::stream::{FrameMode, FrameReceiver, FrameSender};

use crate::{PipeReader, PipeWriter, Result, pipe};

/// Sends whole messages into a pipe: implements [`MessageSender`](ipc_core::MessageSender).
///
/// Each message goes out as one length-prefixed frame ([`ipc_core::frame`]). In
/// [`FrameMode::Atomic`] a frame is at most `PIPE_BUF` bytes and goes out in one `write`, so
/// several writers (threads or processes, each with its own sender on the same pipe) never
/// interleave; a larger message is refused with
/// [`ErrorKind::MessageTooLarge`](crate::ErrorKind::MessageTooLarge) stating the
/// limit (4092 bytes of payload), and nothing already queued is affected. Made by [`channel`]
/// or [`PipeWriter::into_sender`]. In
/// [`FrameMode::Stream`] messages may be large, and there must be one writer only.
///
/// When no process has the read end open, a send fails with [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) and
/// the process is not killed by `SIGPIPE`.
///
/// A send with a deadline that passes after part of a large message went out fails with
/// [`ErrorKind::Incomplete`](crate::ErrorKind::Incomplete): the message is in progress and the next send finishes it first;
/// see [what a send's result means](FrameSender#what-a-sends-result-means) and
/// [`set_linger`](FrameSender::set_linger) for what dropping the sender then does.
///
/// The pipe end is reachable with [`get_ref`](FrameSender::get_ref) (for its capacity, say).
pub type PipeSender = FrameSender<PipeWriter>;

/// Receives whole messages from a pipe: implements
/// [`MessageReceiver`](ipc_core::MessageReceiver).
///
/// Once every write end is closed (the writers exited, closed, or were killed) and every
/// complete message has been received, a receive fails with [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected),
/// never waits forever. A message cut short by a writer that died in the middle of it is
/// dropped, and the error's note says so.
pub type PipeReceiver = FrameReceiver<PipeReader>;

/// A new pipe as a message channel: [`pipe`] (`pipe2(2)`, close-on-exec) with the write end
/// made a [`PipeSender`] in `mode` and the read end a [`PipeReceiver`] accepting messages up to
/// `mode`'s maximum.
///
/// Errors: as [`pipe`].
///
/// ```
/// use ipc_pipe::prelude::*;
/// use ipc_pipe::FrameMode;
///
/// let (mut tx, mut rx) = ipc_pipe::channel(FrameMode::Atomic)?;
/// tx.send(b"first")?;
/// tx.send(b"")?;
/// let e = tx.send(&[0; 5000]).unwrap_err(); // more than PIPE_BUF: could interleave
/// assert_eq!(e.kind(), ErrorKind::MessageTooLarge);
/// assert_eq!(e.message_size(), Some((5000, 4092)));
/// drop(tx);
///
/// let mut buf = [0; 4092];
/// assert_eq!(rx.recv(&mut buf)?, 5);
/// assert_eq!(rx.recv(&mut buf)?, 0);
/// assert_eq!(rx.recv(&mut buf).unwrap_err().kind(), ErrorKind::Disconnected);
/// # Ok::<(), ipc_pipe::Error>(())
/// ```
///
/// # References
/// - [`pipe(7)`](https://man7.org/linux/man-pages/man7/pipe.7.html) (`PIPE_BUF` atomicity)
pub fn channel(mode: FrameMode) -> Result<(PipeSender, PipeReceiver)> {
    let (r, w) = pipe()?;
    Ok((w.into_sender(mode)?, r.into_receiver(mode.max_message())?))
}

//! Full duplex from two pipes: [`duplex`] gives two [`Duplex`] byte-stream ends, and
//! [`duplex_channel`] two [`DuplexChannel`] message ends.

use std::io::{self, Read, Write};

use crate::{Deadline, FrameMode, MessageReceiver, MessageSender, Result};

use crate::{PipeReader, PipeReceiver, PipeSender, PipeWriter, pipe};

/// One end of a full-duplex byte stream made of two pipes: it reads what the other end writes,
/// and the other end reads what it writes.
///
/// A pipe carries bytes one way; two pipes, crossed, carry them both ways at once. Each
/// direction buffers up to its pipe's capacity: two ends that both write more than that before
/// reading wait for each other forever, so one side should read while the other writes (or use
/// deadlines).
///
/// `Read`/`Write` go to the two pipes; the fields give each pipe end on its own (to hand them to
/// a child as stdin and stdout, to read on one thread and write on another).
#[derive(Debug)]
pub struct Duplex {
    /// Reads what the other end writes.
    pub reader: PipeReader,
    /// Writes what the other end reads.
    pub writer: PipeWriter,
}

/// Creates two connected [`Duplex`] ends from two pipes (`pipe2(2)` twice, close-on-exec).
///
/// ```
/// use std::io::{Read, Write};
///
/// let (mut a, mut b) = ipc_pipe::duplex()?;
/// a.write_all(b"ping")?;
/// b.write_all(b"pong")?;
/// let (mut at_a, mut at_b) = ([0; 4], [0; 4]);
/// b.read_exact(&mut at_b)?;
/// a.read_exact(&mut at_a)?;
/// assert_eq!((&at_a, &at_b), (b"pong", b"ping"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # References
/// - [`pipe(2)`](https://man7.org/linux/man-pages/man2/pipe.2.html)
pub fn duplex() -> Result<(Duplex, Duplex)> {
    let (r1, w1) = pipe()?;
    let (r2, w2) = pipe()?;
    Ok((
        Duplex {
            reader: r1,
            writer: w2,
        },
        Duplex {
            reader: r2,
            writer: w1,
        },
    ))
}

impl Duplex {
    /// This end as a message end: the writer becomes a [`PipeSender`] in `mode`, the reader a
    /// [`PipeReceiver`] accepting `mode`'s largest message.
    pub fn into_channel(self, mode: FrameMode) -> Result<DuplexChannel> {
        Ok(DuplexChannel {
            sender: self.writer.into_sender(mode)?,
            receiver: self.reader.into_receiver(mode.max_message())?,
        })
    }
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// One end of a full-duplex message channel made of two pipes: sends to the other end and
/// receives from it.
///
/// Implements both [`MessageSender`] and [`MessageReceiver`], so request/response code can take
/// one `impl MessageSender + MessageReceiver`. Both traits have a `max_message_size`; call it
/// as `MessageSender::max_message_size(&end)` (or use the fields).
#[derive(Debug)]
pub struct DuplexChannel {
    /// Sends to the other end.
    pub sender: PipeSender,
    /// Receives what the other end sends.
    pub receiver: PipeReceiver,
}

/// Creates two connected [`DuplexChannel`] ends: [`duplex`] with both ends framed as `mode`
/// says.
///
/// ```
/// use ipc_pipe::prelude::*;
/// use ipc_pipe::FrameMode;
///
/// let (mut client, mut server) = ipc_pipe::duplex_channel(FrameMode::default())?;
/// client.send(b"2 + 3")?;
/// let mut buf = [0; 64];
/// let n = server.recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"2 + 3");
/// server.send(b"5")?;
/// let n = client.recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"5");
/// # Ok::<(), ipc_pipe::Error>(())
/// ```
pub fn duplex_channel(mode: FrameMode) -> Result<(DuplexChannel, DuplexChannel)> {
    let (a, b) = duplex()?;
    Ok((a.into_channel(mode)?, b.into_channel(mode)?))
}

impl MessageSender for DuplexChannel {
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        self.sender.send_deadline(msg, deadline)
    }

    fn max_message_size(&self) -> usize {
        MessageSender::max_message_size(&self.sender)
    }
}

impl MessageReceiver for DuplexChannel {
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        self.receiver.recv_deadline(buf, deadline)
    }

    fn max_message_size(&self) -> usize {
        MessageReceiver::max_message_size(&self.receiver)
    }
}

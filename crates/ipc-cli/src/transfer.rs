//! `ipc send` and `ipc recv`: messages between stdin/stdout and a FIFO, a POSIX queue or an
//! ipc-shm channel, one per line or length-delimited (the workspace's frame format: a 4-byte
//! little-endian length, then the payload), under one deadline.

use std::io::{BufRead, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use ipc_core::frame::{FrameDecoder, encode_frame};
use ipc_core::{Deadline, Detail, Error, ErrorKind, MessageReceiver, MessageSender, Result};

use crate::Exit;

/// The arguments `send` and `recv` share.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The object: a FIFO's path, or a POSIX name (/name) of a shm channel or a queue.
    target: String,
    /// What the target is (default: a FIFO if the path is one, else a shm channel if
    /// /dev/shm has the name, else a POSIX queue).
    #[arg(long, value_enum)]
    kind: Option<Target>,
    /// Messages are length-delimited (4-byte little-endian length, then the bytes) instead of
    /// one per line.
    #[arg(long)]
    length_delimited: bool,
    /// Give up after this many seconds (exit code 4); fractions allowed.
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    timeout: Option<Duration>,
    /// recv: stop after this many messages (default: until the sender closes or, for a
    /// queue, forever).
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// The largest message accepted from a FIFO (queues and channels know theirs).
    #[arg(long, default_value_t = 1 << 20)]
    max_size: usize,
}

/// A `--timeout`: seconds, fractions allowed.
fn seconds(s: &str) -> std::result::Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|t| Duration::try_from_secs_f64(t).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

/// What `send` and `recv` talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    Fifo,
    Mq,
    Shm,
}

impl Args {
    fn deadline(&self) -> Deadline {
        self.timeout.map_or(Deadline::Never, Deadline::after)
    }

    fn target(&self) -> Target {
        if let Some(k) = self.kind {
            return k;
        }
        let is_fifo = std::fs::metadata(&self.target).is_ok_and(|m| m.file_type().is_fifo());
        let on_shm = |n: &str| Path::new("/dev/shm").join(n).exists();
        match self.target.strip_prefix('/') {
            _ if is_fifo => Target::Fifo,
            Some(n) if !n.contains('/') && on_shm(n) => Target::Shm,
            _ => Target::Mq,
        }
    }
}

/// An end that `send` uses: the mechanism's sender, and how to leave it.
fn open_sender(args: &Args, deadline: Deadline) -> Result<Box<dyn MessageSender>> {
    Ok(match args.target() {
        Target::Fifo => Box::new(
            ipc_fifo::OpenOptions::new()
                .wait(deadline)
                .open_write(&args.target)?
                .into_sender(ipc_fifo::FrameMode::Stream {
                    max_message: args.max_size,
                })?,
        ),
        Target::Mq => Box::new(ipc_mq::posix::Queue::open(
            args.target.as_str(),
            ipc_mq::Access::WriteOnly,
        )?),
        Target::Shm => Box::new(ShmTx(Some(ipc_shm::Sender::open(ipc_shm::Segment::open(
            args.target.as_str(),
        )?)?))),
    })
}

fn open_receiver(args: &Args, deadline: Deadline) -> Result<Box<dyn MessageReceiver>> {
    Ok(match args.target() {
        Target::Fifo => Box::new(
            ipc_fifo::OpenOptions::new()
                .wait(deadline)
                .open_read(&args.target)?
                .into_receiver(args.max_size)?,
        ),
        Target::Mq => Box::new(ipc_mq::posix::Queue::open(
            args.target.as_str(),
            ipc_mq::Access::ReadOnly,
        )?),
        Target::Shm => Box::new(ShmRx(Some(ipc_shm::Receiver::open(
            ipc_shm::Segment::open(args.target.as_str())?,
        )?))),
    })
}

/// A channel's sending end that is handed over (`detach`) when the command ends instead of
/// closed, so the channel stays usable: the next `ipc send` or a program can attach in its
/// place.
struct ShmTx(Option<ipc_shm::Sender>);

/// The receiving end, handed over the same way.
struct ShmRx(Option<ipc_shm::Receiver>);

impl Drop for ShmTx {
    fn drop(&mut self) {
        drop(self.0.take().map(ipc_shm::Sender::detach));
    }
}

impl Drop for ShmRx {
    fn drop(&mut self) {
        drop(self.0.take().map(ipc_shm::Receiver::detach));
    }
}

impl MessageSender for ShmTx {
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        let tx = self.0.as_mut().expect("taken only by drop");
        tx.send_deadline(msg, deadline)
    }

    fn max_message_size(&self) -> usize {
        self.0.as_ref().map_or(0, MessageSender::max_message_size)
    }
}

impl MessageReceiver for ShmRx {
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        let rx = self.0.as_mut().expect("taken only by drop");
        rx.recv_deadline(buf, deadline)
    }

    fn max_message_size(&self) -> usize {
        self.0.as_ref().map_or(0, MessageReceiver::max_message_size)
    }
}

pub(crate) fn send(args: &Args) -> Result<Exit> {
    let deadline = args.deadline();
    let mut tx = open_sender(args, deadline)?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    if args.length_delimited {
        let mut dec = FrameDecoder::new(tx.max_message_size());
        let mut msg = vec![0; tx.max_message_size()];
        loop {
            while let Some(n) = dec.decode(&mut msg)? {
                tx.send_deadline(&msg[..n], deadline)?;
            }
            let buf = dec.read_buf();
            let n = input.read(buf).map_err(Error::from)?;
            if n == 0 {
                if dec.buffered() > 0 {
                    return Err(Error::with_note(
                        ErrorKind::Incomplete,
                        "stdin ended inside a length-delimited message",
                    ));
                }
                break;
            }
            dec.advance(n);
        }
    } else {
        let mut line = Vec::new();
        loop {
            line.clear();
            if input.read_until(b'\n', &mut line).map_err(Error::from)? == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            tx.send_deadline(&line, deadline)?;
        }
    }
    Ok(Exit::Ok)
}

pub(crate) fn recv(args: &Args) -> Result<Exit> {
    let deadline = args.deadline();
    let fifo = args.target() == Target::Fifo;
    let mut rx = open_receiver(args, deadline)?;
    let mut buf = vec![0; rx.max_message_size()];
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut frame = Vec::new();
    let mut received = 0;
    // Only a pipe or a socket can lose its reader: a file or a terminal is not looked at
    // before each message (a `poll` per message saved).
    let can_lose_reader = stdout_can_lose_reader();
    while args.count.is_none_or(|c| received < c) {
        // A message taken is gone from a queue or channel: take one only if it can be written.
        // Whoever read stdout has what it wanted (`ipc recv ... | head -1`); what was not
        // taken stays for the next receiver.
        if can_lose_reader && matches!(stdout_state()?, Stdout::ReaderGone) {
            break;
        }
        let n = match rx.recv_deadline(&mut buf, deadline) {
            Ok(n) => n,
            // A FIFO's writers closed in the middle of a message (one died, or wrote bytes
            // that are not this framing): the part was dropped, and the error's note says so.
            // Not an end like the others.
            Err(e)
                if e.kind() == ErrorKind::Disconnected
                    && fifo
                    && matches!(e.detail(), Detail::Note(_)) =>
            {
                return Err(e);
            }
            // The sender closed (or died) and everything it sent was read.
            Err(e) if e.kind() == ErrorKind::Disconnected => break,
            Err(e) => return Err(e),
        };
        received += 1;
        let written = if args.length_delimited {
            frame.clear();
            encode_frame(&buf[..n], &mut frame)?;
            out.write_all(&frame)
        } else {
            out.write_all(&buf[..n]).and_then(|()| out.write_all(b"\n"))
        }
        .and_then(|()| out.flush());
        match written {
            Ok(()) => {}
            // The reader left while this message was being written (after the look above),
            // as it may leave with bytes still in the pipe: what it did not read is lost, as
            // with any filter. The next message is not taken.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(Error::from(e)),
        }
    }
    Ok(Exit::Ok)
}

/// Whether stdout is a pipe or a socket (`fstat`): the only kinds whose reader can leave.
fn stdout_can_lose_reader() -> bool {
    use rustix::fs::FileType;
    rustix::fs::fstat(std::io::stdout()).map_or(true, |st| {
        matches!(
            FileType::from_raw_mode(st.st_mode),
            FileType::Fifo | FileType::Socket
        )
    })
}

/// What [`stdout_state`] found.
enum Stdout {
    /// Writable now, or will be (a full pipe whose reader is alive, a file, a terminal).
    Open,
    /// A pipe or socket whose reader is gone: a write would fail with `EPIPE`.
    ReaderGone,
}

/// Looks at stdout without writing (`poll(2)`, no wait): whether a message written now can
/// arrive. A pipe or socket whose reader left shows only at the write, after the message was
/// taken; here it is found before a message is received. (A closed stdout is not seen: the
/// Rust runtime opens `/dev/null` in its place at start-up, as for `>/dev/null`.)
fn stdout_state() -> Result<Stdout> {
    use rustix::event::{PollFd, PollFlags, poll};
    use std::os::fd::AsFd;

    let stdout = std::io::stdout();
    let fd = stdout.as_fd();
    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&zero)).map_err(Error::from)?;
    let revents = fds[0].revents();
    if revents.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL) {
        return Ok(Stdout::ReaderGone);
    }
    Ok(Stdout::Open)
}

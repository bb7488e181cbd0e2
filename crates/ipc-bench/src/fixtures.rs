//! The mechanism fixtures: each library endpoint of the workspace described once, as an
//! [`ipc_testkit::fixture::Fixture`], for the conformance suite (`tests/conformance_*.rs` at
//! the repository root) and for the benchmark's library rows ([`crate::rows`]).
//!
//! Every fixture hands a sending end over under the name `tx` and a receiving end under `rx`
//! (descriptors), or in the environment variables [`TX_ENV`] and [`RX_ENV`] (object names and
//! ids), so one child can adopt one end of each of two channels: the benchmark's duplex link.
//! What the child needs besides the object (the largest message, for stream framing) travels
//! with it, in [`TX_MAX_ENV`] / [`RX_MAX_ENV`].

use std::sync::OnceLock;

use ipc_core::frame::MAX_ATOMIC_PAYLOAD;
use ipc_core::stream::FrameMode;
use ipc_core::{Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Properties, Result};
use ipc_fifo::{Fifo, FifoReader, FifoReceiver, FifoSender, FifoWriter, OpenOptions};
use ipc_mq::RemoveGuard;
use ipc_mq::posix::{self, Access, Limits};
use ipc_mq::sysv;
use ipc_pipe::{PipeReader, PipeReceiver, PipeSender, PipeWriter};
use ipc_shm::{ChannelOptions, Segment};
use ipc_testkit::fixture::Fixture;
use ipc_testkit::{Ctx, Spawn, TempDir, unique_posix_name};

/// The environment variable naming the object of a sending end handed over by name.
pub const TX_ENV: &str = "IPC_FIXTURE_TX";
/// The environment variable naming the object of a receiving end handed over by name.
pub const RX_ENV: &str = "IPC_FIXTURE_RX";
/// The largest message of a sending end handed over (stream framing needs it).
pub const TX_MAX_ENV: &str = "IPC_FIXTURE_TX_MAX";
/// The largest message of a receiving end handed over.
pub const RX_MAX_ENV: &str = "IPC_FIXTURE_RX_MAX";

/// A variable the parent set for this child, parsed.
fn inherited_env<T: std::str::FromStr>(key: &str) -> Result<T> {
    let v = std::env::var(key)
        .map_err(|_| Error::with_note(ErrorKind::NotFound, "not set by the parent").on(key))?;
    v.parse().map_err(|_| {
        Error::with_note(ErrorKind::InvalidInput, format!("unexpected value {v:?}")).on(key)
    })
}

/// The largest message of a stream-framed channel: the size asked for, or `default`.
fn stream_max(size: Option<usize>, default: usize) -> usize {
    size.unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Pipes

/// `ipc-pipe` in stream mode: one writer, messages of any size up to the channel's maximum
/// (1 MiB by default); each end handed over by fd and adopted with `from_inherited`, which
/// checks it is the right end of a pipe.
#[derive(Debug)]
pub struct StreamPipe;

impl Fixture for StreamPipe {
    type Tx = PipeSender;
    type Rx = PipeReceiver;
    type Guard = ();
    const NAME: &'static str = "pipe (stream)";
    const DETECTS_DISCONNECT: bool = true;

    fn properties() -> Properties {
        ipc_pipe::PROPERTIES
    }
    fn max_message() -> Option<usize> {
        None
    }
    fn script_max() -> usize {
        200_000
    }
    fn channel(size: Option<usize>) -> Result<(PipeSender, PipeReceiver, ())> {
        let max_message = stream_max(size, 1 << 20);
        let (tx, rx) = ipc_pipe::channel(FrameMode::Stream { max_message })?;
        Ok((tx, rx, ()))
    }
    fn pass_tx(tx: PipeSender, spawn: Spawn) -> Spawn {
        let max = tx.max_message_size().to_string();
        spawn.fd("tx", tx.get_ref()).env(TX_MAX_ENV, &max)
    }
    fn adopt_tx(_: &Ctx) -> Result<PipeSender> {
        let max_message = inherited_env(TX_MAX_ENV)?;
        PipeWriter::from_inherited("tx")?.into_sender(FrameMode::Stream { max_message })
    }
    fn pass_rx(rx: PipeReceiver, spawn: Spawn) -> Spawn {
        let max = rx.max_message_size().to_string();
        spawn.fd("rx", rx.get_ref()).env(RX_MAX_ENV, &max)
    }
    fn adopt_rx(_: &Ctx) -> Result<PipeReceiver> {
        PipeReader::from_inherited("rx")?.into_receiver(inherited_env(RX_MAX_ENV)?)
    }
}

// ---------------------------------------------------------------------------------------------
// FIFOs

/// A FIFO in a private directory, opened by path in the parent (reader first, so neither open
/// waits), each end handed to the child by fd; the guard removes the FIFO and the directory.
pub(crate) fn fifo_pair() -> Result<(FifoWriter, FifoReader, (Fifo, TempDir))> {
    let dir = TempDir::new("fifo");
    let fifo = Fifo::create(dir.join("fifo"))?;
    let mut now = OpenOptions::new();
    now.wait(Deadline::Now);
    let reader = now.open_read(fifo.path())?;
    let writer = now.open_write(fifo.path())?;
    // The ends are used blocking; deadlines are handled per call.
    reader.set_nonblocking(false)?;
    writer.set_nonblocking(false)?;
    Ok((writer, reader, (fifo, dir)))
}

/// `ipc-fifo` in its multi-writer mode: every message one atomic `write` of at most
/// `PIPE_BUF`, so at most 4092 bytes.
#[derive(Debug)]
pub struct AtomicFifo;

impl Fixture for AtomicFifo {
    type Tx = FifoSender;
    type Rx = FifoReceiver;
    type Guard = (Fifo, TempDir);
    const NAME: &'static str = "fifo (atomic records)";
    const DETECTS_DISCONNECT: bool = true;

    fn properties() -> Properties {
        ipc_fifo::PROPERTIES
    }
    fn max_message() -> Option<usize> {
        Some(MAX_ATOMIC_PAYLOAD)
    }
    fn script_max() -> usize {
        MAX_ATOMIC_PAYLOAD
    }
    fn channel(_size: Option<usize>) -> Result<(FifoSender, FifoReceiver, Self::Guard)> {
        let (writer, reader, guard) = fifo_pair()?;
        Ok((
            writer.into_atomic_sender()?,
            reader.into_atomic_receiver()?,
            guard,
        ))
    }
    fn pass_tx(tx: FifoSender, spawn: Spawn) -> Spawn {
        spawn.fd("tx", tx.get_ref())
    }
    fn adopt_tx(ctx: &Ctx) -> Result<FifoSender> {
        FifoWriter::from(ctx.take_fd("tx")).into_atomic_sender()
    }
    fn pass_rx(rx: FifoReceiver, spawn: Spawn) -> Spawn {
        spawn.fd("rx", rx.get_ref())
    }
    fn adopt_rx(ctx: &Ctx) -> Result<FifoReceiver> {
        FifoReader::from(ctx.take_fd("rx")).into_atomic_receiver()
    }
}

/// `ipc-fifo` in single-writer stream mode: messages of any size up to the channel's maximum
/// (1 MiB by default).
#[derive(Debug)]
pub struct StreamFifo;

impl Fixture for StreamFifo {
    type Tx = FifoSender;
    type Rx = FifoReceiver;
    type Guard = (Fifo, TempDir);
    const NAME: &'static str = "fifo (stream)";
    const DETECTS_DISCONNECT: bool = true;

    fn properties() -> Properties {
        ipc_fifo::STREAM_PROPERTIES
    }
    fn max_message() -> Option<usize> {
        None
    }
    fn script_max() -> usize {
        200_000
    }
    fn channel(size: Option<usize>) -> Result<(FifoSender, FifoReceiver, Self::Guard)> {
        let max = stream_max(size, 1 << 20);
        let (writer, reader, guard) = fifo_pair()?;
        Ok((
            writer.into_stream_sender(max)?,
            reader.into_receiver(max)?,
            guard,
        ))
    }
    fn pass_tx(tx: FifoSender, spawn: Spawn) -> Spawn {
        let max = tx.max_message_size().to_string();
        spawn.fd("tx", tx.get_ref()).env(TX_MAX_ENV, &max)
    }
    fn adopt_tx(ctx: &Ctx) -> Result<FifoSender> {
        FifoWriter::from(ctx.take_fd("tx")).into_stream_sender(inherited_env(TX_MAX_ENV)?)
    }
    fn pass_rx(rx: FifoReceiver, spawn: Spawn) -> Spawn {
        let max = rx.max_message_size().to_string();
        spawn.fd("rx", rx.get_ref()).env(RX_MAX_ENV, &max)
    }
    fn adopt_rx(ctx: &Ctx) -> Result<FifoReceiver> {
        FifoReader::from(ctx.take_fd("rx")).into_receiver(inherited_env(RX_MAX_ENV)?)
    }
}

// ---------------------------------------------------------------------------------------------
// Message queues

/// Messages a POSIX queue holds: the kernel's default (10), within `msg_max`.
pub fn posix_capacity() -> usize {
    Limits::current()
        .msg_max
        .map_or(10, |m| m.clamp(1, 10) as usize)
}

/// The largest POSIX message an unprivileged process may ask for: `msgsize_max` (8192 by
/// default). A process with `CAP_SYS_RESOURCE` could go further; the fixture does not count on
/// it.
pub fn posix_max_message() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| Limits::current().msgsize_max.map_or(8192, |m| m as usize))
}

/// The largest System V message: `/proc/sys/kernel/msgmax` (8192 by default).
pub fn sysv_max_message() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::fs::read_to_string(ipc_mq::knobs::SYSV_MSGMAX)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(8192)
    })
}

fn posix_open(key: &str, access: Access) -> Result<posix::Queue> {
    let name: String = inherited_env(key)?;
    posix::Queue::open(name.as_str(), access)
}

fn queue_name(q: &posix::Queue) -> String {
    q.name().map_or_else(String::new, ToString::to_string)
}

/// POSIX message queues: a queue with a unique `/ipctest-…` name created by the parent (for
/// messages of the size asked for, 8192 bytes by default; [`posix_capacity`] messages),
/// opened by name in the child; the guard unlinks the name.
#[derive(Debug)]
pub struct PosixQueue;

impl Fixture for PosixQueue {
    type Tx = posix::Queue;
    type Rx = posix::Queue;
    type Guard = RemoveGuard;
    const NAME: &'static str = "POSIX message queue";
    // The kernel does not track senders: a receiver whose senders died waits to its deadline.
    const DETECTS_DISCONNECT: bool = false;

    fn properties() -> Properties {
        ipc_mq::POSIX_PROPERTIES
    }
    fn max_message() -> Option<usize> {
        Some(posix_max_message())
    }
    fn script_max() -> usize {
        // The default msgsize_max ceiling for unprivileged users.
        8192
    }
    fn channel(size: Option<usize>) -> Result<(posix::Queue, posix::Queue, RemoveGuard)> {
        let name = unique_posix_name("mq");
        let rx = posix::Queue::create(name.as_str(), posix_capacity(), size.unwrap_or(8192))?;
        let guard = rx.remove_guard()?;
        let tx = posix::Queue::open(name.as_str(), Access::WriteOnly)?;
        Ok((tx, rx, guard))
    }
    fn pass_tx(tx: posix::Queue, spawn: Spawn) -> Spawn {
        spawn.env(TX_ENV, &queue_name(&tx))
    }
    fn adopt_tx(_: &Ctx) -> Result<posix::Queue> {
        posix_open(TX_ENV, Access::WriteOnly)
    }
    fn pass_rx(rx: posix::Queue, spawn: Spawn) -> Spawn {
        spawn.env(RX_ENV, &queue_name(&rx))
    }
    fn adopt_rx(_: &Ctx) -> Result<posix::Queue> {
        posix_open(RX_ENV, Access::ReadOnly)
    }
}

/// System V message queues: a private queue created by the parent, reached by id in the
/// child; the guard removes it.
#[derive(Debug)]
pub struct SysvQueue;

impl Fixture for SysvQueue {
    type Tx = sysv::Queue;
    type Rx = sysv::Queue;
    type Guard = RemoveGuard;
    const NAME: &'static str = "System V message queue";
    // The kernel does not track senders or receivers.
    const DETECTS_DISCONNECT: bool = false;

    fn properties() -> Properties {
        ipc_mq::SYSV_PROPERTIES
    }
    fn max_message() -> Option<usize> {
        Some(sysv_max_message())
    }
    fn script_max() -> usize {
        4096
    }
    fn channel(_size: Option<usize>) -> Result<(sysv::Queue, sysv::Queue, RemoveGuard)> {
        let rx = sysv::Queue::private()?;
        let guard = rx.remove_guard();
        let tx = sysv::Queue::from_id(rx.id());
        Ok((tx, rx, guard))
    }
    fn pass_tx(tx: sysv::Queue, spawn: Spawn) -> Spawn {
        spawn.env(TX_ENV, &tx.id().to_string())
    }
    fn adopt_tx(_: &Ctx) -> Result<sysv::Queue> {
        Ok(sysv::Queue::from_id(inherited_env(TX_ENV)?))
    }
    fn pass_rx(rx: sysv::Queue, spawn: Spawn) -> Spawn {
        spawn.env(RX_ENV, &rx.id().to_string())
    }
    fn adopt_rx(_: &Ctx) -> Result<sysv::Queue> {
        Ok(sysv::Queue::from_id(inherited_env(RX_ENV)?))
    }
}

// ---------------------------------------------------------------------------------------------
// Shared memory

/// The ring of a channel for messages of `size` bytes: room for at least 8 of them, and
/// 64 KiB at least.
pub fn shm_capacity(size: usize) -> usize {
    (8 * (size + 16)).next_power_of_two().max(1 << 16)
}

/// The `ipc-shm` channel: a ring in a sealed memfd segment (1 MiB by default, or
/// [`shm_capacity`] for the size asked for), each end handed over by inheriting the segment
/// (the parent detaches its end, the child opens it).
#[derive(Debug)]
pub struct ShmChannel;

impl Fixture for ShmChannel {
    type Tx = ipc_shm::Sender;
    type Rx = ipc_shm::Receiver;
    type Guard = ();
    const NAME: &'static str = "shm channel";
    const DETECTS_DISCONNECT: bool = true;

    fn properties() -> Properties {
        ipc_shm::PROPERTIES
    }
    fn max_message() -> Option<usize> {
        None
    }
    fn script_max() -> usize {
        200_000
    }
    fn channel(size: Option<usize>) -> Result<(ipc_shm::Sender, ipc_shm::Receiver, ())> {
        let mut opts = ChannelOptions::new();
        if let Some(size) = size {
            opts = opts.capacity(shm_capacity(size));
        }
        let (tx, rx) = opts.pair()?;
        Ok((tx, rx, ()))
    }
    fn pass_tx(tx: ipc_shm::Sender, spawn: Spawn) -> Spawn {
        let segment = tx.detach();
        spawn.fd(
            "tx",
            segment.fd().expect("a memfd segment has a descriptor"),
        )
    }
    fn adopt_tx(_: &Ctx) -> Result<ipc_shm::Sender> {
        ipc_shm::Sender::open(Segment::inherited("tx")?)
    }
    fn pass_rx(rx: ipc_shm::Receiver, spawn: Spawn) -> Spawn {
        let segment = rx.detach();
        spawn.fd(
            "rx",
            segment.fd().expect("a memfd segment has a descriptor"),
        )
    }
    fn adopt_rx(_: &Ctx) -> Result<ipc_shm::Receiver> {
        ipc_shm::Receiver::open(Segment::inherited("rx")?)
    }
}

// ---------------------------------------------------------------------------------------------
// Sockets

/// A connected socket pair of kind `K` made the way unrelated processes meet: a listener at
/// `addr`, a client connecting to it by address, the server's end accepted. The client's end
/// is the sending end, the server's the receiving end.
fn socket_pair<K: ipc_socket::Kind + SocketConnect>(
    addr: &ipc_socket::Address,
    max_message: usize,
) -> Result<(K, K, ipc_socket::Listener<K>)> {
    let opts = ipc_socket::Options::new().max_message(max_message);
    let listener = ipc_socket::Listener::<K>::bind(addr, &opts)?;
    let addr = listener.local_addr()?;
    let deadline = Deadline::after(std::time::Duration::from_secs(30));
    let client = K::connect_to(&addr, &opts, deadline)?;
    let server = listener.accept(deadline)?;
    Ok((client, server, listener))
}

/// The connect function of each socket kind, for [`socket_pair`].
trait SocketConnect: Sized {
    fn connect_to(
        addr: &ipc_socket::Address,
        opts: &ipc_socket::Options,
        deadline: Deadline,
    ) -> Result<Self>;
}

impl SocketConnect for ipc_socket::Seqpacket {
    fn connect_to(
        addr: &ipc_socket::Address,
        opts: &ipc_socket::Options,
        deadline: Deadline,
    ) -> Result<Self> {
        ipc_socket::Seqpacket::connect(addr, opts, deadline)
    }
}

impl SocketConnect for ipc_socket::Stream {
    fn connect_to(
        addr: &ipc_socket::Address,
        opts: &ipc_socket::Options,
        deadline: Deadline,
    ) -> Result<Self> {
        ipc_socket::Stream::connect(addr, opts, deadline)
    }
}

/// `ipc-socket`'s Unix-domain `SOCK_SEQPACKET` endpoint: a listener on a path in a private
/// directory, the client's end sending, the accepted end receiving; each end handed to the
/// child by fd with its largest message. 64 KiB messages by default.
#[derive(Debug)]
pub struct SeqpacketSocket;

impl Fixture for SeqpacketSocket {
    type Tx = ipc_socket::Seqpacket;
    type Rx = ipc_socket::Seqpacket;
    type Guard = (ipc_socket::Listener<ipc_socket::Seqpacket>, TempDir);
    const NAME: &'static str = "unix seqpacket";
    const DETECTS_DISCONNECT: bool = true;

    fn properties() -> Properties {
        ipc_socket::SEQPACKET
    }
    fn max_message() -> Option<usize> {
        Some(ipc_socket::seqpacket::largest_message())
    }
    fn script_max() -> usize {
        60_000
    }
    fn channel(size: Option<usize>) -> Result<(Self::Tx, Self::Rx, Self::Guard)> {
        let dir = TempDir::new("seqpacket");
        let addr = ipc_socket::Address::path(dir.join("s"));
        let max = stream_max(size, ipc_socket::DEFAULT_MAX_MESSAGE);
        let (tx, rx, listener) = socket_pair(&addr, max)?;
        Ok((tx, rx, (listener, dir)))
    }
    fn pass_tx(tx: Self::Tx, spawn: Spawn) -> Spawn {
        let max = tx.max_message_size().to_string();
        spawn.fd("tx", &tx).env(TX_MAX_ENV, &max)
    }
    fn adopt_tx(_: &Ctx) -> Result<Self::Tx> {
        let fd = ipc_core::inherit::take("tx")?;
        ipc_socket::Seqpacket::from_fd(fd, inherited_env(TX_MAX_ENV)?)
    }
    fn pass_rx(rx: Self::Rx, spawn: Spawn) -> Spawn {
        let max = rx.max_message_size().to_string();
        spawn.fd("rx", &rx).env(RX_MAX_ENV, &max)
    }
    fn adopt_rx(_: &Ctx) -> Result<Self::Rx> {
        let fd = ipc_core::inherit::take("rx")?;
        ipc_socket::Seqpacket::from_fd(fd, inherited_env(RX_MAX_ENV)?)
    }
}

/// `ipc-socket`'s stream endpoint over a Unix-domain socket (a listener on a path in a private
/// directory), framed by ipc-core; 1 MiB messages by default.
#[derive(Debug)]
pub struct UnixStreamSocket;

/// `ipc-socket`'s stream endpoint over TCP on 127.0.0.1 (`TCP_NODELAY`), framed by ipc-core;
/// 1 MiB messages by default.
#[derive(Debug)]
pub struct TcpSocket;

/// Hands a stream endpoint over by fd, with its largest message in `env`.
fn pass_stream(s: ipc_socket::Stream, name: &str, env: &str, spawn: Spawn) -> Spawn {
    let max = s.max_message_size().to_string();
    spawn.fd(name, &s).env(env, &max)
}

/// Adopts a stream endpoint handed over by [`pass_stream`].
fn adopt_stream(name: &str, env: &str) -> Result<ipc_socket::Stream> {
    ipc_socket::Stream::from_fd(ipc_core::inherit::take(name)?, inherited_env(env)?)
}

/// The hand-over methods of a stream-socket fixture (Unix or TCP alike: by fd).
macro_rules! stream_socket_ends {
    () => {
        fn pass_tx(tx: Self::Tx, spawn: Spawn) -> Spawn {
            pass_stream(tx, "tx", TX_MAX_ENV, spawn)
        }
        fn adopt_tx(_: &Ctx) -> Result<Self::Tx> {
            adopt_stream("tx", TX_MAX_ENV)
        }
        fn pass_rx(rx: Self::Rx, spawn: Spawn) -> Spawn {
            pass_stream(rx, "rx", RX_MAX_ENV, spawn)
        }
        fn adopt_rx(_: &Ctx) -> Result<Self::Rx> {
            adopt_stream("rx", RX_MAX_ENV)
        }
    };
}

impl Fixture for UnixStreamSocket {
    type Tx = ipc_socket::Stream;
    type Rx = ipc_socket::Stream;
    type Guard = (ipc_socket::Listener<ipc_socket::Stream>, TempDir);
    const NAME: &'static str = "unix stream";
    const DETECTS_DISCONNECT: bool = true;

    fn properties() -> Properties {
        ipc_socket::STREAM
    }
    fn max_message() -> Option<usize> {
        None
    }
    fn script_max() -> usize {
        200_000
    }
    fn channel(size: Option<usize>) -> Result<(Self::Tx, Self::Rx, Self::Guard)> {
        let dir = TempDir::new("ustream");
        let addr = ipc_socket::Address::path(dir.join("s"));
        let (tx, rx, listener) = socket_pair(&addr, stream_max(size, 1 << 20))?;
        Ok((tx, rx, (listener, dir)))
    }
    stream_socket_ends!();
}

impl Fixture for TcpSocket {
    type Tx = ipc_socket::Stream;
    type Rx = ipc_socket::Stream;
    type Guard = ipc_socket::Listener<ipc_socket::Stream>;
    const NAME: &'static str = "tcp";
    const DETECTS_DISCONNECT: bool = true;

    fn properties() -> Properties {
        ipc_socket::TCP
    }
    fn max_message() -> Option<usize> {
        None
    }
    fn script_max() -> usize {
        200_000
    }
    fn channel(size: Option<usize>) -> Result<(Self::Tx, Self::Rx, Self::Guard)> {
        let addr = ipc_socket::Address::Inet((std::net::Ipv4Addr::LOCALHOST, 0).into());
        socket_pair(&addr, stream_max(size, 1 << 20))
    }
    stream_socket_ends!();
}

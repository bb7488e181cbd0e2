//! [`Seqpacket`]: a connected Unix-domain `SOCK_SEQPACKET` endpoint. The kernel keeps message
//! boundaries (one send is one receive) and can carry descriptors with each message.
//!
//! # Wire format
//!
//! Each message is one seqpacket record: a one-byte header, then the payload. `recv` on a
//! seqpacket socket returns 0 both for an empty record and for the end of the connection; the
//! header makes every record at least one byte long, so 0 always means the peer is gone. The
//! header's bits say whether descriptors ride along ([`HDR_FDS`]); other bits set are
//! [`ErrorKind::Corrupted`]. (A program that is not this library can speak it: prepend `0x01`.)
//!
//! # Waiting
//!
//! The descriptor stays blocking, shared or not: a call without a deadline is the plain
//! blocking `sendmsg`/`recvmsg`; a call with one passes `MSG_DONTWAIT` and waits in `poll(2)`
//! for the time left. No call sets or clears `O_NONBLOCK`, which is shared by every process
//! holding the socket. Every send passes `MSG_NOSIGNAL`: a peer that is gone is
//! [`ErrorKind::Disconnected`], never `SIGPIPE`.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

use ipc_core::fd::Interest;
use ipc_core::{Deadline, Detail, Error, ErrorKind, MessageReceiver, MessageSender, Result};
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketType,
};

use crate::conn::{Connected, Kind, wait_or_expire};
use crate::{Address, Options, PeerCred};

/// Header bit: every record has it.
const HDR_MSG: u8 = 0x01;
/// Header bit: descriptors were sent with this record.
pub const HDR_FDS: u8 = 0x02;

/// The most descriptors one message carries (the kernel's own limit, `SCM_MAX_FD`, is 253).
pub const MAX_FDS: usize = 64;

/// What the kernel adds to a record when checking it against `SO_SNDBUF` (`len > sndbuf - 32`
/// is `EMSGSIZE`), plus the header byte.
const SNDBUF_OVERHEAD: usize = 33;

/// A connected Unix-domain `SOCK_SEQPACKET` socket: a duplex message endpoint. See the
/// [module documentation](self) for the wire format and how waiting works.
///
/// Made by [`Seqpacket::connect`], [`Listener::accept`](crate::Listener::accept),
/// [`Seqpacket::pair`] or [`Seqpacket::from_fd`]. Implements [`MessageSender`] and
/// [`MessageReceiver`]; [`send_with_fds`](Seqpacket::send_with_fds) and
/// [`recv_with_fds`](Seqpacket::recv_with_fds) carry descriptors (`SCM_RIGHTS`) with a message.
///
/// # Errors
/// Besides those of the traits: a peer that closed or died is [`ErrorKind::Disconnected`] on
/// both send and receive (after every message it sent has been received).
#[derive(Debug)]
pub struct Seqpacket {
    fd: OwnedFd,
    label: Arc<str>,
    max: usize,
    peer: Option<PeerCred>,
}

impl crate::conn::sealed::Sealed for Seqpacket {}

impl Kind for Seqpacket {
    const TYPE: SocketType = SocketType::SEQPACKET;
    const NAME: &'static str = "seqpacket";

    fn from_connected(fd: OwnedFd, conn: Connected) -> Result<Seqpacket> {
        Seqpacket::wrap(fd, conn.label, conn.max_message, conn.peer)
    }
}

impl Seqpacket {
    /// Connects to the seqpacket [`Listener`](crate::Listener) at `addr` before `deadline`,
    /// and checks the server's credentials against `opts`' [`PeerPolicy`](crate::PeerPolicy).
    ///
    /// Calls `socket(AF_UNIX, SOCK_SEQPACKET)`, `connect(2)` (retried while the listener's
    /// backlog is full), `getsockopt(SO_PEERCRED)`.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] (no socket file), [`ErrorKind::NoPeer`] (nothing listens),
    /// [`ErrorKind::TimedOut`], [`ErrorKind::PermissionDenied`] (the file's mode, or the
    /// server's uid refused by the policy), [`ErrorKind::InvalidName`] (address too long).
    ///
    /// # References
    /// - [`connect(2)`](https://man7.org/linux/man-pages/man2/connect.2.html),
    ///   [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html)
    pub fn connect(addr: &Address, opts: &Options, deadline: Deadline) -> Result<Seqpacket> {
        crate::conn::connect(addr, opts, deadline)
    }

    /// A connected pair (`socketpair(2)`), for related processes: hand one end to a child.
    /// Each end's peer credentials are this process's.
    #[doc(alias = "socketpair")]
    pub fn pair(max_message: usize) -> Result<(Seqpacket, Seqpacket)> {
        let (a, b) = crate::conn::socketpair(SocketType::SEQPACKET, "seqpacket pair")?;
        Ok((
            Seqpacket::from_fd(a, max_message)?,
            Seqpacket::from_fd(b, max_message)?,
        ))
    }

    /// Wraps a connected seqpacket socket (inherited from a parent, received over another
    /// socket, ...), after checking with `getsockopt(SO_TYPE)` that it is one.
    ///
    /// # Errors
    /// [`ErrorKind::WrongType`] when `fd` is not a `SOCK_SEQPACKET` socket.
    pub fn from_fd(fd: OwnedFd, max_message: usize) -> Result<Seqpacket> {
        let label: Arc<str> = Arc::from(format!("seqpacket socket fd {}", fd.as_raw_fd()));
        match rustix::net::sockopt::socket_type(&fd) {
            Ok(SocketType::SEQPACKET) => {}
            _ => {
                return Err(
                    Error::with_note(ErrorKind::WrongType, "not a SOCK_SEQPACKET socket")
                        .on_shared(&label),
                );
            }
        }
        let peer = PeerCred::of(fd.as_fd()).ok();
        Seqpacket::wrap(fd, label, max_message, peer)
    }

    fn wrap(fd: OwnedFd, label: Arc<str>, max: usize, peer: Option<PeerCred>) -> Result<Seqpacket> {
        ensure_sndbuf(fd.as_fd(), max, &label)?;
        Ok(Seqpacket {
            fd,
            label,
            max,
            peer,
        })
    }

    /// The peer's credentials when the connection was made (`SO_PEERCRED`).
    pub fn peer_cred(&self) -> Option<PeerCred> {
        self.peer
    }

    /// The name used in errors.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The largest message this endpoint sends and receives (both directions alike).
    pub fn max_message_size(&self) -> usize {
        self.max
    }

    /// Sends `msg` with the descriptors `fds` (`sendmsg(2)` with `SCM_RIGHTS`), waiting for
    /// room until `deadline`. The receiver gets its own copies of the descriptors (they refer to
    /// the same open files); this process keeps its own.
    ///
    /// # Errors
    /// As [`send_deadline`](MessageSender::send_deadline); [`ErrorKind::InvalidInput`] for more
    /// than [`MAX_FDS`] descriptors.
    ///
    /// # References
    /// - [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html), `SCM_RIGHTS`
    #[doc(alias = "SCM_RIGHTS")]
    pub fn send_with_fds(
        &mut self,
        msg: &[u8],
        fds: &[BorrowedFd<'_>],
        deadline: Deadline,
    ) -> Result<()> {
        if fds.len() > MAX_FDS {
            return Err(Error::with_note(
                ErrorKind::InvalidInput,
                format!(
                    "{} descriptors in one message; at most {MAX_FDS}",
                    fds.len()
                ),
            )
            .in_op("send")
            .on_shared(&self.label));
        }
        self.send_inner(msg, fds, deadline)
    }

    /// Receives the next message into `buf` and the descriptors sent with it into `fds`
    /// (appended, close-on-exec: `MSG_CMSG_CLOEXEC`), waiting until `deadline`.
    ///
    /// # Errors
    /// As [`recv_deadline`](MessageReceiver::recv_deadline), and
    /// [`ErrorKind::LimitExceeded`] when the kernel truncated the descriptors (`MSG_CTRUNC`:
    /// more than [`MAX_FDS`], or this process at its `RLIMIT_NOFILE`). That message is
    /// consumed; every descriptor of it that did arrive has been closed, none leaks.
    #[doc(alias = "MSG_CMSG_CLOEXEC")]
    pub fn recv_with_fds(
        &mut self,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
        deadline: Deadline,
    ) -> Result<usize> {
        self.recv_inner(buf, Some(fds), deadline)
    }

    fn send_inner(&mut self, msg: &[u8], fds: &[BorrowedFd<'_>], deadline: Deadline) -> Result<()> {
        if msg.len() > self.max {
            return Err(Error::message_too_large(
                msg.len(),
                self.max,
                "the endpoint's max_message",
            )
            .in_op("send")
            .on_shared(&self.label));
        }
        let hdr = [if fds.is_empty() {
            HDR_MSG
        } else {
            HDR_MSG | HDR_FDS
        }];
        let iov = [IoSlice::new(&hdr), IoSlice::new(msg)];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = if fds.is_empty() {
            SendAncillaryBuffer::default()
        } else {
            let mut c = SendAncillaryBuffer::new(&mut space);
            c.push(SendAncillaryMessage::ScmRights(fds));
            c
        };
        loop {
            let mut flags = SendFlags::NOSIGNAL;
            if deadline != Deadline::Never {
                flags |= SendFlags::DONTWAIT;
            }
            match rustix::net::sendmsg(&self.fd, &iov, &mut control, flags) {
                Ok(_) => return Ok(()),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => wait_or_expire(
                    self.fd.as_fd(),
                    Interest::Writable,
                    deadline,
                    "send",
                    &self.label,
                )?,
                Err(Errno::MSGSIZE) => {
                    return Err(Error::message_too_large(
                        msg.len(),
                        self.max,
                        "the socket's SO_SNDBUF",
                    )
                    .in_op("send")
                    .on_shared(&self.label));
                }
                Err(e) => return Err(Error::from(e).in_op("send").on_shared(&self.label)),
            }
        }
    }

    fn recv_inner(
        &mut self,
        buf: &mut [u8],
        mut fds: Option<&mut Vec<OwnedFd>>,
        deadline: Deadline,
    ) -> Result<usize> {
        let mut flags = RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC;
        if deadline != Deadline::Never {
            flags |= RecvFlags::DONTWAIT;
        }
        loop {
            // A buffer smaller than the endpoint's maximum may be too small for the next
            // message: peek at its size first, so a message that does not fit stays queued.
            if buf.len() < self.max {
                let mut hdr = [0u8; 1];
                let r = rustix::net::recvmsg(
                    &self.fd,
                    &mut [IoSliceMut::new(&mut hdr)],
                    &mut RecvAncillaryBuffer::default(),
                    flags | RecvFlags::PEEK,
                );
                match r {
                    Ok(m) if m.bytes == 0 => return Err(self.disconnected()),
                    Ok(m) if m.bytes - 1 > buf.len() => {
                        return Err(Error::message_too_large(
                            m.bytes - 1,
                            buf.len(),
                            "the receive buffer",
                        )
                        .in_op("recv")
                        .on_shared(&self.label));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.recv_failed(e, deadline)?;
                        continue;
                    }
                }
            }
            let mut hdr = [0u8; 1];
            let mut iov = [IoSliceMut::new(&mut hdr), IoSliceMut::new(buf)];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
            let mut control = match fds {
                Some(_) => RecvAncillaryBuffer::new(&mut space),
                None => RecvAncillaryBuffer::default(),
            };
            let m = match rustix::net::recvmsg(&self.fd, &mut iov, &mut control, flags) {
                Ok(m) => m,
                Err(e) => {
                    self.recv_failed(e, deadline)?;
                    continue;
                }
            };
            if m.bytes == 0 {
                return Err(self.disconnected());
            }
            // Take every descriptor that arrived before anything else can fail: dropped on an
            // error below, they are closed.
            let mut got = Vec::new();
            if fds.is_some() {
                for cmsg in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(rights) = cmsg {
                        got.extend(rights);
                    }
                }
            }
            drop(control);
            let len = m.bytes - 1;
            if let Some(fds) = fds.as_deref_mut() {
                if m.flags.contains(ReturnFlags::CTRUNC) {
                    let n = got.len();
                    drop(got);
                    return Err(Error::new(ErrorKind::LimitExceeded)
                        .with_detail(Detail::Note(
                            format!(
                                "descriptors truncated (MSG_CTRUNC): more than {MAX_FDS} sent, \
                                 or RLIMIT_NOFILE reached; the {n} that arrived were closed \
                                 and the message ({len} bytes) dropped"
                            )
                            .into(),
                        ))
                        .in_op("recv")
                        .on_shared(&self.label));
                }
                fds.append(&mut got);
            }
            if hdr[0] & !(HDR_MSG | HDR_FDS) != 0 || hdr[0] & HDR_MSG == 0 {
                return Err(Error::corrupted(format!(
                    "record header {:#04x}: not a message of this library",
                    hdr[0]
                ))
                .in_op("recv")
                .on_shared(&self.label));
            }
            if len > buf.len() {
                return Err(
                    Error::message_too_large(len, buf.len(), "the receive buffer")
                        .with_detail(Detail::Note(
                            format!(
                                "the peer sent {len} bytes, above this endpoint's maximum of {}; \
                             the message was dropped",
                                self.max
                            )
                            .into(),
                        ))
                        .in_op("recv")
                        .on_shared(&self.label),
                );
            }
            return Ok(len);
        }
    }

    /// A failed receive: `Ok` to retry (interrupted, or waited for data), `Err` to return.
    fn recv_failed(&self, e: Errno, deadline: Deadline) -> Result<()> {
        match e {
            Errno::INTR => Ok(()),
            Errno::AGAIN => wait_or_expire(
                self.fd.as_fd(),
                Interest::Readable,
                deadline,
                "recv",
                &self.label,
            ),
            Errno::CONNRESET => Err(self.disconnected()),
            e => Err(Error::from(e).in_op("recv").on_shared(&self.label)),
        }
    }

    fn disconnected(&self) -> Error {
        Error::disconnected().in_op("recv").on_shared(&self.label)
    }
}

/// Raises `SO_SNDBUF` when a message of `max` bytes would not fit in it.
fn ensure_sndbuf(fd: BorrowedFd<'_>, max: usize, label: &Arc<str>) -> Result<()> {
    use rustix::net::sockopt::{set_socket_send_buffer_size, socket_send_buffer_size};
    let need = max.saturating_add(SNDBUF_OVERHEAD);
    let have = socket_send_buffer_size(fd).unwrap_or(0);
    if have >= need {
        return Ok(());
    }
    // The kernel doubles the value asked for (bookkeeping) and caps it at twice wmem_max.
    let _ = set_socket_send_buffer_size(fd, need.div_ceil(2));
    let have = socket_send_buffer_size(fd).unwrap_or(0);
    if have >= need {
        return Ok(());
    }
    let knob = "/proc/sys/net/core/wmem_max";
    Err(Error::limit(knob, ipc_core::knob::read(knob))
        .with_detail(Detail::Note(
            format!(
                "a {max}-byte message needs SO_SNDBUF >= {need}, got {have}: raise {knob} \
                 (to at least {}) or lower max_message",
                need.div_ceil(2)
            )
            .into(),
        ))
        .in_op("setsockopt(SO_SNDBUF)")
        .on_shared(label))
}

impl MessageSender for Seqpacket {
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        self.send_inner(msg, &[], deadline)
    }

    fn max_message_size(&self) -> usize {
        self.max
    }
}

impl MessageReceiver for Seqpacket {
    /// Receives the next message. Descriptors sent with it (use
    /// [`recv_with_fds`](Seqpacket::recv_with_fds) to get them) are closed by the kernel.
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        self.recv_inner(buf, None, deadline)
    }

    fn max_message_size(&self) -> usize {
        self.max
    }
}

/// The socket itself: readable when a message (or the peer's close) is there, writable when
/// one fits. Receives and sends are all or nothing, so there is nothing to flush.
impl ipc_core::Readiness for Seqpacket {
    fn readiness_fd(&mut self) -> Result<BorrowedFd<'_>> {
        Ok(self.fd.as_fd())
    }
}

impl AsFd for Seqpacket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Seqpacket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<Seqpacket> for OwnedFd {
    fn from(s: Seqpacket) -> OwnedFd {
        s.fd
    }
}

/// The largest message a [`Seqpacket`] can be configured for on this system: twice
/// `/proc/sys/net/core/wmem_max` (the largest `SO_SNDBUF` an unprivileged process gets),
/// less the kernel's per-record allowance and the header byte.
pub fn largest_message() -> usize {
    let wmem_max = ipc_core::knob::read("/proc/sys/net/core/wmem_max").unwrap_or(212_992);
    (2 * wmem_max as usize).saturating_sub(SNDBUF_OVERHEAD)
}

//! [`Seqpacket`]: a connected Unix-domain `SOCK_SEQPACKET` endpoint. The kernel keeps message
//! boundaries (one send is one receive) and can carry descriptors with each message.
//!
//! # Wire format
//!
//! Each message is one seqpacket record: the message itself, plus one trailing byte [`TAG`]
//! when the message is empty or its last byte is `TAG`; a record whose last byte is `TAG` is
//! the message without it. `recv` on a seqpacket socket returns 0 both for an empty record and
//! for the end of the connection; an empty message is the record `[TAG]`, so 0 always means
//! the peer is gone. Most messages go out as they are, with one plain `send(2)` from the
//! caller's buffer (no header to put in front: no copy, no `sendmsg`); descriptors ride in the
//! record's control message (`SCM_RIGHTS`), whatever its bytes. (A program that is not this
//! library can speak it: append `TAG` to a message that is empty or ends with `TAG`, and strip
//! it from a record that ends with it.)
//!
//! # Receiving
//!
//! A buffer longer than the endpoint's maximum receives a message directly with one `recv(2)`
//! (or `recvmsg(2)` for descriptors). A buffer of exactly the maximum receives directly with
//! `recvmsg(2)` into the buffer and one spare byte, where a message of the maximum's length
//! that ends with `TAG` has its trailer. An endpoint of at most 4 KiB uses one `recv(2)` into
//! its own buffer and copies out, which is cheaper. A smaller buffer may be too small for the
//! next message: that receive takes the message into the endpoint's own buffer (one byte more
//! than the maximum, allocated by the first such receive) and, when it does not fit, reports
//! [`ErrorKind::MessageTooLarge`] with its size and keeps it, descriptors included: the next
//! receive with room returns it, before anything else. Nothing is lost, and no message is
//! peeked at first.
//!
//! The common paths are inline in the caller, the rest out of line: a message that is its own
//! record (one `send(2)` from the caller's buffer), and a small endpoint's receive into a
//! buffer of at least its maximum (one `recv(2)` and a copy). Callgrind counts 86 user-space
//! instructions per 64-byte message sent and received on one socket pair, against 34 for a
//! raw `send`/`recv` loop (221 when both calls went through the general code).
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

/// The trailer byte: appended to a message that is empty or ends with it, and stripped from
/// a record that ends with it (see the [module documentation](self#wire-format)).
pub const TAG: u8 = 0xA5;

/// Whether `msg` goes out with the [`TAG`] trailer: empty, or ending with `TAG`.
fn needs_tag(msg: &[u8]) -> bool {
    msg.last().is_none_or(|&b| b == TAG)
}

/// The message in a record whose last byte is `last` and length `len` (at least 1).
fn untag(last: u8, len: usize) -> usize {
    if last == TAG { len - 1 } else { len }
}

/// The most descriptors one message carries (the kernel's own limit, `SCM_MAX_FD`, is 253).
pub const MAX_FDS: usize = 64;

/// Messages up to this size that need the trailer are copied in front of it and go out with
/// one `send(2)`, and an endpoint whose largest message is at most this size receives with one
/// `recv(2)` into its own buffer and copies out: up to it the copy costs less than
/// `sendmsg`/`recvmsg`'s message header. Measured (loaded machine, rough): one thread, ~0.1 us
/// more per `recvmsg` than per `recv`, one iovec or two, against ~0.06 us for copying 64 bytes;
/// 4 KiB streamed from another CPU (`examples/seqpacket_stream`, medians of 10 runs at
/// real-time priority), 2.13 us per message received with `recvmsg` into the caller's buffer
/// and 1.89 us with `recv` and a copy (a raw `recv` loop: ~1.65 us); 64 KiB take ~3 us to copy.
const SMALL: usize = 4096;

/// What the kernel adds to a record when checking it against `SO_SNDBUF` (`len > sndbuf - 32`
/// is `EMSGSIZE`), plus the trailer byte.
const SNDBUF_OVERHEAD: usize = 33;

/// What stops a Unix-domain record beyond `SO_SNDBUF`: the kernel allocates a record's first
/// part with one `kmalloc` (at most 2^`MAX_PAGE_ORDER` pages, beside its `skb_shared_info`)
/// and the rest as at most `MAX_SKB_FRAGS` (17) pages; a larger record is `ENOBUFS`, whatever
/// `SO_SNDBUF` allows. Compile-time constants of the kernel, so named, not a path.
const RECORD_LIMIT: &str = "the largest Unix-socket record the kernel allocates \
                            (2^MAX_PAGE_ORDER pages, from /proc/buddyinfo, + MAX_SKB_FRAGS pages)";

/// Room left in the `kmalloc` for the kernel's `skb_shared_info` (320 bytes on x86-64).
const SHINFO_ALLOWANCE: usize = 512;

/// Below this, every kernel allocates a record: [`record_ceiling`] is not read.
const SURE_RECORD: usize = 1 << 20;

/// The longest message (trailer byte included) one record can carry here: see
/// [`RECORD_LIMIT`]. `MAX_PAGE_ORDER` is the highest order `/proc/buddyinfo` lists (10 when
/// it cannot be read).
fn record_ceiling() -> usize {
    let page = rustix::param::page_size();
    let orders = std::fs::read_to_string("/proc/buddyinfo")
        .ok()
        .and_then(|s| {
            // "Node 0, zone   Normal   c0 c1 ... cN": one count per order.
            let counts = s
                .lines()
                .next()?
                .split_whitespace()
                .count()
                .checked_sub(4)?;
            (1..=20).contains(&counts).then_some(counts)
        })
        .unwrap_or(11);
    (page << (orders - 1)) - SHINFO_ALLOWANCE + 17 * page - 1
}

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
    /// A small message's record (payload, trailer), assembled for one `send`: capacity
    /// `min(max, SMALL) + 1`, allocated once.
    out: Vec<u8>,
    /// This endpoint's own receive buffer, `max + 1` bytes (a record: payload, trailer): made
    /// at construction when `max <= SMALL`, else by the first receive into a buffer smaller
    /// than `max`.
    inbuf: Vec<u8>,
    /// A message received into `inbuf` that did not fit the caller's buffer: returned by the
    /// next receive with room for it, before anything else.
    held: Option<Held>,
}

/// A received message waiting in [`Seqpacket::inbuf`] (payload at `..len`), with the
/// descriptors that came with it.
#[derive(Debug)]
struct Held {
    len: usize,
    fds: Vec<OwnedFd>,
    /// The kernel truncated its descriptors (`MSG_CTRUNC`) when a plain receive took it in:
    /// how many had arrived (closed then, `fds` empty). A receive asking for descriptors
    /// reports it as [`ErrorKind::LimitExceeded`], as it would have on meeting the message
    /// first.
    truncated: Option<usize>,
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
    /// server's uid refused by the policy), [`ErrorKind::InvalidName`] (address too long),
    /// [`ErrorKind::WrongType`] (a stream listener at that path; an abstract name looks up
    /// listeners of its own type only, so there it is `NoPeer`).
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
        let inbuf = if max <= SMALL {
            vec![0; max + 1]
        } else {
            Vec::new()
        };
        Ok(Seqpacket {
            fd,
            label,
            max,
            peer,
            out: Vec::with_capacity(max.min(SMALL) + 1),
            inbuf,
            held: None,
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
    /// than [`MAX_FDS`] descriptors; [`ErrorKind::LimitExceeded`] naming `RLIMIT_NOFILE` when
    /// the kernel refuses more descriptors in flight (`ETOOMANYREFS`: this user's descriptors
    /// sent on Unix sockets and not yet received are above the limit; a process with
    /// `CAP_SYS_RESOURCE` is not held to it), nothing sent.
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
    /// consumed; every descriptor of it that did arrive has been closed, none leaks. A
    /// message above the endpoint's maximum ([`ErrorKind::MessageTooLarge`], dropped) takes
    /// its descriptors with it: closed, never appended to `fds`.
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
        let tag = needs_tag(msg);
        if fds.is_empty() && !tag {
            // The common case: the message is the record.
            return self.send_record(msg.len(), deadline, |fd, flags| {
                rustix::net::send(fd, msg, flags)
            });
        }
        if fds.is_empty() && msg.len() <= SMALL {
            self.out.clear();
            self.out.extend_from_slice(msg);
            self.out.push(TAG);
            return self.send_record(msg.len(), deadline, |fd, flags| {
                rustix::net::send(fd, &self.out, flags)
            });
        }
        let trailer = [TAG];
        let iov = [IoSlice::new(msg), IoSlice::new(&trailer)];
        let iov = &iov[..if tag { 2 } else { 1 }];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = if fds.is_empty() {
            SendAncillaryBuffer::default()
        } else {
            let mut c = SendAncillaryBuffer::new(&mut space);
            c.push(SendAncillaryMessage::ScmRights(fds));
            c
        };
        self.send_record(msg.len(), deadline, |fd, flags| {
            rustix::net::sendmsg(fd, iov, &mut control, flags)
        })
    }

    /// Sends one record with `send` (given the socket and the flags) until it is out, the
    /// deadline passes or it fails.
    #[inline]
    fn send_record(
        &self,
        len: usize,
        deadline: Deadline,
        mut send: impl FnMut(BorrowedFd<'_>, SendFlags) -> rustix::io::Result<usize>,
    ) -> Result<()> {
        let flags = send_flags(deadline);
        loop {
            match send(self.fd.as_fd(), flags) {
                Ok(_) => return Ok(()),
                Err(e) => self.send_failed(e, len, deadline)?,
            }
        }
    }

    /// A failed send of a `len`-byte message: `Ok` to retry (interrupted, or waited for room),
    /// `Err` to return.
    #[cold]
    #[inline(never)]
    fn send_failed(&self, e: Errno, len: usize, deadline: Deadline) -> Result<()> {
        match e {
            Errno::INTR => Ok(()),
            Errno::AGAIN => wait_or_expire(
                self.fd.as_fd(),
                Interest::Writable,
                deadline,
                "send",
                &self.label,
            ),
            Errno::MSGSIZE => {
                Err(
                    Error::message_too_large(len, self.max, "the socket's SO_SNDBUF")
                        .in_op("send")
                        .on_shared(&self.label),
                )
            }
            // One record larger than the kernel allocates (or, for a large one, memory too
            // fragmented for its first part): nothing was sent.
            Errno::NOBUFS if len >= SURE_RECORD => {
                Err(Error::limit(RECORD_LIMIT, Some(record_ceiling() as u64))
                    .with_source(std::io::Error::other(format!(
                        "the kernel could not allocate one {len}-byte record (ENOBUFS); nothing \
                     was sent: lower max_message (seqpacket::largest_message) or split it"
                    )))
                    .in_op("send")
                    .on_shared(&self.label))
            }
            Errno::TOOMANYREFS => {
                // This user's descriptors in flight on Unix sockets (sent, not yet received)
                // are above its RLIMIT_NOFILE: until peers receive some, no more go out.
                // The knob is the bare name, so `limit_info().knob` matches it; what it counts
                // here goes in the source.
                Err(ipc_core::pipe::descriptor_error(Errno::MFILE)
                    .with_source(std::io::Error::other(format!(
                        "descriptors in flight (sent on Unix sockets by this user and not yet \
                         received) above it: {e}"
                    )))
                    .in_op("send")
                    .on_shared(&self.label))
            }
            e => Err(Error::from(e).in_op("send").on_shared(&self.label)),
        }
    }

    fn recv_inner(
        &mut self,
        buf: &mut [u8],
        fds: Option<&mut Vec<OwnedFd>>,
        deadline: Deadline,
    ) -> Result<usize> {
        if self.held.is_some() {
            return self.take_held(buf, fds);
        }
        let flags = recv_flags(deadline);
        if buf.len() < self.max {
            // The next message may not fit: receive it here (no peek, one call), and keep it
            // for a later receive when it does not fit.
            return self.recv_owned(buf, fds, flags, deadline);
        }
        if fds.is_none() && self.max <= SMALL {
            return self.recv_small(buf, deadline);
        }
        if fds.is_none() && buf.len() > self.max {
            // Room for the longest record: one plain `recv` straight into `buf`.
            let (n, len) = loop {
                match rustix::net::recv(&self.fd, &mut *buf, flags) {
                    Ok(r) => break r,
                    Err(e) => self.recv_failed(e, deadline)?,
                }
            };
            if len == 0 {
                return Err(self.disconnected());
            }
            // A record longer than `buf` carries a message of at least `buf.len()` bytes,
            // above the maximum: reported by `record_len`.
            return self.record_len(&buf[..n], len, buf.len());
        }
        // `buf` and one spare byte: room for the trailer of a message as long as `buf`.
        let room = buf.len();
        let mut spare = [0u8; 1];
        let mut iov = [IoSliceMut::new(buf), IoSliceMut::new(&mut spare)];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = match fds {
            Some(_) => RecvAncillaryBuffer::new(&mut space),
            None => RecvAncillaryBuffer::default(),
        };
        let m = loop {
            match rustix::net::recvmsg(&self.fd, &mut iov, &mut control, flags) {
                Ok(m) => break m,
                Err(e) => self.recv_failed(e, deadline)?,
            }
        };
        if m.bytes == 0 {
            return Err(self.disconnected());
        }
        let want = fds.is_some();
        // Strict when descriptors are asked for, else none taken: never a truncated set.
        let (got, _) = self.take_fds(&mut control, (want, want), m.flags, m.bytes)?;
        drop(control);
        let [buf, spare] = iov;
        let n = m.bytes;
        let msg = if n <= room {
            untag(buf[n - 1], n)
        } else if n == room + 1 {
            untag(spare[0], n)
        } else {
            // Cut: too long however it ends.
            n
        };
        // Checked before the descriptors are handed over: those of a record above the
        // maximum are closed with it (`got` dropped), never left in `fds` for the caller to
        // take for the next message's.
        let len = self.check_len(msg, room)?;
        if let Some(fds) = fds {
            fds.extend(got);
        }
        Ok(len)
    }

    /// A small endpoint's receive (at most [`SMALL`] bytes) into a buffer of at least its
    /// maximum: one plain `recv` into its own buffer, then a short copy. Inline: the common
    /// record is handled here, anything else by [`small_record`](Self::small_record).
    #[inline]
    fn recv_small(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        let (n, len) = loop {
            match rustix::net::recv(&self.fd, &mut self.inbuf[..], recv_flags(deadline)) {
                Ok(r) => break r,
                Err(e) => self.recv_failed(e, deadline)?,
            }
        };
        if n == len && n > 0 {
            let msg = untag(self.inbuf[n - 1], n);
            if msg <= self.max {
                buf[..msg].copy_from_slice(&self.inbuf[..msg]);
                return Ok(msg);
            }
        }
        self.small_record(buf, n, len)
    }

    /// The message in a record of `len` bytes of which `n` arrived in `inbuf` (a small
    /// endpoint's receive), copied into `buf` (at least the maximum long): the end of the
    /// connection, or a record above the maximum, reported.
    #[cold]
    #[inline(never)]
    fn small_record(&mut self, buf: &mut [u8], n: usize, len: usize) -> Result<usize> {
        if len == 0 {
            return Err(self.disconnected());
        }
        // `inbuf` holds a record of `max + 1` bytes: a longer one was cut (and is lost).
        let len = self.record_len(&self.inbuf[..n], len, self.max)?;
        buf[..len].copy_from_slice(&self.inbuf[..len]);
        Ok(len)
    }

    /// Receives the next record into this endpoint's own buffer (with any descriptors), and
    /// returns it when it fits `buf`; else keeps it as [`Held`] and reports its size.
    fn recv_owned(
        &mut self,
        buf: &mut [u8],
        fds: Option<&mut Vec<OwnedFd>>,
        flags: RecvFlags,
        deadline: Deadline,
    ) -> Result<usize> {
        if self.inbuf.len() < self.max + 1 {
            self.inbuf = vec![0; self.max + 1];
        }
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let m = loop {
            let mut iov = [IoSliceMut::new(&mut self.inbuf[..])];
            match rustix::net::recvmsg(&self.fd, &mut iov, &mut control, flags) {
                Ok(m) => break m,
                Err(e) => self.recv_failed(e, deadline)?,
            }
        };
        if m.bytes == 0 {
            return Err(self.disconnected());
        }
        // Descriptors are kept with a message held for later, whoever receives it then.
        let (got, truncated) =
            self.take_fds(&mut control, (true, fds.is_some()), m.flags, m.bytes)?;
        drop(control);
        // A record above the maximum was truncated: reported (and dropped) here.
        let n = m.bytes.min(self.inbuf.len());
        let len = self.record_len(&self.inbuf[..n], m.bytes, self.max)?;
        self.held = Some(Held {
            len,
            fds: got,
            truncated,
        });
        self.take_held(buf, fds)
    }

    /// Returns the held message when it fits `buf` (its descriptors appended to `fds`, or
    /// closed); else [`ErrorKind::MessageTooLarge`], and it stays held. A message whose
    /// descriptors were truncated is [`ErrorKind::LimitExceeded`] to a receive asking for
    /// them (and consumed), as [`recv_with_fds`](Self::recv_with_fds) says.
    fn take_held(&mut self, buf: &mut [u8], fds: Option<&mut Vec<OwnedFd>>) -> Result<usize> {
        let Some(held) = self.held.take_if(|h| h.len <= buf.len()) else {
            let len = self.held.as_ref().map_or(0, |h| h.len);
            return Err(
                Error::message_too_large(len, buf.len(), "the receive buffer")
                    .in_op("recv")
                    .on_shared(&self.label),
            );
        };
        if let Some(fds) = fds {
            if let Some(arrived) = held.truncated {
                return Err(self.truncated(arrived, held.len));
            }
            fds.extend(held.fds);
        }
        buf[..held.len].copy_from_slice(&self.inbuf[..held.len]);
        Ok(held.len)
    }

    /// Takes every descriptor that arrived with a record of `len` bytes (none unless `take`),
    /// before anything else can fail: dropped on an error, they are closed. A truncated set
    /// (`MSG_CTRUNC`) is [`ErrorKind::LimitExceeded`] when the caller asked for descriptors
    /// (`strict`); else those that arrived are closed, the message stands, and their count
    /// comes back beside the (empty) set, for a message held for a later receive.
    fn take_fds(
        &self,
        control: &mut RecvAncillaryBuffer<'_>,
        (take, strict): (bool, bool),
        flags: ReturnFlags,
        len: usize,
    ) -> Result<(Vec<OwnedFd>, Option<usize>)> {
        let mut got = Vec::new();
        if !take {
            return Ok((got, None));
        }
        for cmsg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = cmsg {
                got.extend(rights);
            }
        }
        if !flags.contains(ReturnFlags::CTRUNC) {
            return Ok((got, None));
        }
        let arrived = got.len();
        drop(got);
        if strict {
            return Err(self.truncated(arrived, len));
        }
        Ok((Vec::new(), Some(arrived)))
    }

    /// The error for a message of `len` bytes whose descriptors the kernel truncated, of
    /// which `arrived` came (and were closed); the message is dropped.
    ///
    /// The control buffer has room for [`MAX_FDS`]: when fewer arrived, the kernel stopped
    /// because it could not install the next one in this process, which is out of
    /// descriptors (`RLIMIT_NOFILE`, named with its value so the caller can act).
    #[cold]
    fn truncated(&self, arrived: usize, len: usize) -> Error {
        let e = if arrived < MAX_FDS {
            ipc_core::pipe::descriptor_error(Errno::MFILE).with_source(std::io::Error::other(
                format!(
                    "descriptors truncated (MSG_CTRUNC): this process had room for {arrived} \
                 (or the system for no more: /proc/sys/fs/file-max); they were closed and \
                 the message ({len} bytes) dropped"
                ),
            ))
        } else {
            Error::new(ErrorKind::LimitExceeded).with_detail(Detail::Note(
                format!(
                    "descriptors truncated (MSG_CTRUNC): more than {MAX_FDS} sent; the \
                     {arrived} that arrived were closed and the message ({len} bytes) dropped"
                )
                .into(),
            ))
        };
        e.in_op("recv").on_shared(&self.label)
    }

    /// The message in a received record of `len` bytes (at least 1) of which `got` arrived
    /// (`got.len() < len` when the kernel cut it: its message is longer than `room` however
    /// it ends, since `got` has room for `room` bytes and the trailer).
    fn record_len(&self, got: &[u8], len: usize, room: usize) -> Result<usize> {
        let msg = match got.last() {
            Some(&last) if got.len() == len => untag(last, len),
            _ => len,
        };
        self.check_len(msg, room)
    }

    /// Checks a received message's length `len` against `room` (a longer record was truncated
    /// by the kernel and is lost: the peer broke the maximum); returns it.
    fn check_len(&self, len: usize, room: usize) -> Result<usize> {
        if len > room {
            // The note goes in the source: as the detail it would replace the sizes, and
            // `message_size` would say nothing.
            return Err(Error::message_too_large(len, room, "the receive buffer")
                .with_source(std::io::Error::other(format!(
                    "the peer sent {len} bytes, above this endpoint's maximum of {}; the \
                     message was dropped",
                    self.max
                )))
                .in_op("recv")
                .on_shared(&self.label));
        }
        Ok(len)
    }

    /// A failed receive: `Ok` to retry (interrupted, or waited for data), `Err` to return.
    #[cold]
    #[inline(never)]
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
            // The peer closed with messages of ours unread. The kernel reports that once,
            // ahead of the messages the peer sent before it (a socket error comes first in a
            // datagram receive) and clears it: receive again, to take those, and then the end
            // of the stream (a read of 0), which says `Disconnected`.
            Errno::CONNRESET => Ok(()),
            e => Err(Error::from(e).in_op("recv").on_shared(&self.label)),
        }
    }

    fn disconnected(&self) -> Error {
        Error::disconnected().in_op("recv").on_shared(&self.label)
    }
}

/// Every send's flags: `MSG_NOSIGNAL`, and `MSG_DONTWAIT` when the call has a deadline.
#[inline]
fn send_flags(deadline: Deadline) -> SendFlags {
    if deadline == Deadline::Never {
        SendFlags::NOSIGNAL
    } else {
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT
    }
}

/// Every receive's flags: the record's real length (`MSG_TRUNC`), received descriptors
/// close-on-exec, and `MSG_DONTWAIT` when the call has a deadline.
#[inline]
fn recv_flags(deadline: Deadline) -> RecvFlags {
    let flags = RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC;
    if deadline == Deadline::Never {
        flags
    } else {
        flags | RecvFlags::DONTWAIT
    }
}

/// Raises `SO_SNDBUF` when a message of `max` bytes would not fit in it; refuses a `max` no
/// record the kernel allocates can carry ([`record_ceiling`]), which every send of such a
/// message would fail with.
fn ensure_sndbuf(fd: BorrowedFd<'_>, max: usize, label: &Arc<str>) -> Result<()> {
    use rustix::net::sockopt::{set_socket_send_buffer_size, socket_send_buffer_size};
    if max >= SURE_RECORD && max > record_ceiling() {
        let ceiling = record_ceiling();
        return Err(Error::limit(RECORD_LIMIT, Some(ceiling as u64))
            .with_source(std::io::Error::other(format!(
                "a {max}-byte message does not fit one record (at most {ceiling} bytes here): \
                 lower max_message"
            )))
            .in_op("configure")
            .on_shared(label));
    }
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
    // The advice goes in the source: a note as the detail would replace the limit, and
    // `limit_info` would name no knob.
    Err(Error::limit(knob, ipc_core::knob::read(knob))
        .with_source(std::io::Error::other(format!(
            "a {max}-byte message needs SO_SNDBUF >= {need}, got {have}: raise {knob} (to at \
             least {}) or lower max_message",
            need.div_ceil(2)
        )))
        .in_op("setsockopt(SO_SNDBUF)")
        .on_shared(label))
}

impl MessageSender for Seqpacket {
    /// Inline for the common case, a message that is its own record: one `send(2)` from
    /// `msg`. The rest (the trailer, waiting, errors) is out of line.
    #[inline]
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        if msg.len() <= self.max && !needs_tag(msg) {
            return self.send_record(msg.len(), deadline, |fd, flags| {
                rustix::net::send(fd, msg, flags)
            });
        }
        self.send_inner(msg, &[], deadline)
    }

    fn max_message_size(&self) -> usize {
        self.max
    }
}

impl MessageReceiver for Seqpacket {
    /// Receives the next message. Descriptors sent with it (use
    /// [`recv_with_fds`](Seqpacket::recv_with_fds) to get them) are closed. A buffer smaller
    /// than the endpoint's maximum works as the [module docs](self#receiving) say: a message
    /// too large for it is [`ErrorKind::MessageTooLarge`] and kept for the next receive.
    ///
    /// Inline for the common case, an endpoint of at most 4 KiB receiving into a buffer of
    /// at least its maximum with nothing held: one `recv(2)` into its own buffer and a copy.
    /// The rest (the end, a record above the maximum, waiting, errors) is out of line.
    #[inline]
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        if self.held.is_none() && self.max <= SMALL && buf.len() >= self.max {
            return self.recv_small(buf, deadline);
        }
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
/// less the kernel's per-record allowance and the trailer byte; and at most what one record
/// the kernel allocates can carry (a little over 4 MiB on x86-64, whatever `wmem_max` says).
pub fn largest_message() -> usize {
    let wmem_max = ipc_core::knob::read("/proc/sys/net/core/wmem_max").unwrap_or(212_992);
    (2 * wmem_max as usize)
        .saturating_sub(SNDBUF_OVERHEAD)
        .min(record_ceiling())
}

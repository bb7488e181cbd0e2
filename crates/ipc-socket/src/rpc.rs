//! Request-reply over any duplex pair of message endpoints: a [`Client`] with correlation ids,
//! per-request deadlines and several requests in flight, and [`serve`], a server answering
//! many clients of a [`Listener`].
//!
//! # Wire format
//!
//! Each request and each reply is one message: an 8-byte little-endian correlation id, then
//! the payload. The server answers each request with the id it came with, in any order; the
//! client matches replies to requests by id, keeping replies that arrive for other requests
//! until they are asked for.
//!
//! # Failure
//!
//! A server that closes or dies fails every request in flight with
//! [`ErrorKind::Disconnected`] (replies that had arrived before are still delivered). A
//! request whose deadline passes fails with [`ErrorKind::TimedOut`] and is forgotten: a
//! reply arriving later is dropped. A reply above the client endpoint's largest message (a
//! server allowed larger messages than its client) is dropped by the endpoint unread, so no
//! request can be matched to it: every request still waiting for its reply then fails with
//! [`ErrorKind::MessageTooLarge`] and is forgotten, rather than one of them waiting for a
//! reply that will never come. The connection goes on: a later request gets its reply. A byte
//! stream ([`Stream`](crate::Stream), frame endpoints) drops such a reply as a seqpacket
//! socket does, unless the reply is larger than 256 MiB (taken for bytes that are not the
//! framing), or larger than `PIPE_BUF` over a pipe or FIFO receiver of atomic records (a
//! maximum of at most 4092 bytes): then its frame header is [`ErrorKind::Corrupted`], and so
//! is all that follows (the framing is lost); every request waiting then fails with
//! `Corrupted` and is forgotten, and so does any later one.

use std::collections::HashMap;

use ipc_core::{Deadline, Detail, Error, ErrorKind, MessageReceiver, MessageSender, Result};

use crate::{Kind, Listener};

/// The correlation id's length at the start of every message.
pub const ID_LEN: usize = 8;

/// The receive buffer a [`Client`] or [`serve_connection`] starts with, at most: larger
/// messages (up to the endpoint's maximum) grow it when they come.
const FIRST_BUF_MAX: usize = 16 << 20;

/// Receives the next message into `buf`, first growing it when the message is larger than
/// `buf` and within the endpoint's maximum (the endpoint keeps such a message for a receive
/// with room: see [`MessageReceiver`]).
fn recv_growing<E: MessageReceiver + ?Sized>(
    conn: &mut E,
    buf: &mut Vec<u8>,
    deadline: Deadline,
) -> Result<usize> {
    loop {
        match conn.recv_deadline(buf, deadline) {
            Err(e) if e.kind() == ErrorKind::MessageTooLarge => match *e.detail() {
                Detail::Size { size, .. }
                    if size > buf.len() && size <= MessageReceiver::max_message_size(conn) =>
                {
                    buf.resize(size, 0);
                }
                _ => return Err(e),
            },
            r => return r,
        }
    }
}

/// Two endpoints, one each way, as one duplex endpoint (for a [`Client`] or [`serve_connection`]
/// over, say, two pipes or two shared-memory channels).
#[derive(Debug)]
pub struct Pair<T, R> {
    /// Requests go out here.
    pub tx: T,
    /// Replies come in here.
    pub rx: R,
}

impl<T: MessageSender, R> MessageSender for Pair<T, R> {
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        self.tx.send_deadline(msg, deadline)
    }
    fn max_message_size(&self) -> usize {
        self.tx.max_message_size()
    }
}

impl<T, R: MessageReceiver> MessageReceiver for Pair<T, R> {
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        self.rx.recv_deadline(buf, deadline)
    }
    fn max_message_size(&self) -> usize {
        self.rx.max_message_size()
    }
}

/// A request in flight, returned by [`Client::start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(u64);

impl RequestId {
    /// The correlation id on the wire.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The client side: sends requests and matches the replies to them.
#[derive(Debug)]
pub struct Client<E> {
    conn: E,
    next: u64,
    /// Requests waiting for their reply, and their deadlines.
    pending: HashMap<u64, Deadline>,
    /// Replies that arrived for requests nobody asked about yet.
    arrived: HashMap<u64, Vec<u8>>,
    buf: Vec<u8>,
    /// Set once a receive met the server's end (every reply it sent before has been read).
    gone: bool,
}

impl<E: MessageSender + MessageReceiver> Client<E> {
    /// A client over the duplex endpoint `conn` (a [`Seqpacket`](crate::Seqpacket), a
    /// [`Stream`](crate::Stream), or a [`Pair`]). Its receive buffer starts at the endpoint's
    /// largest message, 16 MiB at most, and grows for a larger reply within that maximum.
    pub fn new(conn: E) -> Client<E> {
        let max = MessageReceiver::max_message_size(&conn).min(FIRST_BUF_MAX);
        Client {
            conn,
            next: 1,
            pending: HashMap::new(),
            arrived: HashMap::new(),
            buf: vec![0; max],
            gone: false,
        }
    }

    /// Sends `request` (waiting for room until `deadline`) and returns its id; the request's
    /// reply must come by the same `deadline` ([`wait`](Client::wait)).
    ///
    /// # Errors
    /// [`ErrorKind::MessageTooLarge`] when the request and its id exceed the endpoint's
    /// largest message; [`ErrorKind::Disconnected`] when the server is gone; the endpoint's.
    pub fn start(&mut self, request: &[u8], deadline: Deadline) -> Result<RequestId> {
        if self.gone {
            return Err(Error::disconnected().in_op("request"));
        }
        let id = self.next;
        self.next += 1;
        let mut msg = Vec::with_capacity(ID_LEN + request.len());
        msg.extend_from_slice(&id.to_le_bytes());
        msg.extend_from_slice(request);
        // A send that finds the server gone does not mark it gone here: replies it sent before
        // it went may still be in the endpoint, for `wait` to deliver before the end.
        self.conn.send_deadline(&msg, deadline)?;
        self.pending.insert(id, deadline);
        Ok(RequestId(id))
    }

    /// Waits for the reply to `id` until the request's deadline, copies it into `reply` and
    /// returns its length. Replies to other requests that arrive meanwhile are kept for them.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] (or `WouldBlock` for [`Deadline::Now`]) when the request's
    /// deadline passed: the request is forgotten. [`ErrorKind::Disconnected`] when the server
    /// is gone. [`ErrorKind::MessageTooLarge`] when `reply` is too small (the reply is kept:
    /// ask again with a larger buffer, [`in_flight`](Client::in_flight) unchanged), or when a
    /// reply above the endpoint's largest message came: the endpoint dropped it unread, and
    /// every request still waiting for its reply failed with it and was forgotten (the
    /// module's "Failure").
    /// [`ErrorKind::NotFound`] for an id not in flight.
    /// [`ErrorKind::Corrupted`] for a reply shorter than its id (the request stays in
    /// flight), or from the endpoint: a stream that lost its framing, from which no reply can
    /// be read again; every request still waiting failed with it and was forgotten.
    pub fn wait(&mut self, id: RequestId, reply: &mut [u8]) -> Result<usize> {
        loop {
            if let Some(r) = self.arrived.get(&id.0) {
                if r.len() > reply.len() {
                    return Err(
                        Error::message_too_large(r.len(), reply.len(), "the reply buffer")
                            .in_op("wait reply"),
                    );
                }
                let r = self.arrived.remove(&id.0).expect("just seen");
                reply[..r.len()].copy_from_slice(&r);
                return Ok(r.len());
            }
            let Some(&deadline) = self.pending.get(&id.0) else {
                return Err(Error::with_note(
                    ErrorKind::NotFound,
                    format!("request {} is not in flight", id.0),
                )
                .in_op("wait reply"));
            };
            if self.gone {
                self.pending.remove(&id.0);
                return Err(Error::disconnected().in_op("wait reply"));
            }
            match recv_growing(&mut self.conn, &mut self.buf, deadline) {
                Ok(n) => self.arrive(n)?,
                Err(e) if e.kind() == ErrorKind::Disconnected => self.gone = true,
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                    self.pending.remove(&id.0);
                    return Err(e);
                }
                Err(e) if matches!(e.kind(), ErrorKind::MessageTooLarge | ErrorKind::Corrupted) => {
                    return Err(self.lost(e));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// After `e`, a reply above the endpoint's largest message (`recv_growing` takes any
    /// within it), which the endpoint dropped with its id unread (`MessageTooLarge`), or a
    /// stream that lost its framing (`Corrupted`: no reply can be read again): fails every
    /// request in flight, since which one it answered cannot be told.
    fn lost(&mut self, e: Error) -> Error {
        let failed = self.pending.len();
        self.pending.clear();
        let what = if e.kind() == ErrorKind::Corrupted {
            "the endpoint can read no reply any more"
        } else {
            "a reply above this endpoint's largest message was dropped unread"
        };
        Error::with_note(
            e.kind(),
            format!(
                "{what} ({e}); which request it answered cannot be told, so the {failed} \
                 request(s) in flight failed with it"
            ),
        )
        .in_op("wait reply")
    }

    /// Sends `request` and waits for its reply, all before `deadline`.
    ///
    /// # Errors
    /// As [`start`](Client::start) and [`wait`](Client::wait), except that a failed call
    /// leaves nothing in flight: it hands out no id to ask again with. So a reply larger than
    /// `reply` is [`ErrorKind::MessageTooLarge`] giving its size, and is dropped (the server
    /// did run the request): call with a buffer of that size, or use `start` and `wait`,
    /// which keep such a reply for a larger buffer.
    pub fn call(&mut self, request: &[u8], reply: &mut [u8], deadline: Deadline) -> Result<usize> {
        let id = self.start(request, deadline)?;
        self.wait(id, reply).map_err(|e| {
            let kept = self.arrived.contains_key(&id.0);
            self.cancel(id);
            if !kept {
                return e;
            }
            // The sizes stay readable (`message_size`); the note goes in the source.
            let size = e.message_size().map_or(0, |(size, _)| size);
            e.with_source(std::io::Error::other(format!(
                "the server answered; its reply of {size} bytes was dropped with the request \
                 (call has no id to ask again with): call with a buffer of that size, or \
                 use start and wait, which keep it"
            )))
        })
    }

    /// Forgets request `id`: its reply, if it comes, is dropped.
    pub fn cancel(&mut self, id: RequestId) {
        self.pending.remove(&id.0);
        self.arrived.remove(&id.0);
    }

    /// How many requests are in flight (started, reply not yet taken): those still waiting for
    /// their reply, and those whose reply arrived (received by a `wait` for another request,
    /// or kept after a `wait` with too small a buffer) and is kept for them.
    pub fn in_flight(&self) -> usize {
        self.pending.len() + self.arrived.len()
    }

    /// The endpoint.
    pub fn get_mut(&mut self) -> &mut E {
        &mut self.conn
    }

    fn arrive(&mut self, n: usize) -> Result<()> {
        let Some(id) = self.buf[..n].first_chunk::<ID_LEN>() else {
            return Err(Error::corrupted(format!(
                "a reply of {n} bytes, shorter than its {ID_LEN}-byte id"
            ))
            .in_op("wait reply"));
        };
        let id = u64::from_le_bytes(*id);
        if self.pending.remove(&id).is_some() {
            self.arrived.insert(id, self.buf[ID_LEN..n].to_vec());
        } else {
            tracing::debug!(
                id,
                "dropped a reply nobody waits for (timed out or cancelled)"
            );
        }
        Ok(())
    }
}

/// Answers the requests arriving on `conn` with `handler` until the client leaves (then
/// `Ok`). `handler` gets each request's payload and appends the reply's payload to a cleared
/// buffer. The receive buffer grows as [`Client`]'s does.
///
/// # Errors
/// The endpoint's errors other than the client leaving; [`ErrorKind::Corrupted`] for a request
/// shorter than its id.
pub fn serve_connection<E, H>(conn: &mut E, handler: &H) -> Result<()>
where
    E: MessageSender + MessageReceiver,
    H: Fn(&[u8], &mut Vec<u8>) + ?Sized,
{
    serve_requests(
        conn,
        handler,
        |conn, buf| recv_growing(conn, buf, Deadline::Never).map(Some),
        |_| {},
    )
}

/// [`serve_connection`] until `stop` is given: then the request being handled is answered and
/// the connection closed (its client's requests still waiting fail with `Disconnected`), so a
/// client that keeps its connection open cannot keep a stopped server from returning.
/// `held` is told when a reply starts and ends being written (see [`STOP_GRACE`]).
fn serve_connection_until<E, H>(
    conn: &mut E,
    handler: &H,
    stop: &Stop,
    held: Option<&Held<'_>>,
) -> Result<()>
where
    E: MessageSender + MessageReceiver + ipc_core::Readiness,
    H: Fn(&[u8], &mut Vec<u8>) + ?Sized,
{
    let next = |conn: &mut E, buf: &mut Vec<u8>| {
        loop {
            if stop.is_stopped() {
                return Ok(None);
            }
            // A request the endpoint holds already (a stream's buffered frame) comes first.
            match recv_growing(conn, buf, Deadline::Now) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                r => return r.map(Some),
            }
            if conn.arm()? {
                continue;
            }
            let interest = conn.recv_interest();
            let woke = wait_or_stop(conn.readiness_fd()?, interest, stop, Deadline::Never);
            conn.disarm();
            woke?;
        }
    };
    serve_requests(conn, handler, next, |on| {
        if let Some(held) = held {
            held.sending(on);
        }
    })
}

/// The loop of [`serve_connection`]: `next` gives each request's length in `buf`, or `None`
/// to close; `sending` is told when each reply starts (`true`) and ends being written.
fn serve_requests<E, H>(
    conn: &mut E,
    handler: &H,
    mut next: impl FnMut(&mut E, &mut Vec<u8>) -> Result<Option<usize>>,
    sending: impl Fn(bool),
) -> Result<()>
where
    E: MessageSender + MessageReceiver,
    H: Fn(&[u8], &mut Vec<u8>) + ?Sized,
{
    let mut buf = vec![0u8; MessageReceiver::max_message_size(conn).min(FIRST_BUF_MAX)];
    let mut reply = Vec::new();
    let mut body = Vec::new();
    loop {
        let n = match next(conn, &mut buf) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Disconnected => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(id) = buf[..n].first_chunk::<ID_LEN>() else {
            return Err(Error::corrupted(format!(
                "a request of {n} bytes, shorter than its {ID_LEN}-byte id"
            ))
            .in_op("serve"));
        };
        body.clear();
        handler(&buf[ID_LEN..n], &mut body);
        reply.clear();
        reply.extend_from_slice(id);
        reply.extend_from_slice(&body);
        sending(true);
        let sent = conn.send(&reply);
        sending(false);
        match sent {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Disconnected => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Serves the clients of `listener`, each on a thread of its own, with `handler` (see
/// [`serve_connection`]), accepting until `until` passes ([`Deadline::Never`]: forever);
/// then waits for the clients connected so far to leave, and returns.
///
/// A client the [`PeerPolicy`](crate::PeerPolicy) refuses is closed and the server goes on;
/// a client whose connection fails (its credentials unreadable at accept, say), for whom no
/// thread can be started, or whose request makes `handler` panic (the panic hook reports it
/// as usual), is logged (DEBUG) and dropped.
///
/// # Errors
/// Errors of `accept` that are the listener's, not one connection's: running out of
/// descriptors, for one.
pub fn serve<K, H>(listener: &Listener<K>, until: Deadline, handler: H) -> Result<()>
where
    K: Kind + MessageSender + MessageReceiver + ipc_core::Readiness + Send,
    H: Fn(&[u8], &mut Vec<u8>) + Sync,
{
    serve_inner(listener, None, until, handler)
}

/// [`serve`], which also stops as soon as `stop` is [stopped](Stop::stop) (from any thread): it
/// accepts no more clients, closes the connections that are waiting for their next request,
/// lets each request being handled be answered and then closes its connection too, and
/// returns `Ok` once every handler has returned. A graceful stop that no client can hold up
/// by staying connected: a client's requests sent but not yet taken when its connection
/// closes fail on its side with [`ErrorKind::Disconnected`], as a server's death fails them;
/// and a reply still not written [`STOP_GRACE`] after it began (or after the stop, if later:
/// its client does not read) is given up, its connection shut down. A handler is waited for
/// however long it runs (one that never returns holds the server: that one is yours to end).
/// Without a stop, `until` passing ends the accepting only, as in [`serve`].
/// Clients that connect after the stop are left in the listener's queue, unserved, until the
/// listener is dropped.
///
/// ```no_run
/// use ipc_socket::rpc::{Stop, serve_until_stopped};
/// use ipc_socket::{Address, Deadline, Listener, Options, Seqpacket};
///
/// let listener: Listener<Seqpacket> =
///     Listener::bind(&Address::abstract_name("echo"), &Options::new())?;
/// let stop = Stop::new()?;
/// let stopper = stop.clone();
/// std::thread::spawn(move || {
///     std::thread::sleep(std::time::Duration::from_secs(60));
///     stopper.stop();
/// });
/// serve_until_stopped(&listener, &stop, Deadline::Never, |q: &[u8], out: &mut Vec<u8>| {
///     out.extend_from_slice(q)
/// })?;
/// # Ok::<(), ipc_socket::Error>(())
/// ```
///
/// # Errors
/// As [`serve`].
pub fn serve_until_stopped<K, H>(
    listener: &Listener<K>,
    stop: &Stop,
    until: Deadline,
    handler: H,
) -> Result<()>
where
    K: Kind + MessageSender + MessageReceiver + ipc_core::Readiness + Send,
    H: Fn(&[u8], &mut Vec<u8>) + Sync,
{
    serve_inner(listener, Some(stop), until, handler)
}

/// Stops a [`serve_until_stopped`] from any thread; clones stop the same server. An `eventfd`
/// the server waits on beside its listener, so a stop ends its wait at once.
#[derive(Clone, Debug)]
pub struct Stop {
    fd: std::sync::Arc<std::os::fd::OwnedFd>,
}

impl Stop {
    /// A stop not given yet.
    ///
    /// # Errors
    /// [`ErrorKind::LimitExceeded`] naming `RLIMIT_NOFILE` when out of descriptors.
    pub fn new() -> Result<Stop> {
        use rustix::event::{EventfdFlags, eventfd};
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(|e| {
            ipc_core::pipe::descriptor_error(e)
                .in_op("eventfd")
                .on("rpc stop")
        })?;
        Ok(Stop {
            fd: std::sync::Arc::new(fd),
        })
    }

    /// Stops the server: it accepts no more clients, closes each connection once the request
    /// in hand (if any) is answered (a reply its client does not read is given up after
    /// [`STOP_GRACE`]), and returns (see [`serve_until_stopped`]). No effect after the first
    /// call.
    pub fn stop(&self) {
        // Only EAGAIN can fail this (the counter at its maximum): stopped already then.
        let _ = rustix::io::write(&*self.fd, &1u64.to_ne_bytes());
    }

    /// Whether [`stop`](Stop::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.ready(Deadline::Now).unwrap_or(false)
    }

    /// Waits until the stop is given or `deadline` passes; `Ok(true)` once stopped.
    fn ready(&self, deadline: Deadline) -> Result<bool> {
        use std::os::fd::AsFd;
        ipc_core::fd::wait(self.fd.as_fd(), ipc_core::fd::Interest::Readable, deadline)
            .map_err(|e| Error::from(e).in_op("poll").on("rpc stop"))
    }
}

/// Waits until `fd` is ready for `interest` (`Ok(true)`), `stop` is given or `until` passes
/// (`Ok(false)`).
fn wait_or_stop(
    fd: std::os::fd::BorrowedFd<'_>,
    interest: ipc_core::fd::Interest,
    stop: &Stop,
    until: Deadline,
) -> Result<bool> {
    use rustix::event::{PollFd, PollFlags, poll};
    use std::os::fd::AsFd;
    let flags = match interest {
        ipc_core::fd::Interest::Readable => PollFlags::IN,
        ipc_core::fd::Interest::Writable => PollFlags::OUT,
    };
    loop {
        let timeout = until.timespec();
        let mut fds = [
            PollFd::from_borrowed_fd(fd, flags),
            PollFd::from_borrowed_fd(stop.fd.as_fd(), PollFlags::IN),
        ];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) if !fds[1].revents().is_empty() => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) if until.has_passed() => return Ok(false),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::from(e).in_op("poll").on("rpc endpoint and stop")),
        }
    }
}

/// [`serve`] and [`serve_until_stopped`].
fn serve_inner<K, H>(
    listener: &Listener<K>,
    stop: Option<&Stop>,
    until: Deadline,
    handler: H,
) -> Result<()>
where
    K: Kind + MessageSender + MessageReceiver + ipc_core::Readiness + Send,
    H: Fn(&[u8], &mut Vec<u8>) + Sync,
{
    let handler = &handler;
    let open = &Connections::default();
    std::thread::scope(|scope| {
        let accepted = loop {
            // With a stop, the wait is here (on the listener and the stop at once), and the
            // accept below does not wait: another accept may have taken the client.
            let accept_until = match stop {
                Some(stop) => {
                    let ready = wait_or_stop(
                        std::os::fd::AsFd::as_fd(listener),
                        ipc_core::fd::Interest::Readable,
                        stop,
                        until,
                    );
                    match ready {
                        Ok(true) => Deadline::Now,
                        Ok(false) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                }
                None => until,
            };
            match listener.accept_one(accept_until) {
                Err(e) if e.kind() == ErrorKind::WouldBlock && stop.is_some() => {}
                Ok(Ok(mut conn)) => {
                    // With a stop, a second descriptor of the socket, to shut it down if its
                    // reply is still not out `STOP_GRACE` after the stop.
                    let held = match (stop, conn.readiness_fd()) {
                        (Some(_), Ok(fd)) => open.hold(fd),
                        _ => None,
                    };
                    let spawned = std::thread::Builder::new().spawn_scoped(scope, move || {
                        // A handler that panics on this client's request costs this client
                        // its connection, not the server: the panic stops here.
                        let served =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match stop {
                                Some(stop) => {
                                    serve_connection_until(&mut conn, handler, stop, held.as_ref())
                                }
                                None => serve_connection(&mut conn, handler),
                            }));
                        match served {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::debug!(error = %e, "client dropped"),
                            Err(_) => tracing::debug!("the handler panicked: client dropped"),
                        }
                    });
                    if let Err(e) = spawned {
                        // No thread for it (RLIMIT_NPROC, the system's thread limit, memory):
                        // this client is dropped with the closure, the others go on.
                        tracing::debug!(error = %e, "no thread for a client: dropped");
                    }
                }
                // That connection alone: refused by the policy, or its credentials unreadable.
                Ok(Err(e)) => tracing::debug!(error = %e, "client dropped at accept"),
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                    break Ok(());
                }
                Err(e) => break Err(e),
            }
        };
        if stop.is_some_and(Stop::is_stopped) {
            // Idle connections close at once; a reply a client does not take must not hold
            // the server for ever.
            open.finish(STOP_GRACE);
        }
        accepted
    })
}

/// How long a reply may take to be written once a [`Stop`] was given (counted from the stop
/// or from the reply's start, whichever is later) before its connection is shut down: a client
/// that does not read its replies cannot hold a stopped server longer. A handler still
/// running is waited for, however long it takes.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The connections a stoppable server has open: a second descriptor of each socket (shutting
/// one down ends a send blocked on the other) and when its reply being written began, dropped
/// when its thread ends.
#[derive(Default)]
struct Connections {
    open: std::sync::Mutex<HashMap<u64, Open>>,
    changed: std::sync::Condvar,
    next: std::sync::atomic::AtomicU64,
}

struct Open {
    fd: std::os::fd::OwnedFd,
    /// When the reply being written began to be (`None`: none is).
    sending: Option<std::time::Instant>,
    shut: bool,
}

/// One connection's place in [`Connections`], given up on drop.
struct Held<'a> {
    set: &'a Connections,
    id: u64,
}

impl Connections {
    /// Holds a descriptor of `conn`'s socket; `None` (and the connection is only not shut
    /// down at the grace's end) when no descriptor is free for it.
    fn hold(&self, conn: std::os::fd::BorrowedFd<'_>) -> Option<Held<'_>> {
        let fd = rustix::io::fcntl_dupfd_cloexec(conn, 0)
            .inspect_err(|e| tracing::debug!(error = %e, "no descriptor to stop a client with"))
            .ok()?;
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let open = Open {
            fd,
            sending: None,
            shut: false,
        };
        self.lock().insert(id, open);
        Some(Held { set: self, id })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After the stop: waits for every connection to end, shutting down the socket of each
    /// whose reply has been being written for `grace` (counted from now at the earliest),
    /// which ends its blocked send and so its thread. Handlers still running are waited for.
    fn finish(&self, grace: std::time::Duration) {
        let stopped = std::time::Instant::now();
        let mut open = self.lock();
        while !open.is_empty() {
            let now = std::time::Instant::now();
            let mut next_due: Option<std::time::Instant> = None;
            for c in open.values_mut().filter(|c| !c.shut) {
                let Some(began) = c.sending else { continue };
                let due = began.max(stopped) + grace;
                if due <= now {
                    // ENOTCONN: it ended already.
                    let _ = rustix::net::shutdown(&c.fd, rustix::net::Shutdown::Both);
                    c.shut = true;
                } else {
                    next_due = Some(next_due.map_or(due, |d| d.min(due)));
                }
            }
            open = match next_due {
                Some(due) => {
                    let left = due.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(open, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self.changed.wait(open).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }
}

impl Held<'_> {
    /// Says that this connection's reply starts (`true`) or ends being written.
    fn sending(&self, on: bool) {
        if let Some(c) = self.set.lock().get_mut(&self.id) {
            c.sending = on.then(std::time::Instant::now);
        }
        self.set.changed.notify_all();
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.set.lock().remove(&self.id);
        self.set.changed.notify_all();
    }
}

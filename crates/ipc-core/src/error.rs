//! The one error type of the workspace: a matchable [`ErrorKind`], the object it concerns, the
//! operation that failed, structured details (sizes, limits) and the OS error underneath.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::sync::Arc;

use rustix::io::Errno;

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, as a caller matches on it.
///
/// The kinds are coarse on purpose: they say what the caller can do next (retry later, give up,
/// repair, pick another name). The [`Error`] around the kind carries the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operation would have to wait (the channel is full for a send, empty for a receive) and
    /// the caller asked it not to. [`Error::would_block`] says which side.
    WouldBlock,
    /// The deadline passed before the operation could complete. Nothing was sent or taken.
    TimedOut,
    /// The peer is gone: it closed its end or died. A receiver reports this only after every
    /// message that was queued before the close has been delivered.
    Disconnected,
    /// No peer is there yet: for example a non-blocking open of a FIFO for writing while no
    /// process has it open for reading (`ENXIO`).
    NoPeer,
    /// A message is larger than the limit; [`Error::message_size`] gives both numbers.
    MessageTooLarge,
    /// A name (POSIX IPC name, path) is malformed; nothing was passed to the kernel.
    InvalidName,
    /// An argument or configuration value is out of range.
    InvalidInput,
    /// The object to create exists already.
    AlreadyExists,
    /// The object to open does not exist.
    NotFound,
    /// The caller lacks permission, or the object is owned by another user.
    PermissionDenied,
    /// The object exists but is of the wrong type (a regular file where a FIFO was expected, a
    /// symbolic link that is refused, a segment of another layout).
    WrongType,
    /// A kernel or configured limit stops the operation; [`Error::limit`] names the knob.
    LimitExceeded,
    /// Shared state written by a peer is inconsistent (bad magic, index out of range, malformed
    /// frame). The channel cannot be trusted any more.
    Corrupted,
    /// The owner of a lock died while holding it. The lock is held now; the data it guards may be
    /// inconsistent.
    OwnerDied,
    /// A lock is permanently unusable: its previous owner died and nobody marked its state
    /// consistent.
    NotRecoverable,
    /// The kernel or the object does not support the operation.
    Unsupported,
    /// The deadline passed after part of the message was written (a message larger than
    /// `PIPE_BUF` on a byte stream, see [`FrameSender`](crate::stream::FrameSender)): the
    /// sender keeps the rest and writes it before anything else on its next send or flush.
    /// The message is in progress: not lost, and not to be sent again.
    Incomplete,
    /// Any other OS error; [`Error::raw_os_error`] has the errno.
    Io,
}

impl ErrorKind {
    /// A short description of the kind, used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::WouldBlock => "operation would block",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::Disconnected => "peer disconnected",
            ErrorKind::NoPeer => "no peer has the other end open",
            ErrorKind::MessageTooLarge => "message too large",
            ErrorKind::InvalidName => "invalid name",
            ErrorKind::InvalidInput => "invalid argument",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::NotFound => "not found",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::WrongType => "wrong object type",
            ErrorKind::LimitExceeded => "limit exceeded",
            ErrorKind::Corrupted => "corrupted data",
            ErrorKind::OwnerDied => "owner died",
            ErrorKind::NotRecoverable => "state not recoverable",
            ErrorKind::Unsupported => "not supported",
            ErrorKind::Incomplete => "message in progress",
            ErrorKind::Io => "I/O error",
        }
    }

    /// The kind an errno maps to.
    pub fn from_errno(errno: Errno) -> ErrorKind {
        match errno {
            Errno::AGAIN => ErrorKind::WouldBlock,
            Errno::TIMEDOUT => ErrorKind::TimedOut,
            Errno::PIPE | Errno::CONNRESET | Errno::IDRM => ErrorKind::Disconnected,
            Errno::NXIO => ErrorKind::NoPeer,
            Errno::MSGSIZE | Errno::TOOBIG => ErrorKind::MessageTooLarge,
            Errno::NAMETOOLONG => ErrorKind::InvalidName,
            Errno::INVAL => ErrorKind::InvalidInput,
            Errno::EXIST => ErrorKind::AlreadyExists,
            Errno::NOENT => ErrorKind::NotFound,
            Errno::ACCESS | Errno::PERM => ErrorKind::PermissionDenied,
            Errno::LOOP | Errno::NOTDIR | Errno::ISDIR => ErrorKind::WrongType,
            Errno::MFILE | Errno::NFILE | Errno::NOSPC | Errno::NOMEM | Errno::DQUOT => {
                ErrorKind::LimitExceeded
            }
            Errno::OWNERDEAD => ErrorKind::OwnerDied,
            Errno::NOTRECOVERABLE => ErrorKind::NotRecoverable,
            Errno::NOSYS | Errno::OPNOTSUPP => ErrorKind::Unsupported,
            _ => ErrorKind::Io,
        }
    }

    fn io_kind(self) -> io::ErrorKind {
        match self {
            ErrorKind::WouldBlock => io::ErrorKind::WouldBlock,
            ErrorKind::TimedOut => io::ErrorKind::TimedOut,
            ErrorKind::Disconnected => io::ErrorKind::BrokenPipe,
            ErrorKind::NoPeer => io::ErrorKind::NotConnected,
            ErrorKind::MessageTooLarge => io::ErrorKind::InvalidInput,
            ErrorKind::InvalidName | ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
            ErrorKind::AlreadyExists => io::ErrorKind::AlreadyExists,
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
            ErrorKind::Corrupted => io::ErrorKind::InvalidData,
            ErrorKind::LimitExceeded => io::ErrorKind::QuotaExceeded,
            ErrorKind::Unsupported => io::ErrorKind::Unsupported,
            ErrorKind::WrongType
            | ErrorKind::Incomplete
            | ErrorKind::OwnerDied
            | ErrorKind::NotRecoverable
            | ErrorKind::Io => io::ErrorKind::Other,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way a [`ErrorKind::WouldBlock`] would have waited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Blocked {
    /// No room to send.
    Full,
    /// Nothing to receive.
    Empty,
}

/// Structured details of an error, beyond its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Detail {
    /// Nothing more to say.
    None,
    /// Why an operation would block.
    Blocked(Blocked),
    /// A size over a limit: the message had `size` bytes, at most `limit` fit.
    Size {
        /// The size of the message.
        size: usize,
        /// The largest size accepted.
        limit: usize,
        /// What sets the limit (for example `"PIPE_BUF"`, `"receive buffer"`, `"mq_msgsize"`).
        what: Cow<'static, str>,
    },
    /// A limit that stopped the operation.
    Limit(Limit),
    /// Free text, for cases with no structure.
    Note(Cow<'static, str>),
}

/// A limit an operation ran into: a kernel knob, an rlimit or a configured bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    /// The name of the knob, such as `/proc/sys/fs/mqueue/msg_max` or `RLIMIT_MSGQUEUE`.
    pub knob: Cow<'static, str>,
    /// The knob's value when the error was made, if it could be read.
    pub value: Option<u64>,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(v) => write!(f, "{} is {}", self.knob, v),
            None => write!(f, "{}", self.knob),
        }
    }
}

/// The error of every fallible operation in this workspace.
///
/// It says what happened ([`kind`](Error::kind)), to which object ([`object`](Error::object)),
/// in which operation, with structured details where there are some (sizes and limits), and
/// keeps the OS error underneath ([`raw_os_error`](Error::raw_os_error)).
///
/// ```
/// use ipc_core::{Error, ErrorKind};
///
/// let e = Error::message_too_large(5000, 4092, "PIPE_BUF").in_op("send").on("pipe");
/// assert_eq!(e.kind(), ErrorKind::MessageTooLarge);
/// assert_eq!(e.message_size(), Some((5000, 4092)));
/// assert_eq!(
///     e.to_string(),
///     "send pipe: message too large: 5000 bytes, limit 4092 bytes (PIPE_BUF)"
/// );
/// // Converts into io::Error for `?` in io-based code, and back without loss.
/// let io: std::io::Error = e.into();
/// assert_eq!(Error::from(io).kind(), ErrorKind::MessageTooLarge);
/// ```
pub struct Error(Repr);

/// Two shapes, so that the errors of the expected path (would-block, timed out, disconnected,
/// named after an endpoint's shared name) never touch the allocator: [`Light`] holds no heap
/// data of its own; anything with a heap detail (a note, a size, a limit, an owned op) is
/// boxed as [`Full`].
enum Repr {
    Light(Light),
    Full(Box<Full>),
}

struct Light {
    kind: ErrorKind,
    blocked: Option<Blocked>,
    op: Option<&'static str>,
    object: Option<Arc<str>>,
    source: Option<io::Error>,
}

struct Full {
    kind: ErrorKind,
    op: Option<Cow<'static, str>>,
    object: Option<Arc<str>>,
    detail: Detail,
    source: Option<io::Error>,
}

static NO_DETAIL: Detail = Detail::None;
static FULL: Detail = Detail::Blocked(Blocked::Full);
static EMPTY: Detail = Detail::Blocked(Blocked::Empty);

impl Error {
    /// An error of `kind` with no details yet. Does not allocate.
    pub fn new(kind: ErrorKind) -> Error {
        Error(Repr::Light(Light {
            kind,
            blocked: None,
            op: None,
            object: None,
            source: None,
        }))
    }

    /// An error from an errno, with the kind it maps to. Does not allocate.
    pub fn from_errno(errno: Errno) -> Error {
        Error::new(ErrorKind::from_errno(errno))
            .with_source(io::Error::from_raw_os_error(errno.raw_os_error()))
    }

    /// An error from the calling thread's `errno` (after a libc call failed).
    pub fn last_os_error() -> Error {
        Error::from_errno(Errno::from_io_error(&io::Error::last_os_error()).unwrap_or(Errno::IO))
    }

    /// [`ErrorKind::WouldBlock`], saying which way. Does not allocate.
    pub fn would_block(blocked: Blocked) -> Error {
        Error::new(ErrorKind::WouldBlock).with_detail(Detail::Blocked(blocked))
    }

    /// [`ErrorKind::TimedOut`]. Does not allocate.
    pub fn timed_out() -> Error {
        Error::new(ErrorKind::TimedOut)
    }

    /// [`ErrorKind::Disconnected`]. Does not allocate.
    pub fn disconnected() -> Error {
        Error::new(ErrorKind::Disconnected)
    }

    /// [`ErrorKind::MessageTooLarge`]: `size` bytes where at most `limit` fit, the limit being
    /// set by `what`.
    pub fn message_too_large(
        size: usize,
        limit: usize,
        what: impl Into<Cow<'static, str>>,
    ) -> Error {
        Error::new(ErrorKind::MessageTooLarge).with_detail(Detail::Size {
            size,
            limit,
            what: what.into(),
        })
    }

    /// [`ErrorKind::LimitExceeded`] naming the knob and its current value.
    pub fn limit(knob: impl Into<Cow<'static, str>>, value: Option<u64>) -> Error {
        Error::new(ErrorKind::LimitExceeded).with_detail(Detail::Limit(Limit {
            knob: knob.into(),
            value,
        }))
    }

    /// [`ErrorKind::Corrupted`] with a description of what was found.
    pub fn corrupted(what: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::Corrupted).with_detail(Detail::Note(what.into()))
    }

    /// An error of `kind` with a free-text note.
    pub fn with_note(kind: ErrorKind, note: impl Into<Cow<'static, str>>) -> Error {
        Error::new(kind).with_detail(Detail::Note(note.into()))
    }

    /// The boxed shape, made from the light one on first need.
    fn full(&mut self) -> &mut Full {
        if let Repr::Light(l) = &mut self.0 {
            let detail = match l.blocked {
                Some(b) => Detail::Blocked(b),
                None => Detail::None,
            };
            self.0 = Repr::Full(Box::new(Full {
                kind: l.kind,
                op: l.op.map(Cow::Borrowed),
                object: l.object.take(),
                detail,
                source: l.source.take(),
            }));
        }
        match &mut self.0 {
            Repr::Full(f) => f,
            Repr::Light(_) => unreachable!("made full above"),
        }
    }

    /// Sets the operation that failed (`"mq_open"`, `"send"`). A `&'static str` does not
    /// allocate.
    #[must_use]
    pub fn in_op(mut self, op: impl Into<Cow<'static, str>>) -> Error {
        match (&mut self.0, op.into()) {
            (Repr::Light(l), Cow::Borrowed(op)) => l.op = Some(op),
            (_, op) => self.full().op = Some(op),
        }
        self
    }

    /// Sets the object the error is about (a path, a name, `"pipe"`), formatting it now.
    /// Endpoints that report errors on their expected path use
    /// [`on_shared`](Error::on_shared) instead, which does not allocate.
    #[must_use]
    pub fn on(self, object: impl fmt::Display) -> Error {
        self.on_shared(&Arc::from(object.to_string()))
    }

    /// Sets the object the error is about to a name the caller formatted once and shares:
    /// a reference count is taken, nothing is allocated or formatted.
    #[must_use]
    pub fn on_shared(mut self, object: &Arc<str>) -> Error {
        let object = Some(Arc::clone(object));
        match &mut self.0 {
            Repr::Light(l) => l.object = object,
            Repr::Full(f) => f.object = object,
        }
        self
    }

    /// Sets the structured detail. [`Detail::None`] and [`Detail::Blocked`] do not allocate.
    #[must_use]
    pub fn with_detail(mut self, detail: Detail) -> Error {
        match (&mut self.0, detail) {
            (Repr::Light(l), Detail::None) => l.blocked = None,
            (Repr::Light(l), Detail::Blocked(b)) => l.blocked = Some(b),
            (_, detail) => self.full().detail = detail,
        }
        self
    }

    /// Sets the underlying OS error.
    #[must_use]
    pub fn with_source(mut self, source: io::Error) -> Error {
        match &mut self.0 {
            Repr::Light(l) => l.source = Some(source),
            Repr::Full(f) => f.source = Some(source),
        }
        self
    }

    /// What went wrong, to match on.
    pub fn kind(&self) -> ErrorKind {
        match &self.0 {
            Repr::Light(l) => l.kind,
            Repr::Full(f) => f.kind,
        }
    }

    /// The object the error is about, if known.
    pub fn object(&self) -> Option<&str> {
        match &self.0 {
            Repr::Light(l) => l.object.as_deref(),
            Repr::Full(f) => f.object.as_deref(),
        }
    }

    /// The operation that failed, if known.
    pub fn op(&self) -> Option<&str> {
        match &self.0 {
            Repr::Light(l) => l.op,
            Repr::Full(f) => f.op.as_deref(),
        }
    }

    /// The structured detail.
    pub fn detail(&self) -> &Detail {
        match &self.0 {
            Repr::Light(l) => match l.blocked {
                None => &NO_DETAIL,
                Some(Blocked::Full) => &FULL,
                Some(Blocked::Empty) => &EMPTY,
            },
            Repr::Full(f) => &f.detail,
        }
    }

    fn source_ref(&self) -> Option<&io::Error> {
        match &self.0 {
            Repr::Light(l) => l.source.as_ref(),
            Repr::Full(f) => f.source.as_ref(),
        }
    }

    /// For [`ErrorKind::MessageTooLarge`]: the message size and the limit.
    pub fn message_size(&self) -> Option<(usize, usize)> {
        match self.detail() {
            Detail::Size { size, limit, .. } => Some((*size, *limit)),
            _ => None,
        }
    }

    /// For [`ErrorKind::LimitExceeded`]: the limit that was hit.
    pub fn limit_info(&self) -> Option<&Limit> {
        match self.detail() {
            Detail::Limit(l) => Some(l),
            _ => None,
        }
    }

    /// For [`ErrorKind::WouldBlock`]: whether the channel was full or empty.
    pub fn blocked(&self) -> Option<Blocked> {
        match self.detail() {
            Detail::Blocked(b) => Some(*b),
            _ => None,
        }
    }

    /// The errno underneath, if the error came from the OS.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source_ref().and_then(io::Error::raw_os_error)
    }

    /// The errno underneath as a rustix [`Errno`].
    pub fn errno(&self) -> Option<Errno> {
        self.raw_os_error().map(Errno::from_raw_os_error)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.op(), self.object()) {
            (Some(op), Some(obj)) => write!(f, "{op} {obj}: ")?,
            (Some(op), None) => write!(f, "{op}: ")?,
            (None, Some(obj)) => write!(f, "{obj}: ")?,
            (None, None) => {}
        }
        f.write_str(self.kind().as_str())?;
        match self.detail() {
            Detail::None => {}
            Detail::Blocked(Blocked::Full) => f.write_str(" (full)")?,
            Detail::Blocked(Blocked::Empty) => f.write_str(" (empty)")?,
            Detail::Size { size, limit, what } => {
                write!(f, ": {size} bytes, limit {limit} bytes ({what})")?
            }
            Detail::Limit(l) => write!(f, ": {l}")?,
            Detail::Note(n) => write!(f, ": {n}")?,
        }
        if let Some(src) = self.source_ref() {
            // The kind already says what a bare errno would say; add the OS text for context.
            write!(f, " ({src})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind());
        if let Some(op) = self.op() {
            d.field("op", &op);
        }
        if let Some(obj) = self.object() {
            d.field("object", &obj);
        }
        if *self.detail() != Detail::None {
            d.field("detail", self.detail());
        }
        if let Some(src) = self.source_ref() {
            d.field("source", src);
        }
        d.finish_non_exhaustive()?;
        write!(f, " ({self})")
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Errno> for Error {
    fn from(errno: Errno) -> Error {
        Error::from_errno(errno)
    }
}

impl From<io::Error> for Error {
    /// Unwraps an [`Error`] carried inside an `io::Error` (so a round trip loses nothing);
    /// otherwise maps the errno or the io kind.
    fn from(e: io::Error) -> Error {
        let e = match e.downcast::<Error>() {
            Ok(ours) => return ours,
            Err(other) => other,
        };
        if let Some(errno) = e.raw_os_error() {
            return Error::new(ErrorKind::from_errno(Errno::from_raw_os_error(errno)))
                .with_source(e);
        }
        let kind = match e.kind() {
            io::ErrorKind::WouldBlock => ErrorKind::WouldBlock,
            io::ErrorKind::TimedOut => ErrorKind::TimedOut,
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset => ErrorKind::Disconnected,
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            io::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
            io::ErrorKind::InvalidData => ErrorKind::Corrupted,
            io::ErrorKind::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Io,
        };
        Error::new(kind).with_source(e)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(e.kind().io_kind(), e)
    }
}

/// Attaches an operation and an object to the error of a result, in one call.
pub trait ResultExt<T> {
    /// Maps the error into an [`Error`] that names `op` and `object`.
    fn ctx(self, op: &'static str, object: impl fmt::Display) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn ctx(self, op: &'static str, object: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().in_op(op).on(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_maps_to_kind_and_keeps_the_errno() {
        let e = Error::from(Errno::NXIO).in_op("open").on("/tmp/f");
        assert_eq!(e.kind(), ErrorKind::NoPeer);
        assert_eq!(e.raw_os_error(), Some(libc::ENXIO));
        assert!(e.to_string().starts_with("open /tmp/f: no peer"), "{e}");
    }

    #[test]
    fn limit_message_names_the_knob_and_value() {
        let e = Error::limit("/proc/sys/fs/mqueue/msg_max", Some(10)).in_op("mq_open");
        assert_eq!(e.kind(), ErrorKind::LimitExceeded);
        assert_eq!(
            e.to_string(),
            "mq_open: limit exceeded: /proc/sys/fs/mqueue/msg_max is 10"
        );
    }

    #[test]
    fn io_round_trip_keeps_everything() {
        let e = Error::would_block(Blocked::Full).on("q");
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::WouldBlock);
        let back = Error::from(io);
        assert_eq!(back.kind(), ErrorKind::WouldBlock);
        assert_eq!(back.blocked(), Some(Blocked::Full));
        assert_eq!(back.object(), Some("q"));
    }

    #[test]
    fn plain_io_errors_map_by_errno_then_kind() {
        let e = Error::from(io::Error::from_raw_os_error(libc::EEXIST));
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        let e = Error::from(io::Error::from(io::ErrorKind::UnexpectedEof));
        assert_eq!(e.kind(), ErrorKind::Disconnected);
    }
}

//! What the pattern segments (publish-subscribe in `pubsub.rs`, many-to-one in `mpsc.rs`)
//! share: the first 16 bytes of their headers (magic, layout version, header size), checked
//! the same way at open and written last at init, and how a segment for one is created.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use ipc_core::{Error, ErrorKind, PosixName, Result};

use crate::segment::{Segment, SegmentKind};

/// The prefix of every pattern header (each `Meta` starts with these three fields).
#[repr(C)]
struct Prefix {
    magic: AtomicU64,
    version: AtomicU32,
    header_size: AtomicU32,
}

/// One kind of pattern segment.
pub(crate) struct Kind {
    pub(crate) magic: u64,
    pub(crate) version: u32,
    pub(crate) header_size: usize,
    /// "pub-sub", "mpsc": how errors name it.
    pub(crate) what: &'static str,
}

fn prefix(base: NonNull<u8>) -> &'static Prefix {
    // SAFETY: callers pass the start of a mapping at least a header long (checked first);
    // mappings are page-aligned; atomics only. The lifetime is the caller's to bound: every
    // caller holds the segment while it uses the reference.
    unsafe { base.cast::<Prefix>().as_ref() }
}

impl Kind {
    /// Checks that `segment` is writable and holds this kind of header (magic, version,
    /// header size); returns the start of the mapping.
    pub(crate) fn open(&self, segment: &Segment) -> Result<NonNull<u8>> {
        let (len, what) = (segment.len(), self.what);
        if len < self.header_size {
            return Err(Error::with_note(
                ErrorKind::WrongType,
                format!(
                    "{len} bytes cannot hold a {what} header of {} bytes",
                    self.header_size
                ),
            ));
        }
        if !segment.is_writable() {
            return Err(Error::with_note(
                ErrorKind::PermissionDenied,
                format!("a {what} endpoint needs a writable mapping"),
            ));
        }
        let base = NonNull::new(segment.as_ptr()).expect("mapping is non-null");
        let p = prefix(base);
        let magic = p.magic.load(Ordering::Acquire);
        if magic != self.magic {
            return Err(Error::with_note(
                ErrorKind::WrongType,
                format!(
                    "not a {what} segment: magic {magic:#018x}, expected {:#018x}",
                    self.magic
                ),
            ));
        }
        let version = p.version.load(Ordering::Relaxed);
        if version != self.version {
            return Err(Error::with_note(
                ErrorKind::WrongType,
                format!(
                    "{what} layout version {version}, this library speaks {}",
                    self.version
                ),
            ));
        }
        let header_size = p.header_size.load(Ordering::Relaxed) as usize;
        if header_size != self.header_size {
            return Err(Error::corrupted(format!(
                "{what} header size {header_size}, expected {}",
                self.header_size
            )));
        }
        Ok(base)
    }

    /// Before writing a fresh header: `segment` is writable, `shape` (the options' own check)
    /// holds, `need` bytes fit, and nothing was written yet. Returns the start of the mapping.
    pub(crate) fn begin_init(
        &self,
        segment: &Segment,
        need: usize,
        shape: std::result::Result<(), String>,
    ) -> Result<NonNull<u8>> {
        let op = self.init_op();
        let fail = |n: String| {
            Error::with_note(ErrorKind::InvalidInput, n)
                .in_op(op)
                .on(segment.kind())
        };
        if !segment.is_writable() {
            return Err(fail("the segment is mapped read-only".into()));
        }
        shape.map_err(fail)?;
        if segment.len() < need {
            return Err(fail(format!(
                "a segment of {} bytes cannot hold {need} bytes",
                segment.len()
            )));
        }
        let base = NonNull::new(segment.as_ptr()).expect("mapping is non-null");
        if prefix(base).magic.load(Ordering::Acquire) != 0 {
            return Err(Error::with_note(
                ErrorKind::AlreadyExists,
                "the segment already holds data: initialise a fresh one",
            )
            .in_op(op)
            .on(segment.kind()));
        }
        Ok(base)
    }

    /// After the rest of a fresh header is written: the prefix, magic last (release).
    pub(crate) fn publish(&self, base: NonNull<u8>) {
        let p = prefix(base);
        p.version.store(self.version, Ordering::Relaxed);
        p.header_size
            .store(self.header_size as u32, Ordering::Relaxed);
        p.magic.store(self.magic, Ordering::Release);
    }

    fn init_op(&self) -> &'static str {
        if self.what == "mpsc" {
            "init mpsc"
        } else {
            "init pub-sub"
        }
    }

    /// Creates the POSIX segment `name` (exclusively, mode `0o600`) of `size` bytes after
    /// `shape` passed, and runs `init` on it (removing the name if that fails).
    pub(crate) fn create_posix(
        &self,
        name: impl TryInto<PosixName, Error = Error>,
        size: usize,
        shape: std::result::Result<(), String>,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        let name = name.try_into()?;
        shape.map_err(|n| {
            Error::with_note(ErrorKind::InvalidInput, n)
                .in_op(format!("create {}", self.what))
                .on(SegmentKind::Posix(name.clone()))
        })?;
        let seg = Segment::create(&name, size)?;
        if let Err(e) = init(&seg) {
            let _ = Segment::unlink(&name);
            return Err(e);
        }
        Ok(seg)
    }

    /// Creates a sealed memfd segment of `size` bytes after `shape` passed, and runs `init`.
    pub(crate) fn create_memfd(
        &self,
        name: &str,
        size: usize,
        shape: std::result::Result<(), String>,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        shape.map_err(|n| {
            Error::with_note(ErrorKind::InvalidInput, n).in_op(format!("create {}", self.what))
        })?;
        let seg = Segment::memfd(name, size)?;
        init(&seg)?;
        Ok(seg)
    }
}

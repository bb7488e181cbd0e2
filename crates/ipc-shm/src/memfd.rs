//! memfd segments (`memfd_create`): anonymous, sealed so that no peer can shrink or grow them
//! (no `SIGBUS`), optionally backed by huge pages, handed over a Unix socket (`SCM_RIGHTS`) or by
//! inheritance, and adopted only with the seals in place.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use ipc_core::pipe::descriptor_error;
use ipc_core::{Error, ErrorKind, Result, ResultExt};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::posix::{check_fd, map_fd};
use crate::segment::{Segment, SegmentKind};

/// The seals every memfd segment made here carries, and that [`Segment::adopt`] demands by
/// default: the size can neither shrink (a peer could make our accesses past the new end die
/// of `SIGBUS`) nor grow, and the seals themselves cannot change any more.
pub const SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// Whether [`Segment::adopt`] insists on the size seals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seals {
    /// Refuse a descriptor that is not sealed against shrinking and growing
    /// (`F_SEAL_SHRINK | F_SEAL_GROW`): the safe default for memory from a peer.
    Required,
    /// Accept any memory object (an unsealed memfd, a POSIX shm descriptor). Its owner can
    /// shrink it later, and an access past the new end kills this process with `SIGBUS`: use
    /// only with a peer you trust not to do that.
    NotRequired,
}

/// How to create a memfd segment.
///
/// ```
/// use ipc_shm::MemfdOptions;
///
/// let seg = MemfdOptions::new().create("frames", 1 << 16)?;
/// assert_eq!(seg.len(), 1 << 16);
/// # Ok::<(), ipc_shm::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemfdOptions {
    huge_pages: bool,
}

impl MemfdOptions {
    /// Normal pages.
    pub fn new() -> MemfdOptions {
        MemfdOptions::default()
    }

    /// Backs the segment with huge pages (`MFD_HUGETLB`, the system's default huge page size;
    /// the size is rounded up to a multiple of it). The pages come from the pool configured in
    /// `/proc/sys/vm/nr_hugepages`; with none free, [`create`](MemfdOptions::create) fails with
    /// [`ErrorKind::LimitExceeded`] naming that knob.
    pub fn huge_pages(&mut self, huge_pages: bool) -> &mut MemfdOptions {
        self.huge_pages = huge_pages;
        self
    }

    /// Creates an anonymous segment of `size` bytes, zero-filled, sealed with [`SEALS`], and
    /// maps it read-write. `name` only labels it in `/proc/PID/fd` and `/proc/PID/maps`.
    ///
    /// Makes `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING [| MFD_HUGETLB])`,
    /// `ftruncate(size)`, `fcntl(F_ADD_SEALS)` and `mmap`. Does not block.
    ///
    /// Errors: [`ErrorKind::InvalidInput`] for a size of 0 or a name with a NUL byte or longer
    /// than 249 bytes, [`ErrorKind::LimitExceeded`] when huge pages run out (normal pages are
    /// taken at first touch: a memfd counts against no tmpfs size, and a memory cgroup over
    /// its limit answers a touch, or a reservation, with its OOM killer, not an error),
    /// [`ErrorKind::Unsupported`] when the kernel has no huge page support for memfd.
    ///
    /// # References
    /// - [`memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html)
    /// - [`fcntl(2)`, file sealing](https://man7.org/linux/man-pages/man2/fcntl.2.html)
    #[doc(alias = "memfd_create")]
    pub fn create(&self, name: &str, size: usize) -> Result<Segment> {
        let kind = SegmentKind::Memfd {
            name: Some(name.to_owned()),
        };
        if size == 0 || name.len() > 249 || name.contains('\0') {
            return Err(Error::with_note(
                ErrorKind::InvalidInput,
                "a memfd needs a size above 0 and a name of at most 249 bytes without NUL",
            )
            .in_op("memfd_create")
            .on(&kind));
        }
        let mut flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        let mut size = size;
        if self.huge_pages {
            flags |= MemfdFlags::HUGETLB;
            let page = huge_page_size();
            size = size.div_ceil(page).checked_mul(page).ok_or_else(|| {
                Error::with_note(ErrorKind::InvalidInput, "size overflows").on(&kind)
            })?;
        }
        let fd = rustix::fs::memfd_create(name, flags).map_err(|e| {
            let e = match e {
                rustix::io::Errno::INVAL if self.huge_pages => Error::with_note(
                    ErrorKind::Unsupported,
                    "this kernel has no huge page support for memfd (MFD_HUGETLB)",
                )
                .with_source(e.into()),
                e => descriptor_error(e),
            };
            let e = e.in_op("memfd_create").on(&kind);
            tracing::debug!(error = %e, "memfd_create failed");
            e
        })?;
        let no_huge_pages = |e: rustix::io::Errno| {
            Error::limit(
                "HugePages_Free in /proc/meminfo (raise /proc/sys/vm/nr_hugepages)",
                free_huge_pages(),
            )
            .with_source(e.into())
        };
        ipc_core::knob::check_file_size(size as u64).ctx("ftruncate", &kind)?;
        rustix::fs::ftruncate(&fd, size as u64)
            .map_err(|e| match e {
                rustix::io::Errno::NOMEM | rustix::io::Errno::NOSPC if self.huge_pages => {
                    no_huge_pages(e)
                }
                e => Error::from(e),
            })
            .ctx("ftruncate", &kind)?;
        rustix::fs::fcntl_add_seals(&fd, SEALS).ctx("fcntl(F_ADD_SEALS)", &kind)?;
        let seg = map_fd(fd, size, true, kind.clone()).map_err(|e| {
            if self.huge_pages && e.errno() == Some(rustix::io::Errno::NOMEM) {
                no_huge_pages(rustix::io::Errno::NOMEM)
                    .in_op("mmap")
                    .on(&kind)
            } else {
                e
            }
        })?;
        tracing::trace!(segment = %kind, size, huge_pages = self.huge_pages, "created sealed memfd segment");
        Ok(seg)
    }
}

/// The default huge page size (`Hugepagesize` in `/proc/meminfo`), 2 MiB if unreadable.
fn huge_page_size() -> usize {
    meminfo("Hugepagesize:").map_or(2 << 20, |kib| kib as usize * 1024)
}

fn free_huge_pages() -> Option<u64> {
    meminfo("HugePages_Free:")
}

fn meminfo(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

impl Segment {
    /// Creates a sealed memfd segment of `size` bytes with normal pages; see
    /// [`MemfdOptions::create`].
    #[doc(alias = "memfd_create")]
    pub fn memfd(name: &str, size: usize) -> Result<Segment> {
        MemfdOptions::new().create(name, size)
    }

    /// Maps a memory object handed over by another process (inherited, or received with
    /// [`recv_fd`](Segment::recv_fd)), all of its real size.
    ///
    /// Checks with `fcntl(F_GET_SEALS)` that it is sealed against shrinking and growing unless
    /// `seals` is [`Seals::NotRequired`], and with `fstat` that it is a non-empty memory
    /// object. The mapping is read-only if the descriptor is open read-only or the object is
    /// sealed against writes. Does not block.
    ///
    /// Errors: [`ErrorKind::PermissionDenied`] for a descriptor without the required seals (it
    /// is closed: a peer could make us die of `SIGBUS`), also one that cannot carry seals at
    /// all, such as a regular file, since the seals are checked first;
    /// [`ErrorKind::WrongType`] for something that is not a memory object or is empty (with
    /// [`Seals::NotRequired`]).
    ///
    /// # References
    /// - [`fcntl(2)`, file sealing](https://man7.org/linux/man-pages/man2/fcntl.2.html)
    /// - [`memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html)
    pub fn adopt(fd: OwnedFd, seals: Seals) -> Result<Segment> {
        let kind = SegmentKind::Memfd { name: None };
        if seals == Seals::Required {
            size_sealed(fd.as_fd())?;
        }
        let size = check_fd(&fd, 1, ipc_core::Owner::Any, &kind)?;
        let mode = rustix::fs::fcntl_getfl(&fd).ctx("fcntl(F_GETFL)", &kind)?;
        let sealed_ro = rustix::fs::fcntl_get_seals(&fd)
            .is_ok_and(|s| s.intersects(SealFlags::WRITE | SealFlags::FUTURE_WRITE));
        let writable = mode & rustix::fs::OFlags::RWMODE == rustix::fs::OFlags::RDWR && !sealed_ro;
        let seg = map_fd(fd, size, writable, kind)?;
        tracing::trace!(size, writable, "adopted memfd segment");
        Ok(seg)
    }

    /// Adopts the segment the parent handed to this process under `name` with
    /// [`ipc_core::inherit::ChildFds::pass`], demanding the size seals
    /// ([`adopt`](Segment::adopt) with [`Seals::Required`]).
    ///
    /// The descriptor is checked before it is adopted: one that is no size-sealed memfd
    /// (which a mistaken or forged list may name) is refused and left open, never closed.
    pub fn inherited(name: &str) -> Result<Segment> {
        Segment::adopt(
            ipc_core::inherit::take_checked(name, size_sealed)?,
            Seals::Required,
        )
    }

    /// Sends this segment's descriptor over the connected Unix socket `socket`
    /// (`sendmsg` with one `SCM_RIGHTS` descriptor and one data byte). Blocks while the socket's
    /// send buffer is full, like any `sendmsg`.
    ///
    /// The receiver can open any end of a channel in the segment, so open yours
    /// ([`Sender::open`](crate::Sender::open), [`Receiver::open`](crate::Receiver::open))
    /// before sending it: an end the peer opens first is the peer's (yours is then
    /// [`ErrorKind::AlreadyExists`]), and one it opened and dropped is closed for good
    /// ([`ErrorKind::Disconnected`]: make a new channel).
    ///
    /// Errors: [`ErrorKind::Unsupported`] for a System V segment (it has no descriptor; share
    /// its id instead), [`ErrorKind::Disconnected`] if the peer closed the socket.
    ///
    /// # References
    /// - [`unix(7)`, `SCM_RIGHTS`](https://man7.org/linux/man-pages/man7/unix.7.html)
    /// - [`sendmsg(2)`](https://man7.org/linux/man-pages/man2/sendmsg.2.html)
    #[doc(alias = "SCM_RIGHTS")]
    pub fn send_fd(&self, socket: impl AsFd) -> Result<()> {
        let fd = self.fd().ok_or_else(|| {
            Error::with_note(
                ErrorKind::Unsupported,
                "a System V segment has no descriptor",
            )
            .in_op("send fd")
            .on(self.kind())
        })?;
        let fds = [fd];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        loop {
            match rustix::net::sendmsg(
                &socket,
                &[IoSlice::new(b"S")],
                &mut control,
                SendFlags::NOSIGNAL,
            ) {
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    let e = Error::from(e).in_op("sendmsg(SCM_RIGHTS)").on(self.kind());
                    tracing::debug!(error = %e, "send fd failed");
                    return Err(e);
                }
            }
        }
    }

    /// Receives a segment descriptor sent with [`send_fd`](Segment::send_fd) from the Unix
    /// socket `socket` and [adopts](Segment::adopt) it with [`Seals::Required`]. Blocks until a
    /// message arrives (unless the socket is non-blocking).
    ///
    /// Errors: [`ErrorKind::Disconnected`] if the peer closed the socket,
    /// [`ErrorKind::WrongType`] if the message carried no descriptor,
    /// [`ErrorKind::LimitExceeded`] naming `RLIMIT_NOFILE` if it carried one but no descriptor
    /// was free to receive it with (the message is consumed), and those of
    /// [`adopt`](Segment::adopt).
    ///
    /// # References
    /// - [`unix(7)`, `SCM_RIGHTS`](https://man7.org/linux/man-pages/man7/unix.7.html)
    /// - [`recvmsg(2)`](https://man7.org/linux/man-pages/man2/recvmsg.2.html)
    #[doc(alias = "SCM_RIGHTS")]
    pub fn recv_fd(socket: impl AsFd) -> Result<Segment> {
        let kind = SegmentKind::Memfd { name: None };
        let mut byte = [0u8; 1];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = loop {
            match rustix::net::recvmsg(
                &socket,
                &mut [IoSliceMut::new(&mut byte)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(m) => break m,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(Error::from(e).in_op("recvmsg(SCM_RIGHTS)").on(&kind)),
            }
        };
        let mut received: Option<OwnedFd> = None;
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                for fd in fds {
                    // Keep the first; any extra descriptor is closed when dropped here.
                    received.get_or_insert(fd);
                }
            }
        }
        match received {
            Some(fd) => Segment::adopt(fd, Seals::Required),
            // The kernel could not install the descriptor sent: this process is out of them
            // (the message is consumed; the descriptor is gone with it).
            None if msg.flags.contains(ReturnFlags::CTRUNC) => {
                Err(descriptor_error(rustix::io::Errno::MFILE)
                    .in_op("recvmsg(SCM_RIGHTS)")
                    .on(&kind))
            }
            None if msg.bytes == 0 => {
                Err(Error::disconnected().in_op("recvmsg(SCM_RIGHTS)").on(&kind))
            }
            None => Err(Error::with_note(
                ErrorKind::WrongType,
                "the message carried no descriptor",
            )
            .in_op("recvmsg(SCM_RIGHTS)")
            .on(&kind)),
        }
    }
}

/// Whether `fd` is a memory file sealed against shrinking and growing (what
/// [`Seals::Required`] demands): else `PermissionDenied`, saying why it matters.
fn size_sealed(fd: BorrowedFd<'_>) -> Result<()> {
    let kind = SegmentKind::Memfd { name: None };
    let have = rustix::fs::fcntl_get_seals(fd).map_err(|e| {
        let note = "the descriptor is not a sealable memory file (no seals to check)";
        Error::with_note(ErrorKind::PermissionDenied, note)
            .with_source(e.into())
            .in_op("adopt")
            .on(&kind)
    })?;
    let needed = SealFlags::SHRINK | SealFlags::GROW;
    if !have.contains(needed) {
        let e = Error::with_note(
            ErrorKind::PermissionDenied,
            format!(
                "the memfd is not sealed against shrinking and growing (seals {have:?}): \
                 a peer could shrink it and make this process die of SIGBUS"
            ),
        )
        .in_op("adopt")
        .on(&kind);
        tracing::debug!(error = %e, "refused unsealed memfd");
        return Err(e);
    }
    Ok(())
}

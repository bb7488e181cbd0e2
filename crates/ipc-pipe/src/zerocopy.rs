//! Zero-copy transfers: `splice(2)` between a pipe and another descriptor, `tee(2)` between
//! two pipes, and `vmsplice(2)` of user memory into a pipe through [`PageBuf`], whose type
//! keeps the pages alive and unmodified for as long as the kernel may reference them.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::ptr::NonNull;

use std::sync::Arc;

use ipc_core::fd::{Interest, Stop, retry};
use ipc_core::{Blocked, Deadline, Error, ErrorKind, Result};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::pipe::{IoSliceRaw, SpliceFlags};

use crate::{PipeReader, PipeWriter};

/// Flags for a call that must not block past `deadline`: `SPLICE_F_NONBLOCK` makes the pipe
/// side non-blocking for this call only, leaving `O_NONBLOCK` alone.
fn flags_for(deadline: Deadline) -> SpliceFlags {
    if deadline == Deadline::Never {
        SpliceFlags::empty()
    } else {
        SpliceFlags::NONBLOCK
    }
}

/// Runs one splice-family call until it moves bytes, waiting on `ready` between attempts (the
/// core retry loop, [`ipc_core::fd::retry`]).
fn until_moved(
    ready: &[(BorrowedFd<'_>, Interest)],
    deadline: Deadline,
    mut call: impl FnMut(SpliceFlags) -> Result<usize, Errno>,
) -> Result<usize, Stop> {
    retry(ready, deadline, || call(flags_for(deadline)))
}

/// `EINVAL` from the splice family means the descriptors do not fit the call.
fn splice_error(
    stop: Stop,
    deadline: Deadline,
    blocked: Blocked,
    op: &'static str,
    label: &Arc<str>,
) -> Error {
    match stop {
        Stop::Os(Errno::INVAL) => {
            let err = Error::with_note(
                ErrorKind::InvalidInput,
                "the other descriptor does not support splicing (or is this same pipe, or was \
                 opened with O_APPEND)",
            )
            .with_source(Errno::INVAL.into())
            .in_op(op)
            .on_shared(label);
            tracing::debug!(error = %err, "splice refused");
            err
        }
        stop => stop.into_error(deadline, blocked, op, label),
    }
}

/// Zero-copy transfers out of a pipe's read end: `splice(2)` to another descriptor and
/// `tee(2)` into another pipe. Implemented for [`PipeReader`] (a FIFO's read end too); in the
/// [`prelude`](crate::prelude).
pub trait SpliceRead {
    /// Moves up to `len` bytes out of this pipe into `out` (a file, socket or another pipe's
    /// write end) without copying them through user space: `splice(2)`. Returns the number of
    /// bytes moved: 0 at end-of-file (every write end closed, the pipe drained) or for `len`
    /// 0. `out` is written at its current file position.
    ///
    /// Waits for data until `deadline` (`SPLICE_F_NONBLOCK` and `poll(2)`; the flag makes only
    /// the pipe side non-blocking, so `out` blocks as its own mode says). Never raises
    /// `SIGPIPE` when `out` is a pipe or socket whose reader is gone.
    ///
    /// Errors: [`ErrorKind::WouldBlock`] / [`ErrorKind::TimedOut`] with nothing moved;
    /// [`ErrorKind::Disconnected`] when `out` has no reader; [`ErrorKind::InvalidInput`] when
    /// `out` does not support splicing (or is opened with `O_APPEND`).
    ///
    /// ```
    /// use std::io::{Read, Seek, Write};
    /// use ipc_pipe::prelude::*;
    ///
    /// let (reader, mut writer) = ipc_pipe::pipe()?;
    /// writer.write_all(b"spliced into a file")?;
    /// let mut file = std::fs::File::from(rustix::fs::memfd_create("out", rustix::fs::MemfdFlags::CLOEXEC)?);
    /// assert_eq!(reader.splice_to(&file, 1 << 16, Deadline::Never)?, 19);
    /// file.rewind()?;
    /// let mut s = String::new();
    /// file.read_to_string(&mut s)?;
    /// assert_eq!(s, "spliced into a file");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # References
    /// - [`splice(2)`](https://man7.org/linux/man-pages/man2/splice.2.html)
    #[doc(alias = "splice")]
    fn splice_to(&self, out: impl AsFd, len: usize, deadline: Deadline) -> Result<usize>;

    /// Copies up to `len` bytes from the front of this pipe into the pipe `out` without
    /// consuming them: `tee(2)`. The bytes stay here for this pipe's reader; `out`'s reader gets
    /// the same bytes, and no byte crosses into user space. Returns the number of bytes copied:
    /// 0 when this pipe is empty and has no writer left, or for `len` 0.
    ///
    /// Waits until `deadline` for data here and room in `out`. Never raises `SIGPIPE`.
    ///
    /// Errors: [`ErrorKind::WouldBlock`] / [`ErrorKind::TimedOut`] with nothing copied;
    /// [`ErrorKind::Disconnected`] when `out` has no reader; [`ErrorKind::InvalidInput`] when
    /// `out` is this same pipe.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use ipc_pipe::prelude::*;
    ///
    /// let (mut a_reader, mut a_writer) = ipc_pipe::pipe()?;
    /// let (mut b_reader, b_writer) = ipc_pipe::pipe()?;
    /// a_writer.write_all(b"twice")?;
    /// assert_eq!(a_reader.tee_to(&b_writer, 1024, Deadline::Never)?, 5);
    /// let (mut a, mut b) = ([0; 5], [0; 5]);
    /// a_reader.read_exact(&mut a)?;
    /// b_reader.read_exact(&mut b)?;
    /// assert_eq!((&a, &b), (b"twice", b"twice"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # References
    /// - [`tee(2)`](https://man7.org/linux/man-pages/man2/tee.2.html)
    #[doc(alias = "tee")]
    fn tee_to(&self, out: &PipeWriter, len: usize, deadline: Deadline) -> Result<usize>;
}

impl SpliceRead for PipeReader {
    fn splice_to(&self, out: impl AsFd, len: usize, deadline: Deadline) -> Result<usize> {
        let (fd, out) = (self.as_fd(), out.as_fd());
        let ready = [(fd, Interest::Readable), (out, Interest::Writable)];
        until_moved(&ready, deadline, |flags| {
            self.sigpipe()
                .run(|| rustix::pipe::splice(fd, None, out, None, len, flags))
        })
        .map_err(|s| splice_error(s, deadline, Blocked::Empty, "splice from", self.label()))
    }

    fn tee_to(&self, out: &PipeWriter, len: usize, deadline: Deadline) -> Result<usize> {
        let (fd, out) = (self.as_fd(), out.as_fd());
        let ready = [(fd, Interest::Readable), (out, Interest::Writable)];
        until_moved(&ready, deadline, |flags| {
            self.sigpipe()
                .run(|| rustix::pipe::tee(fd, out, len, flags))
        })
        .map_err(|s| splice_error(s, deadline, Blocked::Empty, "tee from", self.label()))
    }
}

/// Zero-copy transfers into a pipe's write end: `splice(2)` from another descriptor and
/// `vmsplice(2)` of a [`PageBuf`]. Implemented for [`PipeWriter`] (a FIFO's write end too); in
/// the [`prelude`](crate::prelude).
pub trait SpliceWrite {
    /// Moves up to `len` bytes from `input` (a file, socket or another pipe's read end) into
    /// this pipe without copying them through user space: `splice(2)`. Returns the number of
    /// bytes moved: 0 when `input` is at end-of-file, or for `len` 0. `input` is read from its
    /// current file position.
    ///
    /// Waits for room here until `deadline` (`SPLICE_F_NONBLOCK` and `poll(2)`; `input`
    /// blocks as its own mode says). Never raises `SIGPIPE`.
    ///
    /// Errors: [`ErrorKind::WouldBlock`] / [`ErrorKind::TimedOut`] with nothing moved;
    /// [`ErrorKind::Disconnected`] when this pipe has no reader; [`ErrorKind::InvalidInput`]
    /// when `input` does not support splicing.
    ///
    /// # References
    /// - [`splice(2)`](https://man7.org/linux/man-pages/man2/splice.2.html)
    #[doc(alias = "splice")]
    fn splice_from(&self, input: impl AsFd, len: usize, deadline: Deadline) -> Result<usize>;

    /// Hands the bytes of `buf` to this pipe by reference, without copying them: `vmsplice(2)`.
    /// The pipe then holds references to `buf`'s pages, and the reader copies out of them.
    ///
    /// Moves bytes from the front of `buf` until all are in the pipe or `deadline` passes, and
    /// returns how many it moved; those bytes leave `buf` (it shrinks from the front) and can
    /// never be reached through it again, which is what makes this safe (see [`PageBuf`]).
    /// The pipe takes at most its capacity at a time, so a buffer larger than that needs a
    /// reader working in parallel (or repeated calls).
    ///
    /// Waits for room until `deadline` (`SPLICE_F_NONBLOCK` and `poll(2)`). Never raises
    /// `SIGPIPE`.
    ///
    /// Errors, with nothing moved: [`ErrorKind::WouldBlock`] (full) / [`ErrorKind::TimedOut`];
    /// [`ErrorKind::Disconnected`] when no process has the read end open.
    ///
    /// ```
    /// use std::io::Read;
    /// use ipc_pipe::prelude::*;
    /// use ipc_pipe::PageBuf;
    ///
    /// let (mut reader, writer) = ipc_pipe::pipe()?;
    /// let mut buf = PageBuf::new(10_000)?;
    /// buf.fill(b'z');
    /// assert_eq!(writer.vmsplice(&mut buf, Deadline::Never)?, 10_000);
    /// assert!(buf.is_empty()); // the bytes belong to the pipe now
    /// drop(buf); // unmapped here; the pipe keeps its pages alive
    /// let mut got = vec![0; 10_000];
    /// reader.read_exact(&mut got)?;
    /// assert!(got.iter().all(|&b| b == b'z'));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # References
    /// - [`vmsplice(2)`](https://man7.org/linux/man-pages/man2/vmsplice.2.html)
    fn vmsplice(&self, buf: &mut PageBuf, deadline: Deadline) -> Result<usize>;
}

impl SpliceWrite for PipeWriter {
    fn splice_from(&self, input: impl AsFd, len: usize, deadline: Deadline) -> Result<usize> {
        let (fd, input) = (self.as_fd(), input.as_fd());
        let ready = [(input, Interest::Readable), (fd, Interest::Writable)];
        until_moved(&ready, deadline, |flags| {
            self.sigpipe()
                .run(|| rustix::pipe::splice(input, None, fd, None, len, flags))
        })
        .map_err(|s| splice_error(s, deadline, Blocked::Full, "splice into", self.label()))
    }

    fn vmsplice(&self, buf: &mut PageBuf, deadline: Deadline) -> Result<usize> {
        let fd = self.as_fd();
        let mut done = 0;
        while !buf.is_empty() {
            let r = until_moved(&[(fd, Interest::Writable)], deadline, |flags| {
                let iov = [IoSliceRaw::from_slice_mut(&mut buf[..])];
                // SAFETY: `iov` covers `buf[..]`, borrowed mutably for the call, so even if `fd`
                // is not a write end (an unchecked `From<OwnedFd>`) and the kernel writes into
                // the memory, it writes through a unique borrow. `SPLICE_F_GIFT` is not passed,
                // so nothing is promised about the memory beyond the call: what keeps the pages
                // unmodified afterwards is `PageBuf::consume` below, which puts the moved bytes
                // out of reach for good (see the `PageBuf` docs).
                self.sigpipe()
                    .run(|| unsafe { rustix::pipe::vmsplice(fd, &iov, flags) })
            });
            match r {
                Ok(0) => break,
                Ok(n) => {
                    buf.consume(n);
                    done += n;
                }
                Err(stop) if done == 0 => {
                    return Err(stop.into_error(
                        deadline,
                        Blocked::Full,
                        "vmsplice into",
                        self.label(),
                    ));
                }
                // Like write(2): report what went in; a later call sees the error again.
                Err(_) => break,
            }
        }
        Ok(done)
    }
}

/// An owned, page-aligned buffer of anonymous memory whose bytes can be handed to a pipe by
/// reference with [`PipeWriter::vmsplice`].
///
/// Fill it through `DerefMut` (`&mut [u8]`), then splice it. Each byte moved into the pipe
/// leaves the buffer from the front; whole pages that have left are unmapped at once, and the
/// rest when the buffer is dropped.
///
/// # Why this is sound
///
/// `vmsplice` without `SPLICE_F_GIFT` does not copy: the pipe takes references to the physical
/// pages behind the buffer, and the reader copies out of them whenever it reads, which can be
/// much later. Until then, any write to those pages changes what the reader gets, and memory
/// freed and reused for something else (a secret, say) would leak into the pipe. Waiting until
/// the pipe is drained (`FIONREAD` = 0) is not enough either: the reader may have moved the
/// page references on with `splice` or `tee` into another pipe or a socket, where they stay
/// referenced for as long as they like.
///
/// So this type never lets the program write to a byte after it was given to a pipe:
///
/// - The memory is a private anonymous mapping owned by this value alone, never a heap block
///   the allocator could hand out again.
/// - The buffer's visible range is `start..end`. `vmsplice` takes bytes only from the front of
///   that range and moves `start` past every byte the kernel took; nothing moves `start` back.
///   `Deref`/`DerefMut` give access to `start..end` only, so a byte in the pipe is unreachable
///   from safe code. Bytes after `start` on a partly taken page may still be written: the
///   pipe's reference to that page covers only the bytes it took (a pipe buffer is page,
///   offset and length), so those writes do not change what the reader gets.
/// - Whole pages before `start` are unmapped right away, and all pages on drop. `munmap` drops
///   this process's reference to the physical pages; the pipe's references keep them alive, and
///   once unmapped no code in this process can reach them again. A later mapping at the same
///   address gets fresh pages.
/// - After a `fork`, the pages are copy-on-write: the kernel copies a page shared with a pipe
///   before letting either process write to it, so the pipe's page stays as it was.
/// - `SPLICE_F_GIFT` is not used: it would let a consumer steal the pages (a FUSE device with
///   `SPLICE_F_MOVE`), which forbids writing even the bytes of a page not yet taken.
///
/// The price: memory cannot be reused after it was spliced. Make a new `PageBuf` for the next
/// transfer (an `mmap`, page faults on first write, an `munmap`), which pays off for large
/// transfers; for small ones, `write` copies faster.
///
/// # References
/// - [`vmsplice(2)`](https://man7.org/linux/man-pages/man2/vmsplice.2.html)
/// - [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html)
pub struct PageBuf {
    /// Start of the part still mapped, page-aligned; dangling when `mapped` is 0.
    base: NonNull<u8>,
    /// Bytes mapped from `base`: a multiple of the page size.
    mapped: usize,
    /// Offset from `base` of the first byte not yet given to a pipe.
    start: usize,
    /// Offset from `base` one past the last byte: `start <= end <= mapped`.
    end: usize,
}

// SAFETY: a `PageBuf` owns its mapping exclusively (like a `Vec<u8>` owns its block); nothing
// in it is tied to a thread.
unsafe impl Send for PageBuf {}
// SAFETY: `&PageBuf` only gives `&[u8]`; every mutation needs `&mut PageBuf`.
unsafe impl Sync for PageBuf {}

impl PageBuf {
    /// A zero-filled buffer of `len` bytes: a fresh private anonymous mapping (`mmap(2)`) of
    /// `len` rounded up to whole pages.
    ///
    /// Errors: [`ErrorKind::LimitExceeded`] when out of memory or address space;
    /// [`ErrorKind::InvalidInput`] when `len` rounded up to whole pages overflows `usize`.
    ///
    /// # References
    /// - [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html)
    #[doc(alias = "mmap")]
    pub fn new(len: usize) -> Result<PageBuf> {
        if len == 0 {
            return Ok(PageBuf {
                base: NonNull::dangling(),
                mapped: 0,
                start: 0,
                end: 0,
            });
        }
        let mapped = len
            .checked_next_multiple_of(rustix::param::page_size())
            .ok_or_else(|| {
                Error::with_note(ErrorKind::InvalidInput, "size too large for a mapping")
                    .in_op("mmap")
                    .on(format_args!("page buffer of {len} bytes"))
            })?;
        // SAFETY: a new private anonymous mapping at an address the kernel picks: it overlaps
        // no existing memory, and this value becomes its only owner.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                mapped,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }
        .map_err(|e| {
            let err = ipc_core::knob::mapping_error(e, mapped)
                .in_op("mmap")
                .on(format_args!("page buffer of {len} bytes"));
            tracing::debug!(error = %err, "page buffer allocation failed");
            err
        })?;
        let base = NonNull::new(ptr.cast::<u8>()).expect("mmap never returns null on success");
        tracing::trace!(len, mapped, "page buffer mapped");
        Ok(PageBuf {
            base,
            mapped,
            start: 0,
            end: len,
        })
    }

    /// A buffer holding a copy of `data` (see [`PageBuf::new`]).
    pub fn copy_from_slice(data: &[u8]) -> Result<PageBuf> {
        let mut buf = PageBuf::new(data.len())?;
        buf.copy_from_slice(data);
        Ok(buf)
    }

    /// Shortens the buffer to `len` bytes (no-op if it is not longer).
    pub fn truncate(&mut self, len: usize) {
        self.end = self.start + len.min(self.end - self.start);
    }

    /// Bytes still mapped by this buffer (whole pages).
    pub fn mapped_len(&self) -> usize {
        self.mapped
    }

    /// Marks the first `n` bytes as given to a pipe: out of reach from now on. Unmaps the whole
    /// pages that lie before the new start.
    fn consume(&mut self, n: usize) {
        assert!(
            n <= self.end - self.start,
            "consumed more than the buffer holds"
        );
        self.start += n;
        let page = rustix::param::page_size();
        let whole = self.start / page * page;
        if whole == 0 {
            return;
        }
        // SAFETY: `base..base + whole` is the page-aligned front of this value's own mapping
        // (`whole <= start <= end <= mapped`). No reference into it exists: we hold `&mut self`,
        // and `Deref` never reaches below `start`.
        match unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), whole) } {
            Ok(()) => {
                // SAFETY: `whole <= mapped`, so the result is within or one past the mapping.
                self.base = unsafe { self.base.add(whole) };
                self.mapped -= whole;
                self.start -= whole;
                self.end -= whole;
            }
            // The pages stay mapped until drop; they are still out of reach (below `start`).
            Err(e) => {
                tracing::debug!(error = %e, "munmap of spliced pages failed; kept until drop")
            }
        }
    }
}

impl Deref for PageBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `start..end` lies within the mapping (or is empty at a dangling, aligned
        // pointer), is initialised (anonymous memory is zero-filled), and is borrowed for as
        // long as `self` is.
        unsafe {
            std::slice::from_raw_parts(self.base.as_ptr().add(self.start), self.end - self.start)
        }
    }
}

impl DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, with `&mut self` making the borrow unique. No byte in
        // `start..end` has been given to a pipe.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.base.as_ptr().add(self.start),
                self.end - self.start,
            )
        }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        if self.mapped == 0 {
            return;
        }
        // SAFETY: `base..base + mapped` is this value's own mapping, and no borrow of it can
        // outlive `self`. Pages a pipe still references stay alive in the kernel.
        if let Err(e) = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.mapped) } {
            tracing::debug!(error = %e, "munmap of a page buffer failed");
        }
    }
}

impl fmt::Debug for PageBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageBuf")
            .field("len", &(self.end - self.start))
            .field("mapped", &self.mapped)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn sizes_beyond_memory_are_typed_errors() {
        let e = PageBuf::new(usize::MAX).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        // Beyond any address space: mmap's ENOMEM.
        let e = PageBuf::new(1 << 62).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    }

    #[test]
    fn consumed_pages_are_unmapped_and_out_of_reach() {
        let page = rustix::param::page_size();
        let mut buf = PageBuf::new(3 * page + 10).unwrap();
        assert_eq!(buf.mapped_len(), 4 * page);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = i as u8;
        }
        buf.consume(page + 5);
        assert_eq!(buf.mapped_len(), 3 * page);
        assert_eq!(buf.len(), 2 * page + 5);
        assert_eq!(buf[0], (page + 5) as u8);
        buf.consume(buf.len());
        assert!(buf.is_empty());
        assert_eq!(buf.mapped_len(), page); // the partial last page stays until drop
        let empty = PageBuf::new(0).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn rewriting_what_is_left_does_not_change_what_the_pipe_holds() {
        let page = rustix::param::page_size();
        let (mut r, w) = crate::pipe().unwrap();
        w.set_capacity(2 * page).unwrap();
        let mut buf = PageBuf::copy_from_slice(&vec![b'a'; 4 * page]).unwrap();
        // The pipe has two slots: a non-waiting vmsplice takes two pages.
        assert_eq!(w.vmsplice(&mut buf, Deadline::Now).unwrap(), 2 * page);
        assert_eq!(buf.len(), 2 * page);
        buf.fill(b'b');
        let mut got = vec![0; 2 * page];
        r.read_exact(&mut got).unwrap();
        assert!(got.iter().all(|&b| b == b'a'));
        assert_eq!(w.vmsplice(&mut buf, Deadline::Now).unwrap(), 2 * page);
        r.read_exact(&mut got).unwrap();
        assert!(got.iter().all(|&b| b == b'b'));
    }

    #[test]
    fn dropped_and_reused_memory_does_not_reach_the_pipe() {
        let (mut r, w) = crate::pipe().unwrap();
        let len = w.capacity().unwrap();
        let mut buf = PageBuf::copy_from_slice(&vec![0x5a; len]).unwrap();
        assert_eq!(w.vmsplice(&mut buf, Deadline::Now).unwrap(), len);
        drop(buf);
        // New mappings (likely at the same addresses) filled with something else.
        let churn: Vec<PageBuf> = (0..4)
            .map(|_| {
                let mut b = PageBuf::new(len).unwrap();
                b.fill(0xee);
                b
            })
            .collect();
        let mut got = vec![0; len];
        r.read_exact(&mut got).unwrap();
        assert!(got.iter().all(|&b| b == 0x5a));
        drop(churn);
    }

    #[test]
    fn splicing_into_an_unsupported_descriptor_is_invalid_input() {
        let (r, mut w) = crate::pipe().unwrap();
        std::io::Write::write_all(&mut w, b"x").unwrap();
        let (_r2, w2) = crate::pipe().unwrap();
        let e = r.tee_to(&w, 1, Deadline::Now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert_eq!(r.tee_to(&w2, 1, Deadline::Now).unwrap(), 1);
    }
}

//! Pipe rows: `ipc-pipe`'s message endpoints over a pair of pipes (the shared
//! [`StreamPipe`](crate::fixtures::StreamPipe) fixture), the raw `read`/`write` loop over the
//! same pair, and the raw loop of the library's framed bytes (`pipe-raw-framed`): what the
//! kernel charges for the 4-byte length prefix alone, with no library code.

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::OwnedFd;

use ipc_core::frame::FRAME_HEADER_LEN;
use ipc_core::{Error, ErrorKind, Properties, Result};
use rustix::pipe::{PipeFlags, pipe_with};

use crate::row::{Duplex, Handoff, Inherited, Link, ParentEnd, Row, RowInfo, RowKind, raw_stream};

impl Link for crate::fixtures::StreamPipe {}

/// Two default pipes (`down` to the child, `up` back), the child's ends handed over as `rx`
/// and `tx`; returns the parent's (`up`'s read end, `down`'s write end).
fn pipe_pair(child: &mut Handoff) -> Result<(OwnedFd, OwnedFd)> {
    let (down_r, down_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let (up_r, up_w) = pipe_with(PipeFlags::CLOEXEC)?;
    child.fd("rx", &down_r)?;
    child.fd("tx", &up_w)?;
    Ok((up_r, down_w))
}

/// `write(2)` and `read(2)` of fixed-size messages over two pipes, no library code.
pub(crate) struct RawPipe;

impl Row for RawPipe {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "pipe-raw",
            family: "pipe",
            kind: RowKind::Raw,
            properties: Properties {
                mechanism: "pipe, raw",
                keeps_boundaries: false,
                ..ipc_pipe::PROPERTIES
            },
            max_message: None,
        }
    }

    fn connect(&self, _size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let (rx, tx) = pipe_pair(child)?;
        Ok(ParentEnd::Ready(raw_stream(rx, tx)))
    }

    fn adopt(&self, _size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        Ok(raw_stream(parent.take_fd("rx")?, parent.take_fd("tx")?))
    }
}

/// The plainest loop of the library's wire format over two default pipes: each message is
/// one `writev(2)` of its 4-byte little-endian length prefix and its bytes (the frame
/// `ipc-pipe` writes), read back with `readv(2)` of a prefix and exactly the message size
/// (the size is fixed per measurement), the prefix checked. No user-space copy, no library
/// code. Compared with `pipe-raw` (kind `baseline`, so the sweep's ratio table shows it), it
/// measures what a framed stream costs in the kernel alone: a frame of 4096 + 4 bytes spans
/// a page and a bit, so the pipe holds fewer of them and moves more pages per message.
pub(crate) struct RawFramedPipe;

impl Row for RawFramedPipe {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "pipe-raw-framed",
            family: "pipe",
            kind: RowKind::Baseline,
            properties: Properties {
                mechanism: "pipe, raw loop of length-prefixed frames",
                ..ipc_pipe::PROPERTIES
            },
            max_message: None,
        }
    }

    fn connect(&self, _size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let (rx, tx) = pipe_pair(child)?;
        Ok(ParentEnd::Ready(Box::new(RawFramed::new(rx, tx))))
    }

    fn adopt(&self, _size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        Ok(Box::new(RawFramed::new(
            parent.take_fd("rx")?,
            parent.take_fd("tx")?,
        )))
    }
}

/// `writev` of prefix and message until all is out; `readv` of a prefix and `buf` until both
/// are full.
struct RawFramed {
    rx: File,
    tx: File,
}

impl RawFramed {
    fn new(rx: OwnedFd, tx: OwnedFd) -> RawFramed {
        RawFramed {
            rx: File::from(rx),
            tx: File::from(tx),
        }
    }
}

impl Duplex for RawFramed {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        let len = u32::try_from(msg.len())
            .map_err(|_| Error::message_too_large(msg.len(), u32::MAX as usize, "frame prefix"))?;
        let prefix = len.to_le_bytes();
        let mut iov = [IoSlice::new(&prefix), IoSlice::new(msg)];
        let mut iov = &mut iov[..];
        while !iov.is_empty() {
            match self.tx.write_vectored(iov) {
                Ok(0) => return Err(Error::from(io::Error::from(io::ErrorKind::WriteZero))),
                Ok(n) => IoSlice::advance_slices(&mut iov, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut prefix = [0u8; FRAME_HEADER_LEN];
        let mut iov = [IoSliceMut::new(&mut prefix), IoSliceMut::new(buf)];
        let mut iov = &mut iov[..];
        while !iov.is_empty() {
            match self.rx.read_vectored(iov) {
                Ok(0) => return Err(Error::disconnected()),
                Ok(n) => IoSliceMut::advance_slices(&mut iov, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let len = u32::from_le_bytes(prefix) as usize;
        if len != buf.len() {
            return Err(Error::with_note(
                ErrorKind::Corrupted,
                format!(
                    "frame prefix says {len} bytes, every message of the point has {}",
                    buf.len()
                ),
            ));
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> RawFramed {
        let (r, w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        RawFramed::new(r, w)
    }

    /// The bytes on the wire are the library's frame: a receiver of `ipc-core`'s codec reads
    /// them back, and the loop reads back what it wrote.
    #[test]
    fn writes_the_library_frame_and_reads_it_back() {
        let mut link = pair();
        let msg: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        link.send(&msg).unwrap();
        let mut wire = vec![0; FRAME_HEADER_LEN + msg.len()];
        link.rx.read_exact(&mut wire).unwrap();
        let mut dec = ipc_core::frame::FrameDecoder::new(1 << 20);
        dec.push(&wire);
        let mut out = vec![0; msg.len()];
        assert_eq!(dec.decode(&mut out).unwrap(), Some(msg.len()));
        assert_eq!(out, msg);
        link.send(&msg).unwrap();
        let mut back = vec![0; msg.len()];
        assert_eq!(link.recv(&mut back).unwrap(), msg.len());
        assert_eq!(back, msg);
    }

    /// A prefix that is not the point's message size is corruption, not a message.
    #[test]
    fn a_prefix_of_another_size_is_corrupted() {
        let mut link = pair();
        link.send(&[1u8; 100]).unwrap();
        link.tx.write_all(&[2u8; 4]).unwrap();
        let mut buf = [0u8; 104];
        // The whole first frame (prefix 100) and 4 bytes more fill a prefix and 104 bytes.
        let e = link.recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    }
}

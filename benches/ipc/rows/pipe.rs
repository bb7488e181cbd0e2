//! Pipe rows: the library's framed message endpoints over a pair of pipes, and the raw
//! `read`/`write` loop over the same pair.

use ipc_core::stream::{FrameMode, FrameReceiver, FrameSender};
use ipc_core::{MaxMessage, Properties, Result};
use rustix::pipe::{PipeFlags, pipe_with};

use crate::registry::{
    Duplex, Handoff, Inherited, Mechanism, ParentEnd, RowInfo, RowKind, messages, raw_stream,
};

/// The library pipe row's properties: messages framed with a length prefix over a pipe pair
/// (streaming mode: one writer, any size).
const PIPE: Properties = Properties {
    mechanism: "pipe",
    keeps_boundaries: true,
    max_message: MaxMessage::Unbounded,
    multi_producer: false,
    multi_consumer: false,
    needs_related_process: true,
    namespace: None,
    kernel_copies_per_message: 2,
    crosses_machines: false,
};

/// Two pipes, parent to child and child to parent; the child's ends go over as `rx` and `tx`.
fn pipe_pair(child: &mut Handoff) -> Result<(rustix::fd::OwnedFd, rustix::fd::OwnedFd)> {
    let (down_r, down_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let (up_r, up_w) = pipe_with(PipeFlags::CLOEXEC)?;
    child.fd("rx", &down_r)?;
    child.fd("tx", &up_w)?;
    Ok((up_r, down_w))
}

/// `ipc-core` frame endpoints over two pipes: what `ipc-pipe`'s message endpoints wrap.
pub(crate) struct Pipe;

impl Mechanism for Pipe {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "pipe",
            family: "pipe",
            kind: RowKind::Library,
            properties: PIPE,
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let (rx, tx) = pipe_pair(child)?;
        Ok(ParentEnd::Ready(framed(rx, tx, size)?))
    }

    fn adopt(&self, size: usize, parent: &Inherited) -> Result<Box<dyn Duplex>> {
        framed(parent.take_fd("rx")?, parent.take_fd("tx")?, size)
    }
}

fn framed(
    rx: rustix::fd::OwnedFd,
    tx: rustix::fd::OwnedFd,
    size: usize,
) -> Result<Box<dyn Duplex>> {
    let mode = FrameMode::Stream { max_message: size };
    Ok(messages(
        FrameSender::new(tx, mode, "pipe")?,
        FrameReceiver::new(rx, size, "pipe")?,
    ))
}

/// `write(2)` and `read(2)` of fixed-size messages over two pipes, no library code.
pub(crate) struct RawPipe;

impl Mechanism for RawPipe {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "pipe-raw",
            family: "pipe",
            kind: RowKind::Raw,
            properties: Properties {
                mechanism: "pipe, raw",
                keeps_boundaries: false,
                ..PIPE
            },
            max_message: None,
        }
    }

    fn connect(&self, _size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let (rx, tx) = pipe_pair(child)?;
        Ok(ParentEnd::Ready(raw_stream(rx, tx)))
    }

    fn adopt(&self, _size: usize, parent: &Inherited) -> Result<Box<dyn Duplex>> {
        Ok(raw_stream(parent.take_fd("rx")?, parent.take_fd("tx")?))
    }
}

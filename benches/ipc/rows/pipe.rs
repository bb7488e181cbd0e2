//! Pipe rows: `ipc-pipe`'s message endpoints over a pair of pipes, and the raw
//! `read`/`write` loop over the same pair.

use ipc_core::{Properties, Result};
use ipc_pipe::{FrameMode, PipeReader, PipeWriter};
use rustix::pipe::{PipeFlags, pipe_with};

use crate::registry::{
    Duplex, Handoff, Inherited, Mechanism, ParentEnd, RowInfo, RowKind, messages, raw_stream,
};

/// `ipc-pipe` message endpoints (streaming frame mode: one writer, any size) over two pipes,
/// parent to child and back; the child's ends go over as `rx` and `tx`.
pub(crate) struct Pipe;

impl Mechanism for Pipe {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "pipe",
            family: "pipe",
            kind: RowKind::Library,
            properties: ipc_pipe::PROPERTIES,
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let (down_r, down_w) = ipc_pipe::pipe()?;
        let (up_r, up_w) = ipc_pipe::pipe()?;
        child.fd("rx", &down_r)?;
        child.fd("tx", &up_w)?;
        Ok(ParentEnd::Ready(framed(up_r, down_w, size)?))
    }

    fn adopt(&self, size: usize, _parent: &Inherited) -> Result<Box<dyn Duplex>> {
        // `from_inherited` adopts by name and checks that each end is the right pipe end.
        framed(
            PipeReader::from_inherited("rx")?,
            PipeWriter::from_inherited("tx")?,
            size,
        )
    }
}

fn framed(rx: PipeReader, tx: PipeWriter, size: usize) -> Result<Box<dyn Duplex>> {
    let mode = FrameMode::Stream { max_message: size };
    Ok(messages(tx.into_sender(mode)?, rx.into_receiver(size)?))
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
                ..ipc_pipe::PROPERTIES
            },
            max_message: None,
        }
    }

    fn connect(&self, _size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let (down_r, down_w) = pipe_with(PipeFlags::CLOEXEC)?;
        let (up_r, up_w) = pipe_with(PipeFlags::CLOEXEC)?;
        child.fd("rx", &down_r)?;
        child.fd("tx", &up_w)?;
        Ok(ParentEnd::Ready(raw_stream(up_r, down_w)))
    }

    fn adopt(&self, _size: usize, parent: &Inherited) -> Result<Box<dyn Duplex>> {
        Ok(raw_stream(parent.take_fd("rx")?, parent.take_fd("tx")?))
    }
}

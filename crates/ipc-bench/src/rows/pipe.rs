//! Pipe rows: `ipc-pipe`'s message endpoints over a pair of pipes (the shared
//! [`StreamPipe`](crate::fixtures::StreamPipe) fixture), and the raw `read`/`write` loop over
//! the same pair.

use ipc_core::{Properties, Result};
use rustix::pipe::{PipeFlags, pipe_with};

use crate::row::{Duplex, Handoff, Inherited, Link, ParentEnd, Row, RowInfo, RowKind, raw_stream};

impl Link for crate::fixtures::StreamPipe {}

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
        let (down_r, down_w) = pipe_with(PipeFlags::CLOEXEC)?;
        let (up_r, up_w) = pipe_with(PipeFlags::CLOEXEC)?;
        child.fd("rx", &down_r)?;
        child.fd("tx", &up_w)?;
        Ok(ParentEnd::Ready(raw_stream(up_r, down_w)))
    }

    fn adopt(&self, _size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        Ok(raw_stream(parent.take_fd("rx")?, parent.take_fd("tx")?))
    }
}

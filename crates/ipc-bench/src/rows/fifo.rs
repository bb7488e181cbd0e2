//! FIFO rows: `ipc-fifo`'s message endpoints over two FIFOs (the shared
//! [`AtomicFifo`](crate::fixtures::AtomicFifo) and [`StreamFifo`](crate::fixtures::StreamFifo)
//! fixtures: the atomic multi-writer sender, and the single-writer stream sender for messages
//! above `PIPE_BUF`), and the raw `read`/`write` loop over the same kind of FIFOs.
//!
//! The parent creates each FIFO in a private directory, opens both ends by path and hands the
//! child its ends by descriptor (the fixtures' way); the names are removed when the link ends
//! (raw row: as soon as the child has its ends).

use std::os::fd::OwnedFd;

use ipc_core::{Properties, Result};

use crate::fixtures::fifo_pair;
use crate::row::{Duplex, Handoff, Inherited, Link, ParentEnd, Row, RowInfo, RowKind, raw_stream};

impl Link for crate::fixtures::AtomicFifo {}
impl Link for crate::fixtures::StreamFifo {}

/// `write(2)` and `read(2)` of fixed-size messages over two FIFOs, no library code in the
/// loop.
pub(crate) struct RawFifo;

impl Row for RawFifo {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "fifo-raw",
            family: "fifo",
            kind: RowKind::Raw,
            properties: Properties {
                mechanism: "fifo, raw",
                keeps_boundaries: false,
                ..ipc_fifo::STREAM_PROPERTIES
            },
            max_message: None,
        }
    }

    fn connect(&self, _size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let (down_w, down_r, _down_names) = fifo_pair()?;
        let (up_w, up_r, _up_names) = fifo_pair()?;
        child.fd("rx", &down_r)?;
        child.fd("tx", &up_w)?;
        Ok(ParentEnd::Ready(raw_stream(
            OwnedFd::from(up_r),
            OwnedFd::from(down_w),
        )))
    }

    fn adopt(&self, _size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        Ok(raw_stream(parent.take_fd("rx")?, parent.take_fd("tx")?))
    }
}

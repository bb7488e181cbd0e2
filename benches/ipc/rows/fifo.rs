//! FIFO rows: `ipc-fifo`'s message endpoints over two FIFOs (the atomic multi-writer sender,
//! and the single-writer stream sender for messages above `PIPE_BUF`), and the raw
//! `read`/`write` loop over the same two FIFOs.
//!
//! The processes meet the way FIFOs are meant for: the parent creates `down` (parent to child)
//! and `up` (child to parent) in a private temporary directory and hands the child the
//! directory's path; both open them by path. Opening a FIFO waits for the other end, so the
//! parent opens after the child has started ([`ParentEnd::AfterSpawn`]), in the same order as
//! the child (`down`, then `up`), each open bounded by a deadline in case the other process
//! died. Once both ends are open the names are no longer needed: the FIFOs and the directory
//! are removed then (or when the setup fails).

use std::fs::DirBuilder;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipc_core::{Properties, Result};
use ipc_fifo::{Fifo, FifoReader, FifoWriter, MAX_ATOMIC_PAYLOAD, OpenOptions};

use crate::registry::{
    Duplex, Handoff, Inherited, Mechanism, ParentEnd, RowInfo, RowKind, messages, raw_stream,
};

/// How long either process waits for the other to open a FIFO.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// What is measured over the two FIFOs.
#[derive(Clone, Copy, Debug)]
enum Ends {
    /// [`FifoWriter::into_sender`] (one atomic write per message, any number of writers) and
    /// [`FifoReader::into_atomic_receiver`].
    Atomic,
    /// [`FifoWriter::into_stream_sender`] (one writer, any size) and
    /// [`FifoReader::into_receiver`].
    Stream,
    /// The descriptors, read and written with plain `read(2)`/`write(2)`.
    Raw,
}

impl Ends {
    fn link(self, rx: FifoReader, tx: FifoWriter, size: usize) -> Result<Box<dyn Duplex>> {
        Ok(match self {
            Ends::Atomic => messages(tx.into_sender()?, rx.into_atomic_receiver()?),
            Ends::Stream => messages(tx.into_stream_sender(size)?, rx.into_receiver(size)?),
            Ends::Raw => raw_stream(OwnedFd::from(rx), OwnedFd::from(tx)),
        })
    }

    /// The parent: creates the FIFOs now, opens them once the child has started.
    fn connect(self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let dir = PrivateDir::new()?;
        let down = Fifo::create(dir.path().join("down"))?;
        let up = Fifo::create(dir.path().join("up"))?;
        child.arg(dir.path().to_str().ok_or_else(|| {
            ipc_core::Error::with_note(
                ipc_core::ErrorKind::InvalidName,
                "the temporary directory's path is not UTF-8",
            )
        })?)?;
        Ok(ParentEnd::AfterSpawn(Box::new(move || {
            let mut open = OpenOptions::new();
            open.timeout(OPEN_TIMEOUT);
            let tx = open.open_write(&down)?;
            let rx = open.open_read(&up)?;
            // Both ends are open: the names have done their job.
            drop((down, up, dir));
            self.link(rx, tx, size)
        })))
    }

    /// The child: opens the FIFOs in the directory the parent named, in the parent's order.
    fn adopt(self, size: usize, parent: &Inherited) -> Result<Box<dyn Duplex>> {
        let dir = Path::new(parent.arg());
        let mut open = OpenOptions::new();
        open.timeout(OPEN_TIMEOUT);
        let rx = open.open_read(dir.join("down"))?;
        let tx = open.open_write(dir.join("up"))?;
        self.link(rx, tx, size)
    }
}

/// A directory only this user can enter, for the two FIFOs; removed on drop.
#[derive(Debug)]
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    fn new() -> Result<PrivateDir> {
        // `ipctest-` names: what `cargo xtask test` looks for when checking that nothing was
        // left behind (the integrity test runs these rows).
        let path = std::env::temp_dir().join(ipc_testkit::unique_name("bench-fifo"));
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| ipc_core::Error::from(e).in_op("mkdir").on(path.display()))?;
        Ok(PrivateDir { path })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        // Empty by now: the FIFO guards were dropped first (or never made).
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `ipc-fifo` message endpoints in multi-writer mode: every message one atomic `write` of at
/// most `PIPE_BUF`, so at most 4092 bytes.
pub(crate) struct FifoAtomic;

impl Mechanism for FifoAtomic {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "fifo",
            family: "fifo",
            kind: RowKind::Library,
            properties: ipc_fifo::PROPERTIES,
            max_message: Some(MAX_ATOMIC_PAYLOAD),
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        Ends::Atomic.connect(size, child)
    }

    fn adopt(&self, size: usize, parent: &Inherited) -> Result<Box<dyn Duplex>> {
        Ends::Atomic.adopt(size, parent)
    }
}

/// `ipc-fifo` message endpoints in single-writer stream mode: messages of any size (the only
/// FIFO library row above 4092 bytes).
pub(crate) struct FifoStream;

impl Mechanism for FifoStream {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "fifo-stream",
            family: "fifo",
            kind: RowKind::Library,
            properties: ipc_fifo::STREAM_PROPERTIES,
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        Ends::Stream.connect(size, child)
    }

    fn adopt(&self, size: usize, parent: &Inherited) -> Result<Box<dyn Duplex>> {
        Ends::Stream.adopt(size, parent)
    }
}

/// `write(2)` and `read(2)` of fixed-size messages over the same two FIFOs, no library code in
/// the loop.
pub(crate) struct RawFifo;

impl Mechanism for RawFifo {
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

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        Ends::Raw.connect(size, child)
    }

    fn adopt(&self, size: usize, parent: &Inherited) -> Result<Box<dyn Duplex>> {
        Ends::Raw.adopt(size, parent)
    }
}

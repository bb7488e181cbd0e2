//! The conformance suite for FIFOs in their multi-writer mode (atomic records of at most
//! `PIPE_BUF - 4` bytes): the FIFO is created in a private directory, opened by path, and each
//! end is handed to a child by fd.

use ipc_core::Deadline;
use ipc_core::frame::MAX_ATOMIC_PAYLOAD;
use ipc_fifo::{Fifo, FifoReader, FifoReceiver, FifoSender, FifoWriter, OpenOptions};
use ipc_testkit::conformance::Mechanism;
use ipc_testkit::{Ctx, Spawn, TempDir};

struct AtomicFifo;

impl Mechanism for AtomicFifo {
    type Tx = FifoSender;
    type Rx = FifoReceiver;
    type Guard = (Fifo, TempDir);
    const NAME: &'static str = "fifo (atomic records)";
    const DETECTS_DISCONNECT: bool = true;

    fn script_max() -> usize {
        MAX_ATOMIC_PAYLOAD
    }

    fn channel() -> (FifoSender, FifoReceiver, (Fifo, TempDir)) {
        let dir = TempDir::new("conf-fifo");
        let fifo = Fifo::create(dir.join("fifo")).unwrap();
        // A reader opens at once; then a writer finds it and does not wait either.
        let now = || {
            let mut o = OpenOptions::new();
            o.wait(Deadline::Now);
            o
        };
        let reader = now().open_read(fifo.path()).unwrap();
        let writer = now().open_write(fifo.path()).unwrap();
        // The ends are used blocking; deadlines are handled per call.
        reader.set_nonblocking(false).unwrap();
        writer.set_nonblocking(false).unwrap();
        (
            writer.into_sender().unwrap(),
            reader.into_atomic_receiver().unwrap(),
            (fifo, dir),
        )
    }

    fn pass_tx(tx: FifoSender, spawn: Spawn) -> Spawn {
        spawn.fd("tx", tx.get_ref())
    }

    fn adopt_tx(ctx: &Ctx) -> FifoSender {
        FifoWriter::from(ctx.take_fd("tx")).into_sender().unwrap()
    }

    fn pass_rx(rx: FifoReceiver, spawn: Spawn) -> Spawn {
        spawn.fd("rx", rx.get_ref())
    }

    fn adopt_rx(ctx: &Ctx) -> FifoReceiver {
        FifoReader::from(ctx.take_fd("rx"))
            .into_atomic_receiver()
            .unwrap()
    }
}

ipc_testkit::conformance_suite!(AtomicFifo);

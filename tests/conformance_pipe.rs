//! The conformance suite for pipes in stream mode (messages of any size up to the configured
//! maximum, one writer), each end handed to a child by fd and adopted there by name.

use ipc_core::stream::FrameMode;
use ipc_pipe::{PipeReader, PipeReceiver, PipeSender, PipeWriter};
use ipc_testkit::conformance::Mechanism;
use ipc_testkit::{Ctx, Spawn};

const MAX: usize = 1 << 20;
const MODE: FrameMode = FrameMode::Stream { max_message: MAX };

struct StreamPipe;

impl Mechanism for StreamPipe {
    type Tx = PipeSender;
    type Rx = PipeReceiver;
    type Guard = ();
    const NAME: &'static str = "pipe (stream)";
    const DETECTS_DISCONNECT: bool = true;

    fn script_max() -> usize {
        200_000
    }
    fn channel() -> (PipeSender, PipeReceiver, ()) {
        let (tx, rx) = ipc_pipe::channel(MODE).unwrap();
        (tx, rx, ())
    }
    fn pass_tx(tx: PipeSender, spawn: Spawn) -> Spawn {
        spawn.fd("tx", tx.get_ref())
    }
    fn adopt_tx(_: &Ctx) -> PipeSender {
        PipeWriter::from_inherited("tx")
            .unwrap()
            .into_sender(MODE)
            .unwrap()
    }
    fn pass_rx(rx: PipeReceiver, spawn: Spawn) -> Spawn {
        spawn.fd("rx", rx.get_ref())
    }
    fn adopt_rx(_: &Ctx) -> PipeReceiver {
        PipeReader::from_inherited("rx")
            .unwrap()
            .into_receiver(MAX)
            .unwrap()
    }
}

ipc_testkit::conformance_suite!(StreamPipe);

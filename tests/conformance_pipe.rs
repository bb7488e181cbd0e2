//! The conformance suite for pipes: stream mode (any size, one writer) and atomic mode
//! (records of at most PIPE_BUF, several writers), each end handed to a child by fd.

use std::os::fd::OwnedFd;

use ipc_core::stream::{FrameMode, FrameReceiver, FrameSender};
use ipc_testkit::conformance::Mechanism;
use ipc_testkit::{Ctx, Spawn};

fn pipe_ends(mode: FrameMode) -> (FrameSender<OwnedFd>, FrameReceiver<OwnedFd>, ()) {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    (
        FrameSender::new(w, mode, "pipe").unwrap(),
        FrameReceiver::new(r, mode.max_message(), "pipe").unwrap(),
        (),
    )
}

/// Pipes in stream mode.
struct StreamPipe;

impl Mechanism for StreamPipe {
    type Tx = FrameSender<OwnedFd>;
    type Rx = FrameReceiver<OwnedFd>;
    type Guard = ();
    const NAME: &'static str = "pipe (stream)";
    const DETECTS_DISCONNECT: bool = true;

    fn script_max() -> usize {
        200_000
    }
    fn channel() -> (Self::Tx, Self::Rx, ()) {
        pipe_ends(FrameMode::Stream {
            max_message: 1 << 20,
        })
    }
    fn pass_tx(tx: Self::Tx, spawn: Spawn) -> Spawn {
        spawn.fd("tx", tx.get_ref())
    }
    fn adopt_tx(ctx: &Ctx) -> Self::Tx {
        FrameSender::new(
            ctx.take_fd("tx"),
            FrameMode::Stream {
                max_message: 1 << 20,
            },
            "pipe",
        )
        .unwrap()
    }
    fn pass_rx(rx: Self::Rx, spawn: Spawn) -> Spawn {
        spawn.fd("rx", rx.get_ref())
    }
    fn adopt_rx(ctx: &Ctx) -> Self::Rx {
        FrameReceiver::new(ctx.take_fd("rx"), 1 << 20, "pipe").unwrap()
    }
}

ipc_testkit::conformance_suite!(StreamPipe);

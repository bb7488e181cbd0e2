//! The conformance suite for the shared-memory channel: a ring in a sealed memfd segment, each
//! end handed to a child by inheriting the segment (the parent detaches its end, the child
//! opens it).

use ipc_shm::{ChannelOptions, Receiver, Segment, Sender};
use ipc_testkit::conformance::Mechanism;
use ipc_testkit::{Ctx, Spawn};

/// The channel with its default 1 MiB ring.
struct ShmChannel;

impl Mechanism for ShmChannel {
    type Tx = Sender;
    type Rx = Receiver;
    type Guard = ();
    const NAME: &'static str = "shm channel";
    const DETECTS_DISCONNECT: bool = true;

    fn script_max() -> usize {
        200_000
    }
    fn channel() -> (Sender, Receiver, ()) {
        let (tx, rx) = ChannelOptions::new().pair().unwrap();
        (tx, rx, ())
    }
    fn pass_tx(tx: Sender, spawn: Spawn) -> Spawn {
        let segment = tx.detach();
        spawn.fd("seg", segment.fd().unwrap())
    }
    fn adopt_tx(_ctx: &Ctx) -> Sender {
        Sender::open(Segment::inherited("seg").unwrap()).unwrap()
    }
    fn pass_rx(rx: Receiver, spawn: Spawn) -> Spawn {
        let segment = rx.detach();
        spawn.fd("seg", segment.fd().unwrap())
    }
    fn adopt_rx(_ctx: &Ctx) -> Receiver {
        Receiver::open(Segment::inherited("seg").unwrap()).unwrap()
    }
}

ipc_testkit::conformance_suite!(ShmChannel);

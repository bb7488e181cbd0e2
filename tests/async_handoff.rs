//! A peer that SIGKILLs itself in the middle of a same-CPU ping-pong (where the async
//! receiver's calls become a hand-off streak: they yield before trying and keep the
//! descriptor out of the reactor) is seen as `Disconnected`, not a hang: over pipes and over
//! shm channels, the two processes pinned to one CPU.

use ipc_core::tokio::AsyncEndpoint;
use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
use ipc_pipe::{FrameMode, PipeReader, PipeWriter, pipe};
use ipc_shm::{ChannelOptions, Segment};
use ipc_testkit::{Ctx, roles, spawn, watchdog};

const ROUNDS: u32 = 300;

fn pin_to(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).unwrap();
}

/// Child: pinned to the CPU in its argument, echoes `ROUNDS` messages (blocking calls), then
/// takes one more and SIGKILLs itself instead of answering.
fn pong(ctx: &Ctx) {
    let args = ctx.args();
    pin_to(args[1].parse().unwrap());
    let (mut rx, mut tx): (Box<dyn MessageReceiver>, Box<dyn MessageSender>) = match args[0] {
        "pipe" => (
            Box::new(
                PipeReader::from_inherited("rx")
                    .unwrap()
                    .into_receiver(64)
                    .unwrap(),
            ),
            Box::new(
                PipeWriter::from_inherited("tx")
                    .unwrap()
                    .into_sender(FrameMode::Atomic)
                    .unwrap(),
            ),
        ),
        _ => (
            Box::new(ipc_shm::Receiver::open(Segment::inherited("rx").unwrap()).unwrap()),
            Box::new(ipc_shm::Sender::open(Segment::inherited("tx").unwrap()).unwrap()),
        ),
    };
    let mut buf = [0u8; 64];
    for _ in 0..ROUNDS {
        let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
        tx.send(&buf[..n]).unwrap();
    }
    rx.recv_timeout(&mut buf, watchdog()).unwrap();
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
        .unwrap();
}

roles!(pong);

/// The parent's side: pinned to its current CPU (the child's too), `ROUNDS` round trips with
/// an async receiver, then one request whose answer never comes: `Disconnected`.
fn ping<R, S>(what: &str, child: ipc_testkit::Spawn, rx: R, tx: S)
where
    R: ipc_core::Readiness + MessageReceiver,
    S: MessageSender,
{
    let cpu = rustix::thread::sched_getcpu();
    let mut child = child.arg(format!("{what} {cpu}")).start();
    // Restores the test thread's affinity on every way out (tests share threads).
    struct Unpin(rustix::thread::CpuSet);
    impl Drop for Unpin {
        fn drop(&mut self) {
            let _ = rustix::thread::sched_setaffinity(None, &self.0);
        }
    }
    let _unpin = Unpin(rustix::thread::sched_getaffinity(None).unwrap());
    pin_to(cpu);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    let mut tx = tx;
    let mut rx = AsyncEndpoint::new(rx).unwrap();
    let mut buf = [0u8; 64];
    rt.block_on(async {
        for i in 0..ROUNDS {
            tx.send(&i.to_le_bytes()).unwrap();
            let n = tokio::time::timeout(watchdog(), rx.recv(&mut buf))
                .await
                .expect("watchdog")
                .unwrap();
            assert_eq!(&buf[..n], &i.to_le_bytes(), "{what}");
        }
        tx.send(b"last").unwrap();
        let e = tokio::time::timeout(watchdog(), rx.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{what}: the peer's death never ended the wait"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{what}: {e}");
    });
    assert!(child.wait().killed(), "{what}");
    // Whether the calls became a hand-off streak depends on the machine's load; printed,
    // not asserted.
    eprintln!("{what}: {:?}", rx.wait_stats());
}

#[test]
fn a_peer_killed_during_a_same_cpu_hand_off_streak_is_disconnected() {
    let (down_r, down_w) = pipe().unwrap();
    let (up_r, up_w) = pipe().unwrap();
    let child = spawn("pong").fd("rx", &down_r).fd("tx", &up_w);
    drop((down_r, up_w));
    let tx = down_w.into_sender(FrameMode::Atomic).unwrap();
    // `ping` starts the child (it needs the argument first), after which these copies of the
    // child's ends are gone already.
    ping("pipe", child, up_r.into_receiver(64).unwrap(), tx);

    let (down_tx, down_rx) = ChannelOptions::new().capacity(1 << 12).pair().unwrap();
    let (up_tx, up_rx) = ChannelOptions::new().capacity(1 << 12).pair().unwrap();
    let (down, up) = (down_rx.detach(), up_tx.detach());
    let child = spawn("pong")
        .fd("rx", down.fd().unwrap())
        .fd("tx", up.fd().unwrap());
    drop((down, up));
    ping("shm", child, up_rx, down_tx);
}

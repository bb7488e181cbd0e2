//! An endpoint replaced behind the adapter's back (`get_mut`, then a new endpoint assigned in
//! place of the old, whose descriptor closes): the adapter's waits follow the new endpoint's
//! readiness, and the old one's descriptor is not kept open by the adapter (its peer sees
//! `Disconnected`). A pipe, a POSIX queue and a shm channel.

use std::time::Duration;

use ipc_core::tokio::{AsyncEndpoint, YieldPolicy};
use ipc_core::{ErrorKind, MessageReceiver, MessageSender, Readiness};
use ipc_mq::posix::{Access, Queue};
use ipc_pipe::FrameMode;
use ipc_testkit::{unique_posix_name, watchdog};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap()
}

/// Parks a receive on `rx` (registering its descriptor), replaces the endpoint with `new_rx`
/// (dropping the old), then expects a message sent on `new_tx` while the next receive sleeps;
/// afterwards `old_tx` must find its receiver gone (when `old_tx` has a peer to lose).
fn replaced<R, S>(what: &str, rx: R, old_tx: Option<S>, new_rx: R, mut new_tx: S)
where
    R: Readiness + MessageReceiver,
    S: MessageSender + Send + 'static,
{
    let rt = runtime();
    let mut rx = AsyncEndpoint::new(rx)
        .unwrap()
        .with_yield_policy(YieldPolicy::Park);
    let mut buf = [0u8; 64];
    rt.block_on(async {
        let r = tokio::time::timeout(Duration::from_millis(10), rx.recv(&mut buf)).await;
        assert!(r.is_err(), "{what}: nothing was sent: {r:?}");
    });
    *rx.get_mut() = new_rx;
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        new_tx.send(b"new").unwrap();
        new_tx
    });
    let n = rt
        .block_on(async { tokio::time::timeout(watchdog(), rx.recv(&mut buf)).await })
        .unwrap_or_else(|_| panic!("{what}: the wait followed the old endpoint"))
        .unwrap();
    assert_eq!(&buf[..n], b"new", "{what}");
    sender.join().unwrap();
    if let Some(mut old_tx) = old_tx {
        let e = old_tx.try_send(b"old").unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::Disconnected,
            "{what}: the adapter keeps the old endpoint's descriptor open: {e}"
        );
    }
}

#[test]
fn waits_follow_an_endpoint_replaced_through_get_mut() {
    let (old_tx, rx) = ipc_pipe::channel(FrameMode::default()).unwrap();
    let (new_tx, new_rx) = ipc_pipe::channel(FrameMode::default()).unwrap();
    replaced("pipe", rx, Some(old_tx), new_rx, new_tx);

    let (old_tx, rx) = ipc_shm::ChannelOptions::new()
        .capacity(1 << 13)
        .pair()
        .unwrap();
    let (new_tx, new_rx) = ipc_shm::ChannelOptions::new()
        .capacity(1 << 13)
        .pair()
        .unwrap();
    replaced("shm", rx, Some(old_tx), new_rx, new_tx);

    let (a, b) = (
        unique_posix_name("async-repl"),
        unique_posix_name("async-repl"),
    );
    let old = Queue::create(a.as_str(), 4, 64).unwrap();
    let _remove_old = old.remove_guard().unwrap();
    let new = Queue::create(b.as_str(), 4, 64).unwrap();
    let _remove_new = new.remove_guard().unwrap();
    let new_tx = Queue::open(b.as_str(), Access::WriteOnly).unwrap();
    // A queue has no peer to lose: only the wait is checked.
    replaced("queue", old, None::<Queue>, new, new_tx);
}

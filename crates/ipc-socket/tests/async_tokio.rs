//! Socket endpoints on tokio (feature `tokio`): `AsyncEndpoint` over `Seqpacket` and `Stream`,
//! with the peer in another process. Messages cross both ways in order, a receive cancelled by
//! a timeout takes nothing, and a SIGKILLed peer is `Disconnected` exactly as in blocking
//! code.
#![cfg(feature = "tokio")]

use std::time::Duration;

use ipc_core::tokio::AsyncEndpoint;
use ipc_socket::{ErrorKind, MessageReceiver, MessageSender, Seqpacket, Stream};
use ipc_testkit::{Ctx, roles, spawn, watchdog};

const MAX: usize = 100_000;

/// Child: echoes every message back on the inherited socket (`arg`: `seqpacket` or `stream`)
/// until the parent leaves, then parks (to be killed).
fn echo(ctx: &Ctx) {
    let fd = ctx.take_fd("sock");
    let mut buf = vec![0; MAX];
    match ctx.arg() {
        "seqpacket" => serve(Seqpacket::from_fd(fd, MAX).unwrap(), &mut buf, ctx),
        _ => serve(Stream::from_fd(fd, MAX).unwrap(), &mut buf, ctx),
    }
}

fn serve<E: MessageSender + MessageReceiver>(mut end: E, buf: &mut [u8], ctx: &Ctx) {
    for _ in 0..3 {
        let n = end.recv(buf).unwrap();
        end.send(&buf[..n]).unwrap();
    }
    ctx.park("echoed");
}

roles!(echo);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Three echoes of growing messages, a receive cancelled by a timeout, then the peer killed.
async fn exercise<E>(mut end: AsyncEndpoint<E>, child: &mut ipc_testkit::Child)
where
    E: ipc_core::Readiness + MessageSender + MessageReceiver,
{
    let mut buf = vec![0; MAX];
    for len in [0usize, 64, 90_000] {
        let msg: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        end.send(&msg).await.unwrap();
        let n = tokio::time::timeout(watchdog(), end.recv(&mut buf))
            .await
            .expect("watchdog")
            .unwrap();
        assert_eq!(&buf[..n], &msg[..], "echo of {len} bytes");
    }
    // Nothing is coming: the timeout drops the receive future, which took nothing.
    let cut = tokio::time::timeout(Duration::from_millis(20), end.recv(&mut buf)).await;
    assert!(
        cut.is_err(),
        "a receive completed with nothing sent: {cut:?}"
    );
    child.wait_checkpoint("echoed");
    assert!(child.kill_and_wait().killed());
    let e = tokio::time::timeout(watchdog(), end.recv(&mut buf))
        .await
        .expect("a killed peer must end the wait")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

#[test]
fn seqpacket_async_round_trips_then_a_killed_peer_is_disconnected() {
    let (mine, theirs) = Seqpacket::pair(MAX).unwrap();
    let mut child = spawn("echo").arg("seqpacket").fd("sock", &theirs).start();
    drop(theirs);
    runtime().block_on(async {
        exercise(AsyncEndpoint::new(mine).unwrap(), &mut child).await;
    });
}

#[test]
fn stream_async_round_trips_then_a_killed_peer_is_disconnected() {
    let (mine, theirs) = Stream::pair(MAX).unwrap();
    let mut child = spawn("echo").arg("stream").fd("sock", &theirs).start();
    drop(theirs);
    runtime().block_on(async {
        exercise(AsyncEndpoint::new(mine).unwrap(), &mut child).await;
    });
}

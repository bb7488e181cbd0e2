//! An async endpoint and the runtimes around it: one that parked on a runtime since shut down
//! waits on the next one, and so does a future parked on a runtime shut down under it; a
//! runtime without an I/O driver is the documented error and a wait polled outside any runtime
//! the documented panic, and neither harms the endpoint; one moved to a runtime on another
//! thread while the first keeps running is woken, and so is one moved to a second runtime while
//! the first lives idle. Over a pipe, a POSIX queue and a shm
//! channel (each its own kind of readiness descriptor).

use std::future::Future;
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

/// Runs `check` over a receiver and a sender of each kind: a pipe, a POSIX queue (removed
/// when the check returns or panics), a shm channel.
fn each_kind(check: impl Fn(&str, Box<dyn Rx>, Box<dyn Tx>)) {
    let (tx, rx) = ipc_pipe::channel(FrameMode::default()).unwrap();
    check("pipe", Box::new(rx), Box::new(tx));
    let name = unique_posix_name("async-rt");
    let queue = Queue::create(name.as_str(), 4, 64).unwrap();
    let _remove = queue.remove_guard().unwrap();
    let tx = Queue::open(name.as_str(), Access::WriteOnly).unwrap();
    check("queue", Box::new(queue), Box::new(tx));
    let (tx, rx) = ipc_shm::ChannelOptions::new()
        .capacity(1 << 13)
        .pair()
        .unwrap();
    check("shm", Box::new(rx), Box::new(tx));
}

trait Rx: Readiness + MessageReceiver + Send {}
impl<T: Readiness + MessageReceiver + Send> Rx for T {}
trait Tx: MessageSender + Send {}
impl<T: MessageSender + Send> Tx for T {}

/// Sends `msg` on `tx` from a thread after a pause (the receiver is asleep by then; if it is
/// not, the test still holds, it just proves less); returns the thread, which returns `tx`.
fn send_later(mut tx: Box<dyn Tx>, msg: &'static [u8]) -> std::thread::JoinHandle<Box<dyn Tx>> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        tx.send(msg).unwrap();
        tx
    })
}

/// `rx` as an endpoint that parks at once, after a receive on a new runtime (returned) parked
/// and was given up after 10 ms: its descriptor is registered with that runtime's reactor.
fn parked_on_a_new_runtime(
    rx: Box<dyn Rx>,
    what: &str,
) -> (AsyncEndpoint<Box<dyn Rx>>, tokio::runtime::Runtime) {
    let mut rx = AsyncEndpoint::new(rx)
        .unwrap()
        .with_yield_policy(YieldPolicy::Park);
    let a = runtime();
    let mut buf = [0u8; 64];
    let r = a.block_on(async {
        tokio::time::timeout(Duration::from_millis(10), rx.recv(&mut buf)).await
    });
    assert!(r.is_err(), "{what}: nothing was sent: {r:?}");
    assert_eq!(rx.wait_stats().parks, 1, "{what}: the receive parked on A");
    (rx, a)
}

/// Receives on `rt` the message `send_later` sends, under the watchdog.
fn recv_on(rt: &tokio::runtime::Runtime, rx: &mut AsyncEndpoint<Box<dyn Rx>>, what: &str) {
    let mut buf = [0u8; 64];
    let n = rt
        .block_on(async { tokio::time::timeout(watchdog(), rx.recv(&mut buf)).await })
        .unwrap_or_else(|_| panic!("{what}: the wait on the new runtime was never woken"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(&buf[..n], b"later", "{what}");
}

/// A receive that parked on runtime A (registering the descriptor with A's reactor), then A
/// shut down: a receive on runtime B parks in B's reactor and is woken by the message. It
/// used to fail with `Io` ("A Tokio 1.x context was found, but it is being shutdown") on
/// every later runtime: the registration stayed with the dead reactor.
#[test]
fn an_endpoint_outlives_the_runtime_it_parked_on() {
    each_kind(|what, rx, tx| {
        let (mut rx, a) = parked_on_a_new_runtime(rx, what);
        drop(a);
        let b = runtime();
        let sender = send_later(tx, b"later");
        recv_on(&b, &mut rx, what);
        sender.join().unwrap();
    });
}

/// A receive future parked on runtime A (polled once: `Pending`), A shut down under it, and
/// the same future then awaited on runtime B: it completes with the message sent while it
/// sleeps in B's reactor (the registration with A's dead reactor used to make it fail with
/// `Io`).
#[test]
fn a_future_parked_on_a_runtime_shut_down_under_it_completes_on_the_next() {
    each_kind(|what, rx, tx| {
        let mut rx = AsyncEndpoint::new(rx)
            .unwrap()
            .with_yield_policy(YieldPolicy::Park);
        let mut buf = [0u8; 64];
        let n = {
            let mut recv = std::pin::pin!(rx.recv(&mut buf));
            let a = runtime();
            let first = a.block_on(async {
                std::future::poll_fn(|cx| std::task::Poll::Ready(recv.as_mut().poll(cx))).await
            });
            assert!(first.is_pending(), "{what}: nothing was sent: {first:?}");
            drop(a);
            let sender = send_later(tx, b"later");
            let n = runtime()
                .block_on(async { tokio::time::timeout(watchdog(), recv).await })
                .unwrap_or_else(|_| panic!("{what}: never woken on the new runtime"))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            sender.join().unwrap();
            n
        };
        assert_eq!(&buf[..n], b"later", "{what}");
    });
}

/// A wait that must sleep on a runtime built without `enable_io` fails with `Io`, its note
/// naming `enable_io` (the documented error); the endpoint then works on a runtime with an
/// I/O driver. It used to panic (tokio's), and the panic lost the endpoint's descriptor:
/// every later wait failed with "the readiness descriptor was lost".
#[test]
fn a_runtime_without_io_is_an_error_that_spares_the_endpoint() {
    each_kind(|what, rx, tx| {
        let mut rx = AsyncEndpoint::new(rx).unwrap();
        let no_io = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let mut buf = [0u8; 64];
        let e = no_io.block_on(rx.recv(&mut buf)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io, "{what}: {e}");
        assert!(e.to_string().contains("enable_io"), "{what}: {e}");
        let sender = send_later(tx, b"later");
        recv_on(&runtime(), &mut rx, what);
        sender.join().unwrap();
    });
}

/// A wait polled outside any runtime panics (tokio's rule, documented); the endpoint then
/// works inside one. It used to lose its descriptor to the panic.
#[test]
fn a_wait_polled_outside_a_runtime_panics_and_spares_the_endpoint() {
    each_kind(|what, rx, tx| {
        let mut rx = AsyncEndpoint::new(rx).unwrap();
        let mut buf = [0u8; 64];
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut recv = std::pin::pin!(rx.recv(&mut buf));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            recv.as_mut().poll(&mut cx).is_pending()
        }));
        assert!(polled.is_err(), "{what}: no panic outside a runtime");
        let sender = send_later(tx, b"later");
        recv_on(&runtime(), &mut rx, what);
        sender.join().unwrap();
    });
}

/// A receive parks on runtime A (thread 1), the endpoint moves to runtime B (thread 2) while
/// A keeps running inside `block_on`: B's receive is woken (through A's reactor, as the
/// "Runtimes" section says).
#[test]
fn an_endpoint_moved_to_a_runtime_on_another_thread_while_the_first_runs_is_woken() {
    each_kind(|what, rx, tx| {
        let rx = AsyncEndpoint::new(rx)
            .unwrap()
            .with_yield_policy(YieldPolicy::Park);
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (hand_over, handed) = std::sync::mpsc::channel();
        let a_done = done.clone();
        let a = std::thread::spawn(move || {
            runtime().block_on(async move {
                let mut rx = rx;
                let mut buf = [0u8; 64];
                let r = tokio::time::timeout(Duration::from_millis(10), rx.recv(&mut buf)).await;
                assert!(r.is_err(), "nothing was sent: {r:?}");
                hand_over.send(rx).unwrap();
                // Runtime A keeps turning its reactor until B is done.
                while !a_done.load(std::sync::atomic::Ordering::Acquire) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        });
        let mut rx = handed.recv().unwrap();
        let sender = send_later(tx, b"later");
        recv_on(&runtime(), &mut rx, what);
        done.store(true, std::sync::atomic::Ordering::Release);
        a.join().unwrap();
        sender.join().unwrap();
    });
}

/// A receive parks on runtime A, which then stays alive but idle (not inside `block_on`);
/// a receive of the same endpoint on runtime B must be woken. It was not while the descriptor
/// stayed in A's reactor, which nobody turns: each park now compares the current runtime's id
/// with the one the descriptor was registered with, and moves it.
#[test]
fn an_endpoint_moved_to_a_second_live_runtime_is_woken() {
    each_kind(|what, rx, tx| {
        let (mut rx, a) = parked_on_a_new_runtime(rx, what);
        let mut buf = [0u8; 64];
        let sender = send_later(tx, b"later");
        let b = runtime();
        let n = b
            .block_on(async {
                tokio::time::timeout(Duration::from_millis(500), rx.recv(&mut buf)).await
            })
            .unwrap_or_else(|_| panic!("{what}: the wait on B was never woken"))
            .unwrap();
        assert_eq!(&buf[..n], b"later", "{what}");
        sender.join().unwrap();
        drop(a);
    });
}

//! The expected path allocates nothing: a receive on an empty queue and a send on a full one,
//! with no wait (would-block) or a short one (timed out), through the queues' own methods and
//! through the core traits, for POSIX and System V queues. The errors still name the queue
//! when displayed.

use std::time::Duration;

use ipc_mq::posix::{self, OpenOptions};
use ipc_mq::prelude::*;
use ipc_mq::sysv::{self, Selector};
use ipc_testkit::alloc::{Counting, allocations};
use ipc_testkit::unique_posix_name;

#[global_allocator]
static ALLOC: Counting = Counting;

const SHORT: Duration = Duration::from_millis(2);

/// Runs `f`, which returns the errors of the expected path, and checks it allocated nothing;
/// then that every error has the kind expected and names `object` when displayed.
fn expect_no_allocation(object: &str, f: impl FnOnce() -> Vec<(Error, ErrorKind)>) {
    let mut errors = Vec::with_capacity(16);
    let n = allocations(|| errors = f());
    // The Vec of results itself is allocated inside `f`; count it out.
    assert_eq!(
        n,
        1,
        "the expected path allocated {} times",
        n.saturating_sub(1)
    );
    for (e, kind) in errors {
        assert_eq!(e.kind(), kind, "{e}");
        let shown = e.to_string();
        assert!(shown.contains(object), "{shown:?} does not name {object:?}");
    }
}

#[test]
fn posix_would_block_and_timeout_do_not_allocate() {
    let name = unique_posix_name("noalloc");
    let mut q = posix::Queue::create(name.as_str(), 1, 16).unwrap();
    let _g = q.remove_guard().unwrap();
    let mut buf = [0u8; 16];
    // Warm up whatever is lazily set up on first use.
    let _ = q.try_recv(&mut buf);
    expect_no_allocation(name.as_str(), || {
        let mut v = Vec::with_capacity(16);
        let wb = ErrorKind::WouldBlock;
        let to = ErrorKind::TimedOut;
        v.push((q.try_recv(&mut buf).unwrap_err(), wb));
        v.push((q.recv_timeout(&mut buf, SHORT).unwrap_err(), to));
        v.push((MessageReceiver::try_recv(&mut q, &mut buf).unwrap_err(), wb));
        v.push((
            MessageReceiver::recv_timeout(&mut q, &mut buf, SHORT).unwrap_err(),
            to,
        ));
        q.try_send_with_priority(b"fills it", 3).unwrap();
        v.push((q.try_send_with_priority(b"x", 0).unwrap_err(), wb));
        v.push((
            q.send_with_priority_timeout(b"x", 0, SHORT).unwrap_err(),
            to,
        ));
        v.push((q.try_send(b"x").unwrap_err(), wb));
        v.push((q.send_timeout(b"x", SHORT).unwrap_err(), to));
        v
    });

    // A non-blocking descriptor waits with poll(2) instead: no allocation either.
    let mut nb = OpenOptions::new()
        .nonblocking(true)
        .open(name.as_str())
        .unwrap();
    let _ = nb.try_recv(&mut buf).unwrap();
    expect_no_allocation(name.as_str(), || {
        let mut v = Vec::with_capacity(16);
        v.push((nb.try_recv(&mut buf).unwrap_err(), ErrorKind::WouldBlock));
        v.push((
            nb.recv_timeout(&mut buf, SHORT).unwrap_err(),
            ErrorKind::TimedOut,
        ));
        nb.try_send(b"fills it").unwrap();
        v.push((nb.try_send(b"x").unwrap_err(), ErrorKind::WouldBlock));
        v.push((
            nb.send_timeout(b"x", SHORT).unwrap_err(),
            ErrorKind::TimedOut,
        ));
        v
    });
    let _ = nb.try_recv(&mut buf).unwrap();

    // A notification that has not fired.
    let n = q.notify().unwrap();
    expect_no_allocation(name.as_str(), || {
        let mut v = Vec::with_capacity(16);
        v.push((n.try_wait().unwrap_err(), ErrorKind::WouldBlock));
        v.push((n.wait_timeout(SHORT).unwrap_err(), ErrorKind::TimedOut));
        v
    });
}

#[test]
fn sysv_would_block_and_timeout_do_not_allocate() {
    let mut q = sysv::Queue::private().unwrap();
    let _g = q.remove_guard();
    q.set_max_bytes(8).unwrap();
    let object = format!("System V queue {}", q.id());
    let mut buf = [0u8; 16];
    // Warm up the per-thread copy buffer of the `&[u8]` methods.
    q.send_typed(1, b"warm").unwrap();
    q.recv_typed(Selector::Any, &mut buf).unwrap();
    expect_no_allocation(&object, || {
        let mut v = Vec::with_capacity(16);
        let wb = ErrorKind::WouldBlock;
        let to = ErrorKind::TimedOut;
        v.push((q.try_recv_typed(Selector::Any, &mut buf).unwrap_err(), wb));
        v.push((
            q.recv_typed_timeout(Selector::Type(2), &mut buf, SHORT)
                .unwrap_err(),
            to,
        ));
        v.push((MessageReceiver::try_recv(&mut q, &mut buf).unwrap_err(), wb));
        v.push((
            MessageReceiver::recv_timeout(&mut q, &mut buf, SHORT).unwrap_err(),
            to,
        ));
        q.try_send_typed(1, b"8 bytes!").unwrap();
        v.push((q.try_send_typed(1, b"x").unwrap_err(), wb));
        v.push((q.send_typed_timeout(1, b"x", SHORT).unwrap_err(), to));
        v.push((q.try_send(b"x").unwrap_err(), wb));
        v.push((q.send_timeout(b"x", SHORT).unwrap_err(), to));
        v
    });
}

//! The expected path of the seqpacket and stream endpoints (would-block on a full or empty
//! socket, timed out) allocates nothing, and their errors still name the socket.

use std::time::Duration;

use ipc_socket::{Deadline, ErrorKind, MessageReceiver, MessageSender, Seqpacket, Stream};
use ipc_testkit::alloc::{Counting, allocations};

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn would_block_and_timed_out_do_not_allocate() {
    let (mut a, mut b) = Seqpacket::pair(1024).unwrap();
    let mut buf = [0u8; 1024];
    // Empty: try_recv, and a receive that times out; with a full-size and a smaller buffer.
    let n = allocations(|| {
        let e = b.try_recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        let e = b.try_recv(&mut buf[..10]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        let e = b
            .recv_deadline(&mut buf, Deadline::after(Duration::from_millis(2)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
    });
    assert_eq!(n, 0, "the empty path allocated {n} times");
    // Full.
    let msg = [7u8; 1000];
    while a.try_send(&msg).is_ok() {}
    let n = allocations(|| {
        let e = a.try_send(&msg).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        let e = a
            .send_deadline(&msg, Deadline::after(Duration::from_millis(2)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
    });
    assert_eq!(n, 0, "the full path allocated {n} times");
    let e = a.try_send(&msg).unwrap_err();
    assert!(e.to_string().contains("seqpacket socket"), "{e}");
    // The ordinary path does not allocate either.
    let n = allocations(|| {
        let k = b.recv(&mut buf).unwrap();
        assert_eq!(k, 1000);
    });
    assert_eq!(n, 0, "a receive allocated {n} times");
}

#[test]
fn the_stream_endpoint_does_not_allocate_when_it_would_block_or_time_out() {
    let (mut a, mut b) = Stream::pair(1024).unwrap();
    let mut buf = [0u8; 1024];
    let n = allocations(|| {
        let e = b.try_recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        let e = b
            .recv_deadline(&mut buf, Deadline::after(Duration::from_millis(2)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
    });
    assert_eq!(n, 0, "the empty path allocated {n} times");
    let msg = [7u8; 1000];
    while a.try_send(&msg).is_ok() {}
    let n = allocations(|| {
        let e = a.try_send(&msg).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        let e = a
            .send_deadline(&msg, Deadline::after(Duration::from_millis(2)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
    });
    assert_eq!(n, 0, "the full path allocated {n} times");
    let e = a.try_send(&msg).unwrap_err();
    assert!(e.object().is_some(), "{e}");
}

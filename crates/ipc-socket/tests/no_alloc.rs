//! The expected path of the seqpacket and stream endpoints (would-block on a full or empty
//! socket, timed out) allocates nothing, and their errors still name the socket.

use ipc_socket::{MessageReceiver, Seqpacket, Stream};
use ipc_testkit::alloc::{
    Counting, allocations, empty_receiver_does_not_allocate, full_sender_does_not_allocate,
};

#[global_allocator]
static ALLOC: Counting = Counting;

const MSG: [u8; 1000] = [7; 1000];

#[test]
fn seqpacket_would_block_and_timed_out_do_not_allocate() {
    let (mut a, mut b) = Seqpacket::pair(1024).unwrap();
    empty_receiver_does_not_allocate(&mut b, "seqpacket socket");
    full_sender_does_not_allocate(&mut a, &MSG, "seqpacket socket");
    // The ordinary path does not allocate either.
    let mut buf = [0u8; 1024];
    let n = allocations(|| {
        let k = b.recv(&mut buf).unwrap();
        assert_eq!(k, MSG.len());
    });
    assert_eq!(n, 0, "a receive allocated {n} times");
}

#[test]
fn stream_would_block_and_timed_out_do_not_allocate() {
    let (mut a, mut b) = Stream::pair(1024).unwrap();
    empty_receiver_does_not_allocate(&mut b, "stream");
    full_sender_does_not_allocate(&mut a, &MSG, "stream");
}

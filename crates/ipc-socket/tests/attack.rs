//! Attacks on ipc-socket's promises that the other test files leave alone, each test's doc comment saying which promise and how it fails when broken.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use ipc_socket::seqpacket::MAX_FDS;
use ipc_socket::{Deadline, ErrorKind, MessageReceiver, MessageSender, Seqpacket};
use ipc_testkit::within_watchdog;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

fn secs(n: u64) -> Deadline {
    Deadline::after(Duration::from_secs(n))
}

/// A connected Unix socket pair of `ty`, to wrap each end with a maximum of its own (or
/// none: a peer that is not this library).
fn raw_pair(ty: SocketType) -> (OwnedFd, OwnedFd) {
    rustix::net::socketpair(AddressFamily::UNIX, ty, SocketFlags::CLOEXEC, None).unwrap()
}

/// Whether the pipe whose read end is `r` has no writer left: a read returns end of file
/// (polled first, 30 s at most, so a leaked writer fails the test instead of hanging it).
fn writer_gone(r: BorrowedFd<'_>) -> bool {
    let mut fds = [rustix::event::PollFd::new(&r, rustix::event::PollFlags::IN)];
    let t = rustix::time::Timespec {
        tv_sec: 30,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut fds, Some(&t)).unwrap() == 0 {
        return false;
    }
    let mut b = [0u8; 1];
    rustix::io::read(r, &mut b).unwrap() == 0
}

/// `msg` with `n` copies of `fd`, sent raw (`sendmsg`, no trailer: `msg` must not end with
/// `TAG`), as a peer that is not this library may: more than [`MAX_FDS`] if it likes.
fn send_raw_with_fds(sock: BorrowedFd<'_>, msg: &[u8], fd: BorrowedFd<'_>, n: usize) {
    let many: Vec<BorrowedFd<'_>> = (0..n).map(|_| fd).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(n))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&many)));
    rustix::net::sendmsg(
        sock,
        &[IoSlice::new(msg)],
        &mut control,
        rustix::net::SendFlags::empty(),
    )
    .unwrap();
}

/// A peer configured for larger messages sends a record above this endpoint's maximum with a
/// descriptor, to `recv_with_fds` with a buffer of at least the maximum (the direct `recvmsg`
/// path; a smaller buffer takes the held path, which `hostile.rs` covers): the error is
/// `MessageTooLarge`, the record is dropped, and its descriptor is closed with it. It must not
/// be appended to the caller's list, where it would pass for the next message's descriptor
/// (a peer slipping a descriptor into a later message) and stay open. Fails with the
/// descriptor appended before the length check.
#[test]
fn descriptors_of_a_record_above_the_maximum_are_closed_with_it() {
    within_watchdog("descriptors of an oversized record", || {
        // (the endpoint's maximum, the receive buffer): a small endpoint and a larger one,
        // with a buffer of exactly the maximum and a longer one.
        for (max, room) in [(64, 64), (64, 100), (8192, 8192), (8192, 9000)] {
            let (a, b) = raw_pair(SocketType::SEQPACKET);
            let mut big = Seqpacket::from_fd(a, 1 << 16).unwrap();
            let mut rx = Seqpacket::from_fd(b, max).unwrap();
            let (r, w) = rustix::pipe::pipe().unwrap();
            big.send_with_fds(&vec![1u8; room + 2], &[w.as_fd()], secs(30))
                .unwrap();
            drop(w);
            big.send(b"next").unwrap();
            let mut buf = vec![0u8; room];
            let mut fds = Vec::new();
            let e = rx.recv_with_fds(&mut buf, &mut fds, secs(30)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{max}/{room}: {e}");
            assert!(
                fds.is_empty(),
                "{max}/{room}: the dropped record's descriptor was handed to the caller"
            );
            assert!(
                writer_gone(r.as_fd()),
                "{max}/{room}: the dropped record's descriptor is still open"
            );
            let n = rx.recv_with_fds(&mut buf, &mut fds, secs(30)).unwrap();
            assert_eq!(&buf[..n], b"next", "{max}/{room}");
            assert!(fds.is_empty(), "{max}/{room}");
        }
    });
}

/// A message whose descriptors the kernel truncated (`MSG_CTRUNC`: a peer that is not this
/// library sent more than [`MAX_FDS`]) is first received by a plain `recv` with a buffer too
/// small for it (`MessageTooLarge`: held, descriptors and all), then by `recv_with_fds` with
/// room: that receive must say the descriptors were truncated (`LimitExceeded`, as when it
/// meets the message first), not return the message as if it had come with none. The next
/// message is intact. Fails when the held message forgets the truncation.
#[test]
fn a_held_message_with_truncated_descriptors_is_limit_exceeded_to_recv_with_fds() {
    within_watchdog("held message with truncated descriptors", || {
        let (a, b) = raw_pair(SocketType::SEQPACKET);
        let mut rx = Seqpacket::from_fd(b, 8192).unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        send_raw_with_fds(a.as_fd(), &[1u8; 200], w.as_fd(), MAX_FDS + 6);
        drop(w);
        let mut tx = Seqpacket::from_fd(a, 8192).unwrap();
        tx.send(b"after").unwrap();
        let e = rx.recv(&mut [0u8; 16]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        let mut buf = vec![0u8; 8192];
        let mut fds = Vec::new();
        let e = rx
            .recv_with_fds(&mut buf, &mut fds, secs(30))
            .expect_err("a message whose descriptors were truncated came back as whole");
        assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
        assert!(e.to_string().contains("MSG_CTRUNC"), "{e}");
        assert!(fds.is_empty());
        assert!(writer_gone(r.as_fd()), "a truncated set's descriptor leaked");
        let n = rx.recv_with_fds(&mut buf, &mut fds, secs(30)).unwrap();
        assert_eq!(&buf[..n], b"after");
        assert!(fds.is_empty());
        // A plain receive of such a message still gets it: it never asked for descriptors.
        let (r, w) = rustix::pipe::pipe().unwrap();
        send_raw_with_fds(tx.as_fd(), &[2u8; 200], w.as_fd(), MAX_FDS + 6);
        drop(w);
        let e = rx.recv(&mut [0u8; 16]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        assert_eq!(rx.recv(&mut buf).unwrap(), 200);
        assert!(writer_gone(r.as_fd()));
    });
}

/// Exactly [`MAX_FDS`] descriptors, the most `send_with_fds` takes, all arrive with their
/// message on every receive path that takes descriptors (a buffer smaller than the maximum,
/// exactly the maximum, longer), none truncated. Passes on the code as it is: guards the
/// control buffer's size against an off-by-one (one descriptor fewer of room would make every
/// full message `LimitExceeded`).
#[test]
fn the_most_descriptors_a_message_takes_all_arrive() {
    within_watchdog("MAX_FDS descriptors", || {
        for (max, room) in [(64, 10), (64, 64), (8192, 100), (8192, 8192), (8192, 9000)] {
            let (mut a, mut b) = Seqpacket::pair(max).unwrap();
            let (r, w) = rustix::pipe::pipe().unwrap();
            let many: Vec<BorrowedFd<'_>> = (0..MAX_FDS).map(|_| w.as_fd()).collect();
            a.send_with_fds(b"many", &many, secs(30)).unwrap();
            let e = a
                .send_with_fds(b"too many", &[many.as_slice(), &[w.as_fd()]].concat(), secs(30))
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            drop(many);
            drop(w);
            let mut buf = vec![0u8; room];
            let mut fds = Vec::new();
            let n = b.recv_with_fds(&mut buf, &mut fds, secs(30)).unwrap();
            assert_eq!(&buf[..n], b"many", "{max}/{room}");
            assert_eq!(fds.len(), MAX_FDS, "{max}/{room}");
            drop(fds);
            assert!(writer_gone(r.as_fd()), "{max}/{room}");
        }
    });
}

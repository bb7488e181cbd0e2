//! The seqpacket wire format's edge cases: a message is its own record unless it is empty or
//! ends with the trailer byte `TAG`. Empty messages (and an empty message right before the
//! close) are not the end of the connection, descriptors with an empty payload arrive, messages
//! ending with `TAG` keep it, at every receive path (own buffer, a buffer of exactly the
//! maximum, a larger one, a smaller one); a record longer than the maximum is reported and
//! dropped, never cut into a wrong message, even when a tagged message of the maximum's
//! length would have looked the same in the receiver's buffer.

use std::os::fd::{AsFd, OwnedFd};

use ipc_socket::seqpacket::TAG;
use ipc_socket::{Deadline, ErrorKind, MessageReceiver, MessageSender, Seqpacket};
use ipc_testkit::within_watchdog;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, socketpair};

/// A raw seqpacket pair: the peer a program that is not this library would be.
fn raw_pair() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap()
}

/// Messages of `max` bytes or fewer, ending with `TAG` or not, empty among them.
fn samples(max: usize) -> Vec<Vec<u8>> {
    let mut v = vec![
        Vec::new(),
        vec![TAG],
        vec![0],
        vec![TAG, TAG],
        b"abc".to_vec(),
    ];
    for len in [max - 1, max] {
        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut tagged = body.clone();
        *tagged.last_mut().unwrap() = TAG;
        let mut plain = body;
        *plain.last_mut().unwrap() = TAG ^ 1;
        v.push(tagged);
        v.push(plain);
    }
    v
}

/// Every sample arrives whole and in order through buffers of `max - 1` (the held path),
/// `max` (directly with a spare byte, or the own buffer for a small endpoint) and `max + 1`
/// (one plain receive), then the close is `Disconnected`.
#[test]
fn every_message_survives_every_receive_path() {
    within_watchdog("every_message_survives_every_receive_path", || {
        for max in [1000, 4096, 100_000] {
            for room in [max - 1, max, max + 1] {
                let (mut a, mut b) = Seqpacket::pair(max).unwrap();
                let msgs = samples(max);
                // More than the socket holds: sent from a thread, then closed.
                let sender = {
                    let msgs = msgs.clone();
                    std::thread::spawn(move || {
                        for m in &msgs {
                            a.send(m).unwrap();
                        }
                    })
                };
                let mut buf = vec![0u8; room];
                for m in &msgs {
                    let n = match b.recv(&mut buf) {
                        Ok(n) => n,
                        Err(e) => {
                            // Only a message longer than the buffer, kept for a larger one.
                            assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{max}/{room}");
                            assert_eq!(e.message_size(), Some((m.len(), room)));
                            let mut big = vec![0u8; max];
                            let n = b.recv(&mut big).unwrap();
                            assert_eq!(&big[..n], &m[..], "{max}/{room}");
                            continue;
                        }
                    };
                    assert_eq!(&buf[..n], &m[..], "{max}/{room}: {} bytes", m.len());
                }
                sender.join().unwrap();
                let e = b.recv(&mut buf).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{max}/{room}: {e}");
            }
        }
    });
}

/// An empty message right before the close, on both kinds of endpoint: the message, then the
/// end. An empty message with descriptors brings them.
#[test]
fn empty_message_then_close_and_descriptors_with_no_bytes() {
    within_watchdog("empty_message_then_close", || {
        for max in [64, 100_000] {
            let (mut a, mut b) = Seqpacket::pair(max).unwrap();
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
            a.send_with_fds(b"", &[w.as_fd()], Deadline::Never).unwrap();
            a.send_with_fds(&[TAG], &[w.as_fd(), r.as_fd()], Deadline::Never)
                .unwrap();
            a.send(b"").unwrap();
            drop(a);
            let mut buf = vec![0u8; max];
            let mut fds = Vec::new();
            assert_eq!(
                b.recv_with_fds(&mut buf, &mut fds, Deadline::Never)
                    .unwrap(),
                0
            );
            assert_eq!(fds.len(), 1, "{max}");
            rustix::io::write(&fds[0], b"!").unwrap();
            let mut one = [0u8; 1];
            assert_eq!(rustix::io::read(&r, &mut one).unwrap(), 1);
            fds.clear();
            assert_eq!(
                b.recv_with_fds(&mut buf, &mut fds, Deadline::Never)
                    .unwrap(),
                1
            );
            assert_eq!(buf[0], TAG);
            assert_eq!(fds.len(), 2, "{max}");
            assert_eq!(b.recv(&mut buf).unwrap(), 0, "{max}");
            let e = b.recv(&mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{max}: {e}");
        }
    });
}

/// What goes on the wire, read by a program that is not this library, and what such a
/// program's records mean to this library.
#[test]
fn the_wire_format_is_the_message_plus_a_trailer_when_needed() {
    let (ours, theirs) = raw_pair();
    let mut end = Seqpacket::from_fd(ours, 64).unwrap();
    let mut raw = [0u8; 80];
    let mut read = |fd: &OwnedFd| {
        let (n, len) = rustix::net::recv(fd, &mut raw, RecvFlags::TRUNC).unwrap();
        assert_eq!(n, len);
        raw[..n].to_vec()
    };
    for (msg, wire) in [
        (&b"abc"[..], &b"abc"[..]),
        (b"", &[TAG]),
        (&[TAG], &[TAG, TAG]),
        (&[1, TAG], &[1, TAG, TAG]),
        (&[TAG, 1], &[TAG, 1]),
    ] {
        end.send(msg).unwrap();
        assert_eq!(read(&theirs), wire, "{msg:?}");
        rustix::net::send(&theirs, wire, SendFlags::empty()).unwrap();
        let mut buf = [0u8; 64];
        let n = end.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], msg, "{wire:?}");
    }
    // An empty record is the end of the connection, as the close is.
    rustix::net::send(&theirs, b"", SendFlags::empty()).unwrap();
    let e = end.recv(&mut [0u8; 64]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

/// A peer configured for larger messages sends one byte more than this endpoint's maximum:
/// reported and dropped at every receive path (or delivered whole when the caller's buffer
/// holds it, on an endpoint above 4 KiB), including the one record that matches a tagged
/// message of the maximum's length in the receiver's buffer (its last byte but one is `TAG`);
/// the next message arrives whole.
#[test]
fn a_record_above_the_maximum_is_reported_never_cut() {
    within_watchdog("a_record_above_the_maximum_is_reported_never_cut", || {
        for max in [1000, 4096, 100_000] {
            for room in [max - 1, max, max + 1] {
                let (x, y) = raw_pair();
                let mut big = Seqpacket::from_fd(x, max + 10).unwrap();
                let mut small = Seqpacket::from_fd(y, max).unwrap();
                let mut over: Vec<u8> = vec![7; max + 1];
                over[max - 1] = TAG;
                big.send(&over).unwrap();
                // Tagged: a record of `max + 2` bytes.
                over[max] = TAG;
                big.send(&over).unwrap();
                big.send(b"next").unwrap();
                let mut buf = vec![0u8; room];
                for i in 0..2 {
                    if i == 0 && room > max && max > 4096 {
                        // It fits the caller's buffer: delivered whole, as it was sent.
                        let mut sent = over.clone();
                        sent[max] = 7;
                        assert_eq!(small.recv(&mut buf).unwrap(), max + 1);
                        assert_eq!(buf, sent, "{max}/{room}");
                        continue;
                    }
                    let e = small.recv(&mut buf).unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{max}/{room}: {e}");
                }
                assert_eq!(small.recv(&mut buf).unwrap(), 4, "{max}/{room}");
                assert_eq!(&buf[..4], b"next");
            }
        }
    });
}

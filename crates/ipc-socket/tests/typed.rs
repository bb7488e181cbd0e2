//! Typed messages (feature `serde`) over several kinds of endpoint, and the hostile-input
//! promises: size limit before decoding (over a seqpacket and a stream, and a peer above the
//! endpoint's maximum), malformed bytes are `Corrupted`, never a panic or an unbounded
//! allocation (fuzzed with proptest).
#![cfg(feature = "serde")]

use std::collections::BTreeMap;
use std::time::Duration;

use ipc_socket::typed::decode;
use ipc_socket::{
    Deadline, ErrorKind, MessageReceiver, MessageSender, Seqpacket, Stream, TypedReceiver,
    TypedSender,
};
use ipc_testkit::within_watchdog;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Circle { r: f64 },
    Poly(Vec<(i32, i32)>),
    Named(String),
    Empty,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Msg {
    id: u64,
    tags: BTreeMap<String, i64>,
    shapes: Vec<Shape>,
    blob: Vec<u8>,
    flag: Option<bool>,
}

fn sample(id: u64) -> Msg {
    Msg {
        id,
        tags: [("a".to_string(), -1), ("bb".to_string(), i64::MAX)].into(),
        shapes: vec![
            Shape::Circle { r: 1.5 },
            Shape::Poly(vec![(1, 2), (-3, 4)]),
            Shape::Named("é".into()),
            Shape::Empty,
        ],
        blob: vec![9; 100],
        flag: Some(true),
    }
}

fn round_trip<S: MessageSender, R: MessageReceiver>(tx: S, rx: R) {
    let mut tx = TypedSender::<Msg, _>::new(tx);
    let mut rx = TypedReceiver::<Msg, _>::new(rx);
    for id in 0..10 {
        tx.send(&sample(id)).unwrap();
    }
    for id in 0..10 {
        assert_eq!(rx.recv().unwrap(), sample(id));
    }
    let e = rx
        .recv_deadline(Deadline::after(Duration::from_millis(5)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
}

#[test]
fn typed_over_seqpacket_stream_and_a_pipe() {
    within_watchdog("typed_over_seqpacket_stream_and_a_pipe", || {
        let (a, b) = Seqpacket::pair(4096).unwrap();
        round_trip(a, b);
        let (a, b) = Stream::pair(4096).unwrap();
        round_trip(a, b);
        // Not a socket at all: any MessageSender / MessageReceiver.
        let (tx, rx) = ipc_pipe::channel(ipc_pipe::FrameMode::Atomic).unwrap();
        round_trip(tx, rx);
    });
}

/// A 100-byte message to a typed receiver of limit 64 on `b`: `MessageTooLarge` before any
/// decoding, and still there for a receive with room for it.
fn refused_and_left_queued<S: MessageSender, R: MessageReceiver>(mut a: S, b: R) {
    let mut rx = TypedReceiver::<Vec<u8>, _>::with_limit(b, 64);
    a.send(&[0u8; 100]).unwrap();
    let e = rx.recv_deadline(Deadline::Now).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    let mut buf = [0u8; 200];
    assert_eq!(rx.get_mut().recv(&mut buf).unwrap(), 100);
}

#[test]
fn too_large_is_refused_before_decoding_and_stays_queued() {
    within_watchdog(
        "too_large_is_refused_before_decoding_and_stays_queued",
        || {
            let (a, b) = Seqpacket::pair(4096).unwrap();
            refused_and_left_queued(a, b);
            // A sender refuses what the endpoint cannot carry.
            let (c, _d) = Seqpacket::pair(16).unwrap();
            let mut tx = TypedSender::<Vec<u8>, _>::new(c);
            let e = tx.send(&vec![1u8; 100]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        },
    );
}

#[test]
fn malformed_bytes_are_corrupted() {
    within_watchdog("malformed_bytes_are_corrupted", || {
        let (mut a, b) = Seqpacket::pair(4096).unwrap();
        let mut rx = TypedReceiver::<Msg, _>::new(b);
        for bad in [
            &[][..],
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ][..],
            // id 1, then a map announcing 2^32 entries with nothing behind it.
            &[1, 0xff, 0xff, 0xff, 0xff, 0x0f][..],
            // An enum tag out of range inside the shapes.
            &[1, 0, 1, 9][..],
        ] {
            a.send(bad).unwrap();
            let e = rx.recv().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{bad:?}: {e}");
        }
        // Trailing bytes after a whole value.
        let mut ok = ipc_socket::typed::encode(&sample(1)).unwrap();
        ok.push(0);
        a.send(&ok).unwrap();
        assert_eq!(rx.recv().unwrap_err().kind(), ErrorKind::Corrupted);
        // And the endpoint goes on.
        a.send(&ipc_socket::typed::encode(&sample(2)).unwrap())
            .unwrap();
        assert_eq!(rx.recv().unwrap(), sample(2));
    });
}

/// The varint postcard writes for a count.
fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

#[derive(Debug, PartialEq, Deserialize, Serialize)]
struct Marker;

#[derive(Debug, PartialEq, Deserialize, Serialize)]
enum Holder {
    Empty,
    Markers(Vec<Marker>),
    Named { markers: Vec<()> },
}

#[derive(Debug, PartialEq, Deserialize, Serialize)]
struct OneByte {
    id: u8,
}

/// The element budget counts what the wire's lengths announce, never a tuple's or a struct's
/// fields (postcard visits those as sequences too): honest messages of one-byte tuples and
/// structs, more than one field per byte of the message, decode. They were `Corrupted` when
/// fields counted.
#[test]
fn tuples_and_structs_are_not_counted_against_the_element_budget() {
    let pairs: Vec<(u8, u8)> = (0..200_000u32).map(|i| (i as u8, (i >> 8) as u8)).collect();
    let bytes = ipc_socket::typed::encode(&pairs).unwrap();
    assert_eq!(decode::<Vec<(u8, u8)>>(&bytes).unwrap(), pairs);
    let structs: Vec<OneByte> = (0..200_000u32).map(|i| OneByte { id: i as u8 }).collect();
    let bytes = ipc_socket::typed::encode(&structs).unwrap();
    assert_eq!(decode::<Vec<OneByte>>(&bytes).unwrap(), structs);
}

/// Elements that take no bytes never run out of bytes: a peer announcing 2^64 of them in ten
/// bytes kept the decoding thread busy for good (postcard takes them one at a time). Every
/// place a sequence or map can hide (top level, nested, in an `Option`, a newtype variant, a
/// struct variant, map keys) is `Corrupted` at the cap, soon; counts within it decode. Fails
/// (at the watchdog) without the element budget.
#[test]
fn zero_sized_elements_beyond_the_budget_are_corrupted_not_a_hang() {
    within_watchdog("zero-sized elements", || {
        let huge = varint(u64::MAX);
        let corrupted = |what: &str, r: ipc_socket::Result<()>| {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{what}: {e}");
            assert!(e.to_string().contains("more elements"), "{what}: {e}");
        };
        corrupted("Vec<()>", decode::<Vec<()>>(&huge).map(drop));
        corrupted("Vec<Marker>", decode::<Vec<Marker>>(&huge).map(drop));
        corrupted(
            "BTreeMap<(), ()>",
            decode::<BTreeMap<(), ()>>(&huge).map(drop),
        );
        let some = [&[1u8][..], &huge].concat();
        corrupted(
            "Option<Vec<()>>",
            decode::<Option<Vec<()>>>(&some).map(drop),
        );
        let newtype = [&[1u8][..], &huge].concat();
        corrupted("Holder::Markers", decode::<Holder>(&newtype).map(drop));
        let named = [&[2u8][..], &huge].concat();
        corrupted("Holder::Named", decode::<Holder>(&named).map(drop));
        // Counted over the whole message: three sequences of 30,000 each.
        let nested = [varint(3), varint(30_000), varint(30_000), varint(30_000)].concat();
        corrupted("Vec<Vec<()>>", decode::<Vec<Vec<()>>>(&nested).map(drop));
        // Within the budget: what an honest sender's zero-sized elements look like.
        let fine = varint(60_000);
        assert_eq!(decode::<Vec<()>>(&fine).unwrap().len(), 60_000);
        let fine = [varint(2), varint(30_000), varint(30_000)].concat();
        assert_eq!(decode::<Vec<Vec<()>>>(&fine).unwrap().len(), 2);
        assert_eq!(
            decode::<Holder>(
                &ipc_socket::typed::encode(&Holder::Markers(vec![Marker, Marker])).unwrap()
            )
            .unwrap(),
            Holder::Markers(vec![Marker, Marker])
        );
        assert_eq!(
            decode::<Holder>(&ipc_socket::typed::encode(&Holder::Empty).unwrap()).unwrap(),
            Holder::Empty
        );
        // Elements of a byte or more never reach the cap: 200,000 bytes in one message.
        let bytes: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let wire = ipc_socket::typed::encode(&bytes).unwrap();
        assert_eq!(decode::<Vec<u8>>(&wire).unwrap(), bytes);
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes never panic the decoder: a value or `Corrupted`.
    #[test]
    fn arbitrary_bytes_decode_or_are_corrupted(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        match decode::<Msg>(&bytes) {
            Ok(_) => {}
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Corrupted),
        }
        match decode::<Vec<Vec<String>>>(&bytes) {
            Ok(_) => {}
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Corrupted),
        }
        match ipc_socket::typed::decode_borrowed::<BlobView<'_>>(&bytes) {
            Ok(v) => prop_assert!(v.data.len() + v.name.len() < bytes.len()),
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Corrupted),
        }
    }

    /// Valid encodings with bytes flipped or cut: a value or `Corrupted`, never a panic.
    #[test]
    fn mutated_encodings_decode_or_are_corrupted(
        id in any::<u64>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = ipc_socket::typed::encode(&sample(id)).unwrap();
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= v;
        }
        let cut = cut.index(bytes.len() + 1);
        for b in [&bytes[..], &bytes[..cut]] {
            if let Err(e) = decode::<Msg>(b) {
                prop_assert_eq!(e.kind(), ErrorKind::Corrupted);
            }
        }
    }

    /// Round trips of arbitrary values.
    #[test]
    fn values_round_trip(id in any::<u64>(), blob in proptest::collection::vec(any::<u8>(), 0..300), name in ".{0,40}") {
        let mut m = sample(id);
        m.blob = blob;
        m.shapes.push(Shape::Named(name));
        let bytes = ipc_socket::typed::encode(&m).unwrap();
        prop_assert_eq!(decode::<Msg>(&bytes).unwrap(), m);
    }
}

/// The docs' advice for byte buffers: `serde_bytes` writes one byte string, which postcard
/// lays out exactly as the element-by-element sequence (a varint length, then the bytes), so
/// either side can switch without breaking the other; and it goes over an endpoint intact.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Blob {
    id: u32,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct PlainBlob {
    id: u32,
    data: Vec<u8>,
}

#[test]
fn byte_strings_are_compact_and_match_the_sequence_encoding() {
    within_watchdog("byte_strings", || {
        let data: Vec<u8> = (0..65_536u32).map(|i| (i * 31 % 256) as u8).collect();
        let blob = Blob {
            id: 7,
            data: data.clone(),
        };
        let plain = PlainBlob { id: 7, data };
        let bytes = ipc_socket::typed::encode(&blob).unwrap();
        // One byte for the id, three for the varint 65536, then the bytes themselves.
        assert_eq!(bytes.len(), 1 + 3 + 65_536);
        assert_eq!(bytes, ipc_socket::typed::encode(&plain).unwrap());
        assert_eq!(decode::<PlainBlob>(&bytes).unwrap(), plain);

        let (a, b) = Seqpacket::pair(70_000).unwrap();
        let mut tx = TypedSender::<Blob, _>::new(a);
        let mut rx = TypedReceiver::<Blob, _>::new(b);
        tx.send(&blob).unwrap();
        assert_eq!(rx.recv().unwrap(), blob);
        // And as a bare byte string, the way the benchmark's typed row sends it.
        let mut tx = TypedSender::<serde_bytes::Bytes, _>::new(tx.into_inner());
        let mut rx = TypedReceiver::<serde_bytes::ByteBuf, _>::new(rx.into_inner());
        tx.send(serde_bytes::Bytes::new(&blob.data)).unwrap();
        assert_eq!(rx.recv().unwrap().into_vec(), blob.data);
    });
}

/// The borrowing form of [`Blob`] and a name: what `recv_borrowed` decodes without allocating.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct BlobView<'a> {
    id: u32,
    #[serde(borrow, with = "serde_bytes")]
    data: &'a [u8],
    name: &'a str,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct NamedBlob {
    id: u32,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
    name: String,
}

#[test]
fn borrowed_receive_decodes_in_place_with_the_same_checks() {
    within_watchdog("borrowed_receive", || {
        let (a, b) = Seqpacket::pair(70_000).unwrap();
        let mut tx = TypedSender::<NamedBlob, _>::new(a);
        let mut rx = TypedReceiver::<NamedBlob, _>::new(b);
        let data: Vec<u8> = (0..65_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for id in 0..3 {
            let owned = NamedBlob {
                id,
                data: data.clone(),
                name: format!("blob {id}"),
            };
            tx.send(&owned).unwrap();
            let view: BlobView<'_> = rx.recv_borrowed(Deadline::Never).unwrap();
            assert_eq!(
                (view.id, view.data, view.name),
                (id, &data[..], &*owned.name)
            );
        }
        // The owned and the borrowed receive read the same wire format, in any order.
        tx.send(&NamedBlob {
            id: 9,
            data: vec![1, 2],
            name: "x".into(),
        })
        .unwrap();
        tx.send(&NamedBlob {
            id: 10,
            data: vec![3],
            name: "y".into(),
        })
        .unwrap();
        assert_eq!(rx.recv().unwrap().id, 9);
        let v: &serde_bytes::Bytes = {
            // A bare byte string is not a NamedBlob: Corrupted, and the endpoint goes on.
            let e = rx
                .recv_borrowed::<&serde_bytes::Bytes>(Deadline::Never)
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
            tx.get_mut().send(&[2, 0xaa, 0xbb]).unwrap();
            rx.recv_borrowed(Deadline::Never).unwrap()
        };
        assert_eq!(&v[..], &[0xaa, 0xbb]);
        // Malformed: a length running past the end, invalid UTF-8, trailing bytes.
        for bad in [
            &[1, 200, 1][..],
            &[1, 1, 0, 2, 0xff, 0xfe][..],
            &[1, 0, 0, 7][..],
        ] {
            tx.get_mut().send(bad).unwrap();
            let e = rx.recv_borrowed::<BlobView<'_>>(Deadline::Now).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{bad:?}: {e}");
        }
        // Too large for the limit: refused before decoding and left queued.
        let (mut c, d) = Seqpacket::pair(4096).unwrap();
        let mut small = TypedReceiver::<NamedBlob, _>::with_limit(d, 64);
        c.send(&[0u8; 100]).unwrap();
        let e = small
            .recv_borrowed::<BlobView<'_>>(Deadline::Now)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        let mut buf = [0u8; 200];
        assert_eq!(small.get_mut().recv(&mut buf).unwrap(), 100);
        // Empty: the endpoint's own error.
        let e = small
            .recv_borrowed::<BlobView<'_>>(Deadline::Now)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    });
}

/// A connected Unix socket pair of `ty`, to wrap each end with a maximum of its own.
fn raw_pair(ty: rustix::net::SocketType) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        ty,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap()
}

#[test]
fn the_limit_over_a_stream_and_a_peer_above_the_endpoint_maximum() {
    within_watchdog("typed limit over a stream", || {
        // Within the endpoint's maximum, above the receiver's limit: refused, left queued.
        let (a, b) = Stream::pair(4096).unwrap();
        refused_and_left_queued(a, b);
        // A peer breaking the endpoint's maximum: never decoded. A seqpacket record is
        // MessageTooLarge and dropped (the next message follows); so is a stream's frame.
        let (one, other) = raw_pair(rustix::net::SocketType::SEQPACKET);
        let mut big = Seqpacket::from_fd(one, 1 << 17).unwrap();
        let small = Seqpacket::from_fd(other, 4096).unwrap();
        let mut rx = TypedReceiver::<Vec<u8>, _>::new(small);
        big.send(&vec![1u8; 100_000]).unwrap();
        TypedSender::<Vec<u8>, _>::new(&mut big)
            .send(&vec![2u8; 3])
            .unwrap();
        let e = rx.recv_deadline(Deadline::Now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        assert_eq!(rx.recv_deadline(Deadline::Now).unwrap(), vec![2u8; 3]);
        let (one, other) = raw_pair(rustix::net::SocketType::STREAM);
        let mut big = Stream::from_fd(one, 1 << 17).unwrap();
        let small = Stream::from_fd(other, 4096).unwrap();
        let mut rx = TypedReceiver::<Vec<u8>, _>::new(small);
        big.send(&vec![1u8; 100_000]).unwrap();
        TypedSender::<Vec<u8>, _>::new(&mut big)
            .send(&vec![2u8; 3])
            .unwrap();
        let e = rx.recv_deadline(Deadline::Now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        assert_eq!(e.message_size(), Some((100_000, 4096)), "{e}");
        assert_eq!(rx.recv_deadline(Deadline::Now).unwrap(), vec![2u8; 3]);
    });
}

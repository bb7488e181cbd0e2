//! Request-reply: several requests in flight matched by id, per-request deadlines, a server
//! answering many clients over a listener, a server that dies failing every pending request
//! with `Disconnected` (also a `serve` process with several clients killed in the middle of a
//! reply) and still delivering the replies that arrived, a stopped server answering the
//! request in hand, and replies and requests above the first 16 MiB buffer.

use std::time::Duration;

use ipc_socket::rpc::{Client, Pair, Stop, serve, serve_connection, serve_until_stopped};
use ipc_socket::{Address, Deadline, ErrorKind, Listener, Options, Seqpacket, Stream};
use ipc_testkit::{Ctx, TempDir, roles, spawn, within_watchdog};

fn secs(n: u64) -> Deadline {
    Deadline::after(Duration::from_secs(n))
}

/// Reverses the request.
fn reverse(req: &[u8], out: &mut Vec<u8>) {
    out.extend(req.iter().rev());
}

/// Child: accepts one client on the path in its argument, reads requests and never answers,
/// until killed.
fn silent_server(ctx: &Ctx) {
    let l: Listener<Seqpacket> =
        Listener::bind(&Address::path(ctx.arg()), &Options::new()).unwrap();
    ctx.checkpoint("listening");
    let mut s = l.accept(secs(60)).unwrap();
    let mut buf = [0u8; 256];
    for _ in 0..3 {
        ipc_socket::MessageReceiver::recv(&mut s, &mut buf).unwrap();
    }
    ctx.park("got 3 requests");
}

/// The reply to a `big` request of [`serve_then_die_mid_reply`]: far more than the socket
/// buffers hold, so the server is still writing it while the client reads nothing.
const BIG_REPLY: usize = 8 << 20;

/// Child: `rpc::serve` on the stream socket path in its argument (16 MiB messages): `echo`
/// is answered, `park` parks its client's thread for good, `big` gets a reply of
/// [`BIG_REPLY`] bytes. Killed by the test.
fn serve_then_die_mid_reply(ctx: &Ctx) {
    let opts = Options::new().max_message(16 << 20);
    let l: Listener<Stream> = Listener::bind(&Address::path(ctx.arg()), &opts).unwrap();
    ctx.checkpoint("listening");
    serve(
        &l,
        Deadline::Never,
        |req: &[u8], out: &mut Vec<u8>| match req {
            b"park" => loop {
                std::thread::park();
            },
            b"big" => out.resize(BIG_REPLY, 7),
            _ => out.extend_from_slice(req),
        },
    )
    .unwrap();
}

/// The descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Child (alone in its process, so no other test's descriptors come and go): rounds of a
/// server stopped by several threads at once while a client is mid-request, and by a stop
/// given again and again; the request in hand is answered, the client's next one fails with
/// `Disconnected`, each server returns with its client still connected, and nothing is left
/// open.
fn stops_leave_nothing(_: &Ctx) {
    let dir = TempDir::new("rpc-stops");
    let before = open_fds();
    for round in 0..20 {
        let addr = Address::path(dir.join(&format!("s{round}")));
        let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
        let stop = Stop::new().unwrap();
        std::thread::scope(|s| {
            let server = s.spawn(|| {
                serve_until_stopped(&l, &stop, Deadline::Never, |q: &[u8], out: &mut Vec<u8>| {
                    if q == b"stop" {
                        // Stopped from inside a request, by four threads at once.
                        std::thread::scope(|t| {
                            for _ in 0..4 {
                                t.spawn(|| stop.stop());
                            }
                        });
                    }
                    reverse(q, out)
                })
            });
            let conn = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
            let mut c = Client::new(conn);
            let mut buf = [0u8; 64];
            let n = c.call(b"stop", &mut buf, secs(30)).unwrap();
            assert_eq!(&buf[..n], b"pots");
            for _ in 0..100 {
                stop.stop();
            }
            server.join().unwrap().unwrap();
            let e = c.call(b"ab", &mut buf, secs(30)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            assert_eq!(c.in_flight(), 0);
            drop(c);
        });
        assert!(stop.is_stopped());
    }
    assert_eq!(open_fds(), before, "descriptors left by stopped servers");
    eprintln!("checked");
}

/// Child: accepts one client on the path in its argument, answers its first request (the
/// reply is the request itself: same id, same payload) and reads nothing more, until killed.
fn answer_one_then_park(ctx: &Ctx) {
    let l: Listener<Seqpacket> =
        Listener::bind(&Address::path(ctx.arg()), &Options::new()).unwrap();
    ctx.checkpoint("listening");
    let mut s = l.accept(secs(60)).unwrap();
    let mut buf = [0u8; 256];
    let n = ipc_socket::MessageReceiver::recv(&mut s, &mut buf).unwrap();
    ipc_socket::MessageSender::send(&mut s, &buf[..n]).unwrap();
    ctx.park("answered");
}

roles!(
    silent_server,
    serve_then_die_mid_reply,
    stops_leave_nothing,
    answer_one_then_park
);

/// A stop given from inside a request by several threads at once, and many times over:
/// the server still answers the client it has, returns when that client leaves, and leaves
/// no descriptor open.
#[test]
fn stops_racing_a_request_leave_nothing_open() {
    let out = spawn("stops_leave_nothing").start().wait();
    assert!(
        out.stderr.contains("checked"),
        "status {:?}: {}",
        out.status,
        out.stderr
    );
}

#[test]
fn several_requests_in_flight_are_matched_by_id() {
    within_watchdog("several_requests_in_flight_are_matched_by_id", || {
        let (client, mut server) = Seqpacket::pair(4096).unwrap();
        let t = std::thread::spawn(move || serve_connection(&mut server, &reverse));
        let mut c = Client::new(client);
        let ids: Vec<_> = (0..5)
            .map(|i| {
                c.start(format!("request {i}").as_bytes(), secs(30))
                    .unwrap()
            })
            .collect();
        assert_eq!(c.in_flight(), 5);
        let mut buf = [0u8; 64];
        // Taken in reverse order: the earlier replies are kept meanwhile.
        for (i, id) in ids.iter().enumerate().rev() {
            let n = c.wait(*id, &mut buf).unwrap();
            let want: Vec<u8> = format!("request {i}").bytes().rev().collect();
            assert_eq!(&buf[..n], &want[..]);
        }
        assert_eq!(c.in_flight(), 0);
        let e = c.wait(ids[0], &mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        // A reply too large for the buffer is kept for a retry.
        let id = c.start(&[7u8; 40], secs(30)).unwrap();
        let e = c.wait(id, &mut buf[..10]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge);
        assert_eq!(c.wait(id, &mut buf).unwrap(), 40);
        drop(c);
        t.join().unwrap().unwrap();
    });
}

/// A call whose reply does not fit its buffer fails with `MessageTooLarge` giving the reply's
/// size, and leaves nothing in flight (`call` hands out no id to ask again with): the next
/// call with room gets its own reply. Before, the request stayed in flight with its reply kept
/// for the client's life, one more per such failure (found by a new user).
#[test]
fn a_call_whose_reply_does_not_fit_leaves_nothing_in_flight() {
    within_watchdog("rpc call too small", || {
        let (a, mut b) = Seqpacket::pair(1 << 16).unwrap();
        let server = std::thread::spawn(move || {
            serve_connection(&mut b, &|req: &[u8], out: &mut Vec<u8>| {
                out.extend_from_slice(&req.repeat(100))
            })
        });
        let mut client = Client::new(a);
        let mut small = [0u8; 16];
        let e = client
            .call(b"0123456789", &mut small, secs(30))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        assert_eq!(e.message_size(), Some((1000, 16)), "{e}");
        assert!(e.to_string().contains("call with a buffer"), "{e}");
        assert_eq!(
            client.in_flight(),
            0,
            "a failed call left its request in flight"
        );
        let mut big = [0u8; 1000];
        assert_eq!(client.call(b"ab", &mut big, secs(30)).unwrap(), 200);
        assert_eq!(&big[..4], b"abab");
        drop(client);
        server.join().unwrap().unwrap();
    });
}

/// `serve_until_stopped` stops the moment another thread gives the stop, whatever its `until`
/// (here never): it accepts no more, closes the connection of a client waiting for its next
/// request, answers a request being handled and then closes that connection too, and
/// returns while both clients are still connected; their next calls fail with
/// `Disconnected`. One connecting after the stop is never served.
/// Before, only `until` ended `serve`, so a server could be stopped only by slicing it; and
/// then a stopped server waited for its clients to leave, which one that never did held up
/// for ever.
#[test]
fn a_stopped_server_accepts_no_more_and_returns_when_its_clients_leave() {
    within_watchdog("rpc stop", || {
        let dir = TempDir::new("rpc-stop");
        let addr = Address::path(dir.join("s"));
        let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
        let stop = Stop::new().unwrap();
        assert!(!stop.is_stopped());
        // The handler of "slow" waits for the test to let it go (one at a time).
        let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = std::sync::Mutex::new(released);
        let entered_tx = std::sync::Mutex::new(entered_tx);
        let handler = |q: &[u8], out: &mut Vec<u8>| {
            if q == b"slow" {
                entered_tx.lock().unwrap().send(()).unwrap();
                released.lock().unwrap().recv().unwrap();
            }
            reverse(q, out)
        };
        std::thread::scope(|s| {
            let server = s.spawn(|| serve_until_stopped(&l, &stop, Deadline::Never, handler));
            let idle = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
            let mut idle = Client::new(idle);
            let mut buf = [0u8; 64];
            let n = idle.call(b"abc", &mut buf, secs(30)).unwrap();
            assert_eq!(&buf[..n], b"cba");
            let busy = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
            let busy = s.spawn(move || {
                let mut busy = Client::new(busy);
                let mut buf = [0u8; 64];
                let n = busy.call(b"slow", &mut buf, secs(60)).unwrap();
                assert_eq!(&buf[..n], b"wols", "the request in hand is answered");
                busy.call(b"next", &mut buf, secs(60)).unwrap_err()
            });
            entered.recv().unwrap();
            stop.clone().stop();
            assert!(stop.is_stopped());
            // The idle client's connection is closed: its next call fails.
            let e = idle.call(b"xy", &mut buf, secs(30)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            assert!(
                !server.is_finished(),
                "returned while a request is being handled"
            );
            release.send(()).unwrap();
            let e = busy.join().unwrap();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            // Returns with both clients still holding their connections.
            server.join().unwrap().unwrap();
            // A client connecting after the stop is not served (the listener still queues its
            // connection: it is the caller's to close).
            let late = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
            let mut late = Client::new(late);
            let e = late
                .call(
                    b"late",
                    &mut buf,
                    Deadline::after(Duration::from_millis(200)),
                )
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
            drop((idle, late));
        });
        // A stop given before the server starts: it returns at once.
        serve_until_stopped(&l, &stop, Deadline::Never, reverse).unwrap();
    });
}

#[test]
fn per_request_deadlines() {
    within_watchdog("per_request_deadlines", || {
        // Over a pair of stream sockets, through `Pair`: any two endpoints make a duplex one.
        let (a, b) = Stream::pair(4096).unwrap();
        let (a_tx, a_rx) = a.into_split();
        let mut c = Client::new(Pair { tx: a_tx, rx: a_rx });
        let short = c
            .start(b"soon", Deadline::after(Duration::from_millis(20)))
            .unwrap();
        let long = c.start(b"later", secs(60)).unwrap();
        let mut buf = [0u8; 64];
        let e = c.wait(short, &mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert_eq!(c.in_flight(), 1, "the other request is still in flight");
        // The server answers both now: the late reply to the timed-out request is dropped.
        let t = std::thread::spawn(move || {
            let mut b = b;
            serve_connection(&mut b, &reverse)
        });
        let n = c.wait(long, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"retal");
        drop(c);
        t.join().unwrap().unwrap();
    });
}

#[test]
fn a_server_answers_many_clients_over_the_listener() {
    within_watchdog("rpc many clients", || {
        let dir = TempDir::new("rpc");
        let addr = Address::path(dir.join("s"));
        let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| serve(&l, Deadline::after(Duration::from_secs(2)), reverse).unwrap());
            let clients: Vec<_> = (0..4)
                .map(|k| {
                    let addr = addr.clone();
                    s.spawn(move || {
                        let conn = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
                        let mut c = Client::new(conn);
                        let mut buf = [0u8; 64];
                        for round in 0..20 {
                            let ids: Vec<_> = (0..3)
                                .map(|i| {
                                    c.start(format!("{k}-{round}-{i}").as_bytes(), secs(30))
                                        .unwrap()
                                })
                                .collect();
                            for (i, id) in ids.into_iter().enumerate() {
                                let n = c.wait(id, &mut buf).unwrap();
                                let want: Vec<u8> =
                                    format!("{k}-{round}-{i}").bytes().rev().collect();
                                assert_eq!(&buf[..n], &want[..]);
                            }
                        }
                    })
                })
                .collect();
            for c in clients {
                c.join().unwrap();
            }
        });
    });
}

/// A `serve` server process with several clients is SIGKILLed in the middle of a reply: one
/// client has part of an 8 MiB reply in its socket (the server blocked writing the rest),
/// three others have two requests each parked in their handler threads, after one answered.
/// Every request in flight, the half-received reply's included, fails with `Disconnected`
/// (no deadline: none may hang), and so does every new request. Passed at once: the rpc
/// tests killed a server that served one connection by hand, not `serve` with many clients
/// mid-reply.
#[test]
fn a_serve_process_killed_mid_reply_fails_every_client_s_requests() {
    within_watchdog("rpc serve killed mid reply", || {
        let dir = TempDir::new("rpc-mid-reply");
        let path = dir.join("s");
        let mut server = spawn("serve_then_die_mid_reply")
            .arg(path.to_str().unwrap())
            .start();
        server.wait_checkpoint("listening");
        let opts = Options::new().max_message(16 << 20);
        let connect =
            || Client::new(Stream::connect(&Address::path(&path), &opts, secs(30)).unwrap());
        let mut buf = vec![0u8; 16 << 20];
        let mut parked = Vec::new();
        for k in 0..3u8 {
            let mut c = connect();
            let n = c.call(&[b'e', k], &mut buf, Deadline::Never).unwrap();
            assert_eq!(&buf[..n], &[b'e', k]);
            let ids = [(); 2].map(|_| c.start(b"park", Deadline::Never).unwrap());
            parked.push((c, ids));
        }
        let mut big = connect();
        let id = big.start(b"big", Deadline::Never).unwrap();
        // Part of the reply has come, the rest cannot: the server is in the middle of it.
        while rustix::io::ioctl_fionread(&*big.get_mut()).unwrap() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(server.kill_and_wait().killed());
        let e = big.wait(id, &mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        let mut clients = vec![big];
        for (mut c, ids) in parked {
            for id in ids {
                let e = c.wait(id, &mut buf).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            }
            clients.push(c);
        }
        for mut c in clients {
            assert_eq!(c.in_flight(), 0);
            let e = c.start(b"echo", Deadline::Never).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        }
    });
}

#[test]
fn a_dead_server_fails_every_pending_request() {
    within_watchdog("rpc dead server", || {
        let dir = TempDir::new("rpc-dead");
        let path = dir.join("s");
        let mut server = spawn("silent_server").arg(path.to_str().unwrap()).start();
        server.wait_checkpoint("listening");
        let conn = Seqpacket::connect(&Address::path(&path), &Options::new(), secs(30)).unwrap();
        let mut c = Client::new(conn);
        let ids: Vec<_> = (0..3)
            .map(|i| c.start(&[i], Deadline::Never).unwrap())
            .collect();
        server.wait_checkpoint("got 3 requests");
        server.kill_and_wait();
        let mut buf = [0u8; 16];
        for id in ids {
            let e = c.wait(id, &mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        }
        assert_eq!(c.in_flight(), 0);
        let e = c.start(b"more", Deadline::Never).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected);
    });
}

/// A server killed after it answered one request, with a second request of the client's
/// unread: the reply that arrived is still delivered (the module's "Failure"), and only
/// the unanswered request fails with `Disconnected`. On a seqpacket socket the kernel
/// reports such a close as `ECONNRESET` (the closed end's receive queue was not empty)
/// before the messages still queued for us.
#[test]
fn a_dead_server_s_reply_that_arrived_is_delivered_though_it_left_a_request_unread() {
    within_watchdog("rpc dead server, reply arrived", || {
        let dir = TempDir::new("rpc-dead-reply");
        let path = dir.join("s");
        let mut server = spawn("answer_one_then_park")
            .arg(path.to_str().unwrap())
            .start();
        server.wait_checkpoint("listening");
        let conn = Seqpacket::connect(&Address::path(&path), &Options::new(), secs(30)).unwrap();
        let mut c = Client::new(conn);
        let first = c.start(b"first", Deadline::Never).unwrap();
        server.wait_checkpoint("answered");
        let second = c.start(b"second", Deadline::Never).unwrap();
        server.kill_and_wait();
        let mut buf = [0u8; 16];
        let n = c.wait(first, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"first");
        let e = c.wait(second, &mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        assert_eq!(c.in_flight(), 0);
    });
}

/// A stopped server answers the request in hand even when the client has sent another
/// behind it (which is never taken: it fails with `Disconnected`), on seqpacket and stream
/// sockets alike.
#[test]
fn a_stopped_server_answers_the_request_in_hand_though_another_is_queued_behind_it() {
    fn case<K>(addr: &Address, connect: impl FnOnce() -> K)
    where
        K: ipc_socket::Kind
            + ipc_socket::MessageSender
            + ipc_socket::MessageReceiver
            + ipc_socket::Readiness
            + Send,
    {
        let l: Listener<K> = Listener::bind(addr, &Options::new()).unwrap();
        let stop = Stop::new().unwrap();
        let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = std::sync::Mutex::new(released);
        let entered_tx = std::sync::Mutex::new(entered_tx);
        let handler = |q: &[u8], out: &mut Vec<u8>| {
            if q == b"slow" {
                entered_tx.lock().unwrap().send(()).unwrap();
                released.lock().unwrap().recv().unwrap();
            }
            reverse(q, out)
        };
        std::thread::scope(|s| {
            let server = s.spawn(|| serve_until_stopped(&l, &stop, Deadline::Never, handler));
            let mut c = Client::new(connect());
            let slow = c.start(b"slow", secs(60)).unwrap();
            let next = c.start(b"next", secs(60)).unwrap();
            entered.recv().unwrap();
            stop.stop();
            release.send(()).unwrap();
            server.join().unwrap().unwrap();
            let mut buf = [0u8; 64];
            let n = c.wait(slow, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"wols", "the request in hand is answered");
            let e = c.wait(next, &mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        });
    }
    within_watchdog("rpc stop, request queued", || {
        let dir = TempDir::new("rpc-stop-queued");
        let addr = Address::path(dir.join("stream"));
        case::<Stream>(&addr, || {
            Stream::connect(&addr, &Options::new(), secs(30)).unwrap()
        });
        let addr = Address::path(dir.join("seqpacket"));
        case::<Seqpacket>(&addr, || {
            Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap()
        });
    });
}

/// A client that stays connected and never reads its replies cannot hold up a stopped server
/// either: the reply in hand, far larger than the socket buffers, can never be written whole,
/// so the stop must end that write too (the client then sees `Disconnected`).
/// A handler that takes longer than `STOP_GRACE` after the stop still gets its reply to a
/// client that reads: the grace bounds a reply's writing, not its handling.
/// Before, the grace ran from the stop, and such a reply was cut off.
#[test]
fn a_slow_handler_s_reply_after_a_stop_still_reaches_a_reading_client() {
    within_watchdog("rpc stop, slow handler", || {
        let dir = TempDir::new("rpc-stop-slow");
        let addr = Address::path(dir.join("s"));
        let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
        let stop = Stop::new().unwrap();
        let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
        let entered_tx = std::sync::Mutex::new(entered_tx);
        let handler = |q: &[u8], out: &mut Vec<u8>| {
            entered_tx.lock().unwrap().send(()).unwrap();
            std::thread::sleep(ipc_socket::rpc::STOP_GRACE + Duration::from_millis(300));
            reverse(q, out)
        };
        std::thread::scope(|s| {
            let server = s.spawn(|| serve_until_stopped(&l, &stop, Deadline::Never, handler));
            let conn = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
            let mut c = Client::new(conn);
            let id = c.start(b"slow", secs(60)).unwrap();
            entered.recv().unwrap();
            stop.stop();
            let mut buf = [0u8; 16];
            let n = c.wait(id, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"wols");
            server.join().unwrap().unwrap();
        });
    });
}

/// A server whose `until` passes with no stop given goes on serving the clients it has until
/// they leave, as `serve` does: nothing is shut down for a stop that never came.
/// Before, its connections were shut down `STOP_GRACE` after `until`.
#[test]
fn a_server_past_its_until_without_a_stop_serves_its_clients_until_they_leave() {
    within_watchdog("rpc until, no stop", || {
        let dir = TempDir::new("rpc-until");
        let addr = Address::path(dir.join("s"));
        let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
        let stop = Stop::new().unwrap();
        let until = Deadline::after(Duration::from_millis(100));
        std::thread::scope(|s| {
            let server = s.spawn(|| serve_until_stopped(&l, &stop, until, reverse));
            let conn = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
            let mut c = Client::new(conn);
            let mut buf = [0u8; 16];
            let n = c.call(b"ab", &mut buf, secs(30)).unwrap();
            assert_eq!(&buf[..n], b"ba");
            // Past `until`, and past the grace a stop would have had.
            std::thread::sleep(ipc_socket::rpc::STOP_GRACE + Duration::from_millis(300));
            let n = c.call(b"cd", &mut buf, secs(30)).unwrap();
            assert_eq!(&buf[..n], b"dc");
            assert!(!server.is_finished(), "returned with a client connected");
            drop(c);
            server.join().unwrap().unwrap();
        });
    });
}

#[test]
fn a_client_that_never_reads_its_reply_does_not_hold_up_a_stopped_server() {
    within_watchdog("rpc stop, reply never read", || {
        let dir = TempDir::new("rpc-stop-unread");
        let addr = Address::path(dir.join("s"));
        let opts = Options::new().max_message(16 << 20);
        let l: Listener<Stream> = Listener::bind(&addr, &opts).unwrap();
        let stop = Stop::new().unwrap();
        let (answering, answered) = std::sync::mpsc::channel::<()>();
        let answering = std::sync::Mutex::new(answering);
        let handler = |_: &[u8], out: &mut Vec<u8>| {
            out.resize(BIG_REPLY, 7);
            answering.lock().unwrap().send(()).unwrap();
        };
        std::thread::scope(|s| {
            let server = s.spawn(|| serve_until_stopped(&l, &stop, Deadline::Never, handler));
            let conn = Stream::connect(&addr, &opts, secs(30)).unwrap();
            let mut c = Client::new(conn);
            let id = c.start(b"big", secs(60)).unwrap();
            answered.recv().unwrap();
            stop.stop();
            server.join().unwrap().unwrap();
            let mut buf = vec![0u8; BIG_REPLY];
            let e = c.wait(id, &mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        });
    });
}

#[test]
fn replies_and_requests_above_16_mib_within_the_endpoint_maximum_arrive() {
    within_watchdog("rpc above 16 MiB", || {
        const MIB: usize = 1 << 20;
        let (client, mut server) = Stream::pair(24 * MIB).unwrap();
        // Replies `request[0]` MiB, each byte the request's length modulo 251.
        let t = std::thread::spawn(move || {
            serve_connection(&mut server, &|q: &[u8], out: &mut Vec<u8>| {
                out.resize(q[0] as usize * MIB, (q.len() % 251) as u8);
            })
        });
        let mut c = Client::new(client);
        let big = c.start(&[17], secs(60)).unwrap();
        let small = c.start(&[1], secs(60)).unwrap();
        let mut reply = vec![0u8; 24 * MIB];
        // The small reply comes after the big one: taking it takes the big one first.
        assert_eq!(c.wait(small, &mut reply).unwrap(), MIB);
        assert_eq!(c.wait(big, &mut reply).unwrap(), 17 * MIB);
        assert!(reply[..17 * MIB].iter().all(|&b| b == 1));
        // A request above 16 MiB reaches the server's handler.
        let mut request = vec![0u8; 18 * MIB];
        request[0] = 2;
        let n = c.call(&request, &mut reply, secs(60)).unwrap();
        assert_eq!(n, 2 * MIB);
        assert!(reply[..n].iter().all(|&b| b == (18 * MIB % 251) as u8));
        drop(c);
        t.join().unwrap().unwrap();
    });
}

#[test]
fn a_reply_above_the_client_s_maximum_fails_every_request_in_flight_instead_of_one_hanging() {
    within_watchdog("rpc reply above the client's maximum", || {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
        // One socket pair, ends of different maxima: the server may send 64 KiB, its client
        // takes 2 KiB.
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let client = Seqpacket::from_fd(a, 2048).unwrap();
        let mut server = Seqpacket::from_fd(b, 64 << 10).unwrap();
        // Replies `request[0]` KiB.
        let t = std::thread::spawn(move || {
            serve_connection(&mut server, &|q: &[u8], out: &mut Vec<u8>| {
                out.resize(q[0] as usize * 1024, 7);
            })
        });
        let mut c = Client::new(client);
        // No deadlines: a request left waiting for a reply that was dropped would hang.
        let big = c.start(&[4], Deadline::Never).unwrap();
        let small = c.start(&[0], Deadline::Never).unwrap();
        assert_eq!(c.in_flight(), 2);
        let mut reply = vec![0u8; 2048];
        let e = c.wait(big, &mut reply).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        assert!(e.to_string().contains("2 request(s) in flight"), "{e}");
        // Which request the dropped reply answered cannot be told: none is left waiting.
        assert_eq!(c.in_flight(), 0);
        for id in [big, small] {
            assert_eq!(
                c.wait(id, &mut reply).unwrap_err().kind(),
                ErrorKind::NotFound
            );
        }
        // The connection goes on: the late reply to `small` is dropped, a new call is answered.
        let n = c.call(&[0, 1, 2], &mut reply, Deadline::Never).unwrap();
        assert_eq!(n, 0);
        let n = c.call(&[1], &mut reply, Deadline::Never).unwrap();
        assert_eq!((n, reply[0]), (1024, 7));
        drop(c);
        t.join().unwrap().unwrap();
    });
}

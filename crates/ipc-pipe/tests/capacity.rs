//! How a stream sender sizes its pipe (`PipeWriter::fit_frame`): 32 pages when its largest
//! frame is longer than a page, seen by a reader in another process; nothing queued before is
//! lost; and when the kernel refuses the pages (the user's pipe budget,
//! `/proc/sys/fs/pipe-user-pages-soft`, used up by an unprivileged user), the pipe keeps its
//! capacity, the sender works, and a tracing event says so.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use ipc_core::{MessageReceiver, MessageSender};
use ipc_pipe::{FrameMode, PipeReader, PipeWriter, STREAM_SLOTS, pipe};
use ipc_testkit::script::{check_message, message};
use ipc_testkit::{Ctx, roles, spawn, within_watchdog};

fn page() -> usize {
    rustix::param::page_size()
}

/// Role: adopts the read end, reports its pipe's capacity, then receives `count` messages of
/// `len` bytes and checks each.
fn sized_reader(ctx: &Ctx) {
    let a = ctx.args();
    let (len, count): (usize, u32) = (a[0].parse().unwrap(), a[1].parse().unwrap());
    let r = PipeReader::from_inherited("rx").unwrap();
    eprintln!("capacity={}", r.capacity().unwrap());
    let mut rx = r.into_receiver(len).unwrap();
    let mut buf = vec![0; len];
    for seq in 0..count {
        let n = rx.recv(&mut buf).unwrap();
        check_message(7, seq, len, &buf[..n]).unwrap();
    }
}

/// A stream sender of 4096-byte messages (a frame of a page and 4 bytes) gives the pipe 32
/// pages, which the reader in another process sees; 4092-byte messages (a frame of exactly a
/// page), atomic mode and `into_sender_keeping_capacity` leave the default 16.
#[test]
fn a_stream_of_frames_longer_than_a_page_gets_32_pages_seen_across_processes() {
    let (r, w) = pipe().unwrap();
    let default = r.capacity().unwrap();
    assert_eq!(default, 16 * page(), "the default pipe");
    let mut tx = w.into_stream_sender(4096).unwrap();
    let count = 200;
    let child = spawn("sized_reader")
        .arg(format!("4096 {count}"))
        .fd("rx", &r)
        .start();
    drop(r);
    for seq in 0..count {
        tx.send(&message(7, seq, 4096)).unwrap();
    }
    drop(tx);
    let out = child.wait_success();
    assert!(
        out.stderr
            .contains(&format!("capacity={}", STREAM_SLOTS * page())),
        "{}",
        out.stderr
    );

    for (len, mode) in [
        (4092, FrameMode::Stream { max_message: 4092 }),
        (4092, FrameMode::Atomic),
    ] {
        let (r, w) = pipe().unwrap();
        let _tx = w.into_sender(mode).unwrap();
        assert_eq!(r.capacity().unwrap(), default, "{len} B, {mode:?}");
    }
    let (r, w) = pipe().unwrap();
    let _tx = w
        .into_sender_keeping_capacity(FrameMode::Stream { max_message: 8192 })
        .unwrap();
    assert_eq!(r.capacity().unwrap(), default);

    // The default stream (16 MiB messages, a frame no pipe may hold unprivileged) still gets
    // the 32 pages for the smaller messages it carries, when the size knob allows them.
    let (tx, _rx) = ipc_pipe::channel(FrameMode::default()).unwrap();
    let slots = STREAM_SLOTS * page();
    if slots <= ipc_pipe::max_capacity().unwrap() {
        assert_eq!(tx.get_ref().capacity().unwrap(), slots);
    }
}

/// Growing a pipe that already holds data keeps it: what was written before the sender was
/// made is read first, then the sender's messages.
#[test]
fn growing_for_a_stream_keeps_what_is_queued() {
    let (mut r, mut w) = pipe().unwrap();
    let before: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    w.write_all(&before).unwrap();
    let mut tx = w.into_stream_sender(8192).unwrap();
    assert_eq!(r.capacity().unwrap(), STREAM_SLOTS * page());
    assert_eq!(r.queued_bytes().unwrap(), before.len());
    tx.send(&message(7, 0, 8192)).unwrap();
    let mut got = vec![0; before.len()];
    r.read_exact(&mut got).unwrap();
    assert!(got == before, "the bytes queued before were changed");
    let mut rx = r.into_receiver(8192).unwrap();
    let mut buf = vec![0; 8192];
    let n = rx.recv(&mut buf).unwrap();
    check_message(7, 0, 8192, &buf[..n]).unwrap();
}

/// Records the message of every tracing event.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

struct Message<'a>(&'a mut String);

impl tracing::field::Visit for Message<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut s = String::new();
        event.record(&mut Message(&mut s));
        self.0.lock().unwrap().push(s);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Becomes `nobody` for good (from root); a credential change clears the parent-death signal,
/// which is set again.
fn become_nobody() {
    // SAFETY: plain credential calls with valid arguments (an empty group list); glibc applies
    // them to every thread of this child process.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setgid(65534), 0);
        assert_eq!(libc::setuid(65534), 0);
    }
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL)).unwrap();
}

/// Role: as `nobody`, uses up that user's pipe page budget until a new pipe gets its 16 pages
/// but cannot grow to 32, then makes a stream sender of 4096-byte messages on it.
fn budget_used_up(_: &Ctx) {
    become_nobody();
    let events = Events::default();
    let _log = tracing::subscriber::set_default(events.clone());
    let page = page();
    // Pipes grown to the largest power of two of pages the budget allows take the headroom
    // down to 16-31 pages, which a new default pipe takes to under 16: too few to grow. A
    // probe pipe shows whether 16 pages are left after each growth (it gets 2 when not, and
    // the growth is halved back). Only write ends are kept (they keep the pipes).
    let mut held: Vec<PipeWriter> = Vec::new();
    'fill: loop {
        assert!(held.len() < 10_000, "the budget never ran out");
        let (_, w) = pipe().unwrap();
        assert_eq!(
            w.capacity().unwrap(),
            16 * page,
            "under 16 pages of headroom"
        );
        for pages in [256, 128, 64, 32] {
            if w.set_capacity(pages * page).is_err() {
                continue;
            }
            let (_, probe) = pipe().unwrap();
            if probe.capacity().unwrap() < 16 * page {
                drop(probe);
                w.set_capacity(pages / 2 * page).unwrap();
                if pages == 32 {
                    // Back to 16-31 pages of headroom; this pipe stays.
                    held.push(w);
                    break 'fill;
                }
            }
            held.push(w);
            continue 'fill;
        }
        // Not even 32 pages: under 16 left with this pipe, 16-31 without it.
        break;
    }
    let (r, w) = pipe().unwrap();
    assert_eq!(w.capacity().unwrap(), 16 * page);
    // Something queued before the sender is made.
    let mut w = w;
    w.write_all(&message(7, 0, 4092)).unwrap();
    let twin = w.try_clone().unwrap();
    let got = w.fit_frame(4096).unwrap();
    assert_eq!(got, 16 * page, "one frame fits: the capacity is kept");
    let mut tx = w.into_stream_sender(4096).unwrap();
    assert_eq!(r.capacity().unwrap(), 16 * page);
    // Nor does a stream of messages too large for one frame in any pipe.
    let big = twin.into_stream_sender(16 << 20).unwrap();
    assert_eq!(big.get_ref().capacity().unwrap(), 16 * page);
    drop(big);
    let said = events.0.lock().unwrap().clone();
    assert!(
        said.iter()
            .any(|e| e.contains("pipe kept its capacity") && e.contains("pipe-user-pages")),
        "no event says the capacity was kept: {said:?}"
    );
    within_watchdog("send through the pipe that kept its capacity", move || {
        let reader = std::thread::spawn(move || {
            let mut r = r;
            let mut first = vec![0; 4092];
            r.read_exact(&mut first).unwrap();
            check_message(7, 0, 4092, &first).unwrap();
            let mut rx = r.into_receiver(4096).unwrap();
            let mut buf = vec![0; 4096];
            for seq in 1..100 {
                let n = rx.recv(&mut buf).unwrap();
                check_message(7, seq, 4096, &buf[..n]).unwrap();
            }
        });
        for seq in 1..100 {
            tx.send(&message(7, seq, 4096)).unwrap();
        }
        reader.join().unwrap();
    });
    drop(held);
    eprintln!("checked");
}

/// When the kernel refuses the 32 pages (an unprivileged user's pipe budget used up), the
/// pipe keeps its capacity, a DEBUG event names the refusal, and the sender works; nothing
/// written before is lost. Needs root to become `nobody` (whose budget it uses up, not the
/// caller's, which other processes of the caller share).
#[test]
fn a_refused_capacity_leaves_the_pipe_working_and_says_so() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root, to use up the pipe budget of `nobody` only");
        return;
    }
    let out = spawn("budget_used_up").start().wait_success();
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
}

roles!(sized_reader, budget_used_up);

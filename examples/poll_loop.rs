//! One `epoll` loop, no async runtime, waiting on four kinds of message endpoint at once: a
//! pipe, a FIFO, a POSIX message queue and a shared-memory channel, through their
//! [`Readiness`] descriptors.
//!
//! The loop is the [`Readiness`] contract: try without waiting until `WouldBlock`, `arm`,
//! wait, `disarm`, try again. A sender thread plays the peer of all four (another process
//! works the same way: nothing here depends on it being a thread).
//!
//! Run with `cargo run --example poll_loop`.

use std::time::Duration;

use ipc::core::{ErrorKind, MessageReceiver, MessageSender, Readiness, Result};
use ipc::fifo::{Fifo, OpenOptions};
use ipc::mq::posix::{Access, Queue};
use ipc::pipe::FrameMode;
use ipc::shm::ChannelOptions;
use rustix::event::epoll;

const MESSAGES: u32 = 5;

fn main() -> Result<()> {
    // The four channels. Each receiving end is a `Box<dyn Endpoint>` below; each sending end
    // goes to the peer thread.
    let (mut pipe_tx, pipe_rx) = ipc::pipe::channel(FrameMode::default())?;
    let dir = TempDir::new(format!("ipc-poll-loop-{}", std::process::id()))?;
    let fifo = Fifo::create(dir.0.join("fifo"))?;
    let mut now = OpenOptions::new();
    now.wait(ipc::Deadline::Now);
    let fifo_rx = now.open_read(fifo.path())?.into_receiver(1 << 16)?;
    let mut fifo_tx = now
        .open_write(fifo.path())?
        .into_sender(FrameMode::default())?;
    let name = format!("/ipc-poll-loop-{}", std::process::id());
    let queue_rx = Queue::create(name.as_str(), 8, 256)?;
    let _remove_queue = queue_rx.remove_guard()?;
    let mut queue_tx = Queue::open(name.as_str(), Access::WriteOnly)?;
    let (mut shm_tx, shm_rx) = ChannelOptions::new().capacity(1 << 16).pair()?;

    let peer = std::thread::spawn(move || -> Result<()> {
        for i in 0..MESSAGES {
            std::thread::sleep(Duration::from_millis(20));
            pipe_tx.send(format!("pipe {i}").as_bytes())?;
            fifo_tx.send(format!("fifo {i}").as_bytes())?;
            queue_tx.send(format!("queue {i}").as_bytes())?;
            shm_tx.send(format!("shm {i}").as_bytes())?;
        }
        Ok(()) // Dropping the senders: pipe, FIFO and shm receivers see Disconnected.
    });

    let mut ends: Vec<(&str, Box<dyn Endpoint>)> = vec![
        ("pipe", Box::new(pipe_rx)),
        ("fifo", Box::new(fifo_rx)),
        ("queue", Box::new(queue_rx)),
        ("shm", Box::new(shm_rx)),
    ];
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    for (i, (_, end)) in ends.iter_mut().enumerate() {
        // Level-triggered: a descriptor still ready after a partial drain is reported again.
        let flags = match end.recv_interest() {
            ipc::core::fd::Interest::Readable => epoll::EventFlags::IN,
            ipc::core::fd::Interest::Writable => epoll::EventFlags::OUT,
        };
        epoll::add(
            &epoll,
            end.readiness_fd()?,
            epoll::EventData::new_u64(i as u64),
            flags,
        )?;
    }

    let mut buf = [0u8; 1 << 16];
    let mut open = [true; 4];
    let mut registered = [true; 4];
    let mut queued = 0;
    while open.iter().any(|&o| o) {
        // 1. Drain every endpoint that is still open, then arm it for the wait.
        let mut ready_now = false;
        for (i, (what, end)) in ends.iter_mut().enumerate() {
            while open[i] {
                match end.try_recv(&mut buf) {
                    Ok(n) => {
                        println!("{what}: {}", String::from_utf8_lossy(&buf[..n]));
                        if *what == "queue" {
                            // A queue has no peer to lose: stop after the last message.
                            queued += 1;
                            open[i] = queued < MESSAGES;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Disconnected => {
                        println!("{what}: sender gone");
                        open[i] = false;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !open[i] {
                if registered[i] {
                    // Done with it: a closed pipe stays readable (end of file) and would
                    // wake every wait.
                    epoll::delete(&epoll, end.readiness_fd()?)?;
                    registered[i] = false;
                }
                continue;
            }
            if end.arm()? {
                ready_now = true; // Became ready while arming: go round without waiting.
            }
        }
        if ready_now || !open.iter().any(|&o| o) {
            disarm_all(&ends);
            continue;
        }
        // 2. Wait on all four descriptors at once: no thread per endpoint, no busy loop.
        let mut events = [epoll::Event {
            flags: epoll::EventFlags::empty(),
            data: epoll::EventData::new_u64(0),
        }; 4];
        match epoll::wait(&epoll, &mut events[..], None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        // 3. Disarm (the shm doorbell drains here) and go round to try again.
        disarm_all(&ends);
    }
    peer.join().expect("peer thread")?;
    drop(fifo);
    Ok(())
}

/// A directory of this run, removed when dropped: also when `main` returns an error.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: String) -> std::io::Result<TempDir> {
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A receiving endpoint a poll loop can wait on.
trait Endpoint: MessageReceiver + Readiness {}
impl<T: MessageReceiver + Readiness> Endpoint for T {}

fn disarm_all(ends: &[(&str, Box<dyn Endpoint>)]) {
    for (_, end) in ends {
        end.disarm();
    }
}

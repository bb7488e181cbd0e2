//! Cross-process tests of ipc-fifo: one test binary whose roles run in child processes.

mod abandon;
mod create;
mod duplex;
#[cfg(feature = "tokio")]
mod duplex_async;
mod eof;
mod hostile;
mod junk;
mod kills;
mod messages;
mod open;
mod refuse;
mod shell;
mod sigpipe;
mod torn;

use std::path::Path;
use std::time::{Duration, Instant};

use ipc_testkit::roles;

use abandon::connect_without_deadline;
use abandon::probe_now;
use create::create_under_umask;
use duplex::bind_and_park;
use duplex::echo_client;
use duplex::hello_then_park;
use duplex::read_hello_then_park;
use eof::larger_maximum_writer;
use eof::send_and_exit;
use eof::send_and_park;
use eof::send_then_wait_for_go;
use kills::client_steps;
use kills::reader_steps;
use kills::server_steps;
use kills::writer_steps;
use messages::byte_writer;
use messages::stamped_writer;
use open::late_reader;
use open::open_writer_and_park;
use open::write_hello;
use sigpipe::fifo_blocked_write_sigpipe_default;
use sigpipe::fifo_drop_with_message_in_progress;
use torn::big_stream_writer;
use torn::small_stream_writer;

roles!(
    connect_without_deadline,
    probe_now,
    create_under_umask,
    write_hello,
    open_writer_and_park,
    late_reader,
    stamped_writer,
    byte_writer,
    send_then_wait_for_go,
    send_and_park,
    send_and_exit,
    larger_maximum_writer,
    echo_client,
    hello_then_park,
    bind_and_park,
    read_hello_then_park,
    big_stream_writer,
    small_stream_writer,
    fifo_blocked_write_sigpipe_default,
    fifo_drop_with_message_in_progress,
    writer_steps,
    reader_steps,
    client_steps,
    server_steps,
);

/// Whether the long variants run (`IPC_SOAK=1`, set by `cargo xtask test --soak`).
pub(crate) fn soak() -> bool {
    std::env::var_os("IPC_SOAK").is_some_and(|v| v == "1")
}

/// A private directory for one test's FIFOs, removed on drop.
pub(crate) fn scratch() -> ipc_testkit::TempDir {
    ipc_testkit::TempDir::new("fifo")
}

/// The names in `dir`, sorted.
pub(crate) fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A non-role child (a shell), killed and reaped on drop so a failing test leaves no process
/// behind (a shell blocked opening a FIFO would otherwise wait forever).
pub(crate) struct Shell(pub(crate) std::process::Child);

impl Drop for Shell {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Shell {
    /// Waits for it under the testkit watchdog; kills it on timeout.
    pub(crate) fn wait(&mut self, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + ipc_testkit::watchdog();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                panic!("watchdog: {what} hung");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Its standard output, read to the end.
    pub(crate) fn stdout(&mut self) -> String {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut self.0.stdout.take().unwrap(), &mut out).unwrap();
        out
    }
}

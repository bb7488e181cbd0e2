//! The errors of the expected path (would-block, timed out, disconnected, an OS errno), named
//! after an endpoint's shared name, are made without touching the allocator; the rest keep
//! their detail.

use std::sync::Arc;

use ipc_core::{Blocked, Deadline, Error, ErrorKind};
use ipc_testkit::alloc::{Counting, allocations};
use rustix::io::Errno;

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn expected_path_errors_do_not_allocate() {
    let name: Arc<str> = Arc::from("/ipc-channel");
    let n = allocations(|| {
        let e = Error::would_block(Blocked::Empty)
            .in_op("recv")
            .on_shared(&name);
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        assert_eq!(e.blocked(), Some(Blocked::Empty));
        let t = Deadline::Now.expired_error(Blocked::Full).on_shared(&name);
        assert_eq!(t.blocked(), Some(Blocked::Full));
        let t = Error::timed_out().in_op("send");
        assert_eq!(t.kind(), ErrorKind::TimedOut);
        let d = Error::disconnected().in_op("recv").on_shared(&name);
        assert_eq!(d.object(), Some("/ipc-channel"));
        let o = Error::from(Errno::AGAIN).in_op("read");
        assert_eq!(o.raw_os_error(), Some(libc::EAGAIN));
    });
    assert_eq!(n, 0, "the expected path allocated {n} times");
    // The context is there when the error is reported.
    let e = Error::would_block(Blocked::Empty)
        .in_op("recv")
        .on_shared(&name);
    assert_eq!(
        e.to_string(),
        "recv /ipc-channel: operation would block (empty)"
    );
}

#[test]
fn heavy_details_survive_the_change_of_shape() {
    let e = Error::would_block(Blocked::Full)
        .in_op("send")
        .on("q")
        .in_op(String::from("owned op"));
    assert_eq!(e.blocked(), Some(Blocked::Full));
    assert_eq!(e.op(), Some("owned op"));
    assert_eq!(e.object(), Some("q"));
    let e = Error::from(Errno::MSGSIZE).with_detail(ipc_core::Detail::Note("why".into()));
    assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE));
    assert!(e.to_string().contains("why"), "{e}");
    let e = Error::limit("/proc/sys/kernel/msgmni", Some(32)).with_detail(ipc_core::Detail::None);
    assert_eq!(e.limit_info(), None);
}

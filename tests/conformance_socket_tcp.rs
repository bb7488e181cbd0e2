//! The conformance suite for TCP over loopback with ipc-core framing (`ipc-socket`,
//! `TCP_NODELAY`): a listener on 127.0.0.1, each end handed to a child by fd
//! ([`ipc_bench::fixtures::TcpSocket`]). The benchmark's `tcp-lib` row uses the same endpoint
//! over one connection both ways, as its raw row does.

ipc_testkit::conformance_suite!(ipc_bench::fixtures::TcpSocket);

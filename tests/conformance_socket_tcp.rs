//! The conformance suite for TCP over loopback with ipc-core framing (`ipc-socket`,
//! `TCP_NODELAY`): a listener on 127.0.0.1, each end handed to a child by fd. The fixture
//! ([`ipc_bench::fixtures::TcpSocket`]) is the one the benchmark's `tcp-lib` row measures.

ipc_testkit::conformance_suite!(ipc_bench::fixtures::TcpSocket);

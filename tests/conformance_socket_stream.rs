//! The conformance suite for Unix-domain `SOCK_STREAM` sockets with ipc-core framing
//! (`ipc-socket`): a listener on a path, each end handed to a child by fd. The fixture
//! ([`ipc_bench::fixtures::UnixStreamSocket`]) is the one the benchmark's `uds-stream` row
//! measures.

ipc_testkit::conformance_suite!(ipc_bench::fixtures::UnixStreamSocket);

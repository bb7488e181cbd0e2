//! The conformance suite for Unix-domain `SOCK_STREAM` sockets with ipc-core framing
//! (`ipc-socket`): a listener on a path, each end handed to a child by fd
//! ([`ipc_bench::fixtures::UnixStreamSocket`]). The benchmark's `uds-stream` row uses the same
//! endpoint over one connection both ways, as its raw row does.

ipc_testkit::conformance_suite!(ipc_bench::fixtures::UnixStreamSocket);

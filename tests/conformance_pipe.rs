//! The conformance suite for pipes in stream mode (messages of any size up to the configured
//! maximum, one writer), each end handed to a child by fd and adopted there by name. The
//! fixture ([`ipc_bench::fixtures::StreamPipe`]) is the one the benchmark's `pipe` row
//! measures.

ipc_testkit::conformance_suite!(ipc_bench::fixtures::StreamPipe);

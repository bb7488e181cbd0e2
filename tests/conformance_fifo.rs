//! The conformance suite for FIFOs in their multi-writer mode (atomic records of at most
//! `PIPE_BUF - 4` bytes): the FIFO is created in a private directory, opened by path, and each
//! end is handed to a child by fd. The fixture ([`ipc_bench::fixtures::AtomicFifo`]) is the
//! one the benchmark's `fifo` row measures.

ipc_testkit::conformance_suite!(ipc_bench::fixtures::AtomicFifo);

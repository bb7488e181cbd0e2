//! [`Properties`]: the static facts each mechanism publishes about itself, printed by the
//! benchmark beside the measured numbers.

use std::fmt;

/// The largest message a mechanism can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaxMessage {
    /// Any size: a byte stream with length-prefix framing (bounded only by the receiver's
    /// configured maximum).
    Unbounded,
    /// A fixed number of bytes (for example `PIPE_BUF - 4` for atomic multi-writer records).
    Bytes(usize),
    /// Set per object at creation, with a kernel knob as the ceiling (for example
    /// `/proc/sys/fs/mqueue/msgsize_max`).
    PerObject {
        /// The default when the creator does not choose.
        default: usize,
        /// What bounds the choice.
        ceiling: &'static str,
    },
}

impl fmt::Display for MaxMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxMessage::Unbounded => f.write_str("unbounded"),
            MaxMessage::Bytes(n) => write!(f, "{n} B"),
            MaxMessage::PerObject { default, ceiling } => {
                write!(f, "per object (default {default} B, ceiling {ceiling})")
            }
        }
    }
}

/// Static facts about a mechanism: the seed's comparison table, as data.
///
/// Each mechanism crate publishes one or more of these as constants (`ipc_pipe::PROPERTIES`,
/// ...). `kernel_copies_per_message` counts copies of the payload made by the kernel between
/// the sender's and the receiver's buffers: two for pipes, FIFOs, queues and sockets (into the
/// kernel, out of it), zero for shared memory after setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Properties {
    /// Short name, as the benchmark prints it.
    pub mechanism: &'static str,
    /// Whether one send is one receive (message boundaries kept by the kernel or the framing).
    pub keeps_boundaries: bool,
    /// The largest message.
    pub max_message: MaxMessage,
    /// Whether several processes can send on one channel safely.
    pub multi_producer: bool,
    /// Whether several processes can receive from one channel safely.
    pub multi_consumer: bool,
    /// Whether the peers must be related (one inherits the object from the other).
    pub needs_related_process: bool,
    /// The namespace the object has a name in, if any (`"filesystem path"`, `"/dev/mqueue"`).
    pub namespace: Option<&'static str>,
    /// Payload copies made by the kernel per message.
    pub kernel_copies_per_message: u8,
    /// Whether the mechanism can connect processes on different machines.
    pub crosses_machines: bool,
}

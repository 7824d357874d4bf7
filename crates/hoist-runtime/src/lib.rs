//! Run containers with runc for the embedded cluster's kubelet: image unpack into a
//! shared cache, per-container rootfs (overlay or copy), OCI bundles, pod network
//! namespaces on loopback, CRI-format logs, wait/kill/delete and exec.
//!
//! The kubelet's pod path: [`PodSandbox::create`] (IP from [`IpAllocator`], [`PodNetwork`],
//! shared /etc files) → [`ImageUnpacker::unpack`] → [`PodSandbox::start_container`]
//! ([`ImageUnpacker::prepare_rootfs`], [`Bundle::write`], [`Runtime::run`]) →
//! [`Runtime::wait`] / [`Runtime::exec`] / [`connect`]; teardown is
//! [`PodSandbox::remove_container`] (SIGTERM, grace, SIGKILL, delete, free rootfs) →
//! [`PodSandbox::destroy`]. Everything blocks: call it from `spawn_blocking` in async code.
//!
//! Live updates on the embedded cluster write straight into a running container with
//! [`ContainerRoot`] (its `/proc/<pid>/root`, paths resolved inside it).
//!
//! Output goes through FIFOs in the bundle that the container holds read-write, so it never
//! meets SIGPIPE while hoist is down: after a restart, [`Runtime::adopt`] +
//! [`Runtime::reattach_logs`] resume watching and logging (output beyond the 64 KiB pipe
//! buffer blocks the writer until then). Each running container costs three threads (two
//! log pumps, one reaper).

pub mod bundle;
pub mod container_fs;
pub mod error;
pub mod layer;
pub mod logs;
pub mod netns;
pub mod runtime;
pub mod sandbox;
mod sys;
pub mod unpack;

pub use bundle::{BindMount, Bundle, ContainerSpec};
pub use container_fs::ContainerRoot;
pub use error::{Error, Result};
pub use logs::{LogQuery, LogRecord, LogSink, Stream, follow_log, parse_record, read_log};
pub use netns::{IpAllocator, PodNetwork, connect};
pub use runtime::{ContainerState, ExecOutput, Exited, Runtime, TtyExec, check_host, find_runc};
pub use sandbox::{Cleanup, ContainerHandle, PodSandbox, SandboxConfig, remove_everything};
pub use unpack::{ImageUnpacker, PreparedRootfs, RootfsMode, UnpackedImage};

//! Run containers with runc for the embedded cluster's kubelet: image unpack into a
//! shared cache, per-container rootfs (overlay or copy), OCI bundles, pod network
//! namespaces on loopback, CRI-format logs, wait/kill/delete and exec.
//!
//! The kubelet's pod path: [`IpAllocator::allocate`] → [`PodNetwork::create`] →
//! [`ImageUnpacker::unpack`] → [`ImageUnpacker::prepare_rootfs`] → [`Bundle::write`] →
//! [`Runtime::run`]; teardown is [`Runtime::kill`] → [`Runtime::delete`] →
//! [`ImageUnpacker::release_rootfs`] → [`PodNetwork::delete`] → [`IpAllocator::release`].

pub mod bundle;
pub mod error;
pub mod layer;
pub mod logs;
pub mod netns;
pub mod runtime;
mod sys;
pub mod unpack;

pub use bundle::{BindMount, Bundle, ContainerSpec};
pub use error::{Error, Result};
pub use logs::{LogRecord, LogSink, Stream, parse_record};
pub use netns::{IpAllocator, PodNetwork, connect};
pub use runtime::{ContainerState, ExecOutput, Exited, Runtime, check_host, find_runc};
pub use unpack::{ImageUnpacker, PreparedRootfs, RootfsMode, UnpackedImage};

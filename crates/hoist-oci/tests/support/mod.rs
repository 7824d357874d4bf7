pub mod builder;
pub mod fault_proxy;
pub mod registry;

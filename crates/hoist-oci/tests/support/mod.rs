pub mod builder;
pub mod fault_proxy;
pub mod registry;
pub mod token_issuer;

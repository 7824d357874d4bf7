//! The embedded Kubernetes-API-compatible dev cluster.

//! Kubernetes API machinery without I/O: selectors, patches, server-side apply field sets.

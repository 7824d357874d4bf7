//! Container images: references, manifests, deterministic layers, registry client, local store.

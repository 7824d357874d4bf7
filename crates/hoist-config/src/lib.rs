//! Project model: hoist.yaml, service manifests, molds, settings overlay, render.

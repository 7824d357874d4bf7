//! Output formats shared by every command: readable text for people, JSON for scripts.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// Human-readable text (tables, summaries).
    #[default]
    Text,
    /// One JSON document (or one JSON event per line for streams).
    Json,
    /// YAML documents (for commands that emit Kubernetes objects).
    Yaml,
}

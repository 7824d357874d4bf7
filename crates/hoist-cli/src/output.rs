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

/// A byte count for people (`18.76 MiB`); JSON output keeps exact numbers.
pub fn human_bytes(n: u64) -> String {
    hoist_oci::indicatif::HumanBytes(n).to_string()
}

/// `1 layer`, `2 layers`: a count with its noun.
pub fn count(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_counts_read_naturally() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(2390), "2.33 KiB");
        assert_eq!(human_bytes(157_336_288), "150.05 MiB");
        assert_eq!(count(1, "layer"), "1 layer");
        assert_eq!(count(0, "layer"), "0 layers");
        assert_eq!(count(9, "blob"), "9 blobs");
    }
}

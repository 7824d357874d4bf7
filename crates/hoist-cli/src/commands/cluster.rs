use std::process::ExitCode;

use clap::Subcommand;

use crate::cli::GlobalOpts;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {}

pub fn run(cmd: ClusterCommand, _g: &GlobalOpts) -> miette::Result<ExitCode> {
    match cmd {}
}

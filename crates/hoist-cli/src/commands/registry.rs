use std::process::ExitCode;

use clap::Subcommand;

use crate::cli::GlobalOpts;

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {}

pub fn run(cmd: RegistryCommand, _g: &GlobalOpts) -> miette::Result<ExitCode> {
    match cmd {}
}

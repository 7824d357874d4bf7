//! The command tree. Each command's arguments live in its own module under
//! `commands/`, so help text, completions and behaviour are defined once.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands;

#[derive(Debug, Parser)]
#[command(
    name = "hoist",
    version,
    about = "Fast, pleasant development of microservices on Kubernetes",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalOpts {
    /// Run as if hoist was started in DIR (the project is found by walking up from there).
    #[arg(short = 'C', long = "directory", global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// More log output (-v, -vv); HOIST_LOG=<filter> overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scaffold a new project: hoist.yaml, a mold, an example service, settings.
    Init(commands::init::InitArgs),
    /// Check the whole project and report every problem at once.
    Validate(commands::validate::ValidateArgs),
    /// List discovered services with mold, image source, dependencies and state.
    #[command(visible_alias = "ls")]
    Services(commands::services::ServicesArgs),
    /// Print the Kubernetes objects the project produces (deterministic).
    Render(commands::render::RenderArgs),
    /// Build, inspect and copy container images without a Docker daemon.
    #[command(subcommand)]
    Image(commands::image::ImageCommand),
    /// Log in to and out of container registries.
    #[command(subcommand)]
    Registry(commands::registry::RegistryCommand),
    /// Run the embedded Kubernetes-compatible dev cluster.
    #[command(subcommand)]
    Cluster(commands::cluster::ClusterCommand),
    /// Render, apply (server-side), prune and wait for readiness; images must exist.
    Deploy(commands::deploy::DeployArgs),
    /// Build, deploy and wait for the services, then port-forward, stream logs and watch.
    Up(commands::up::UpArgs),
    /// One pass for CI: everything up and ready, then the project's tests; exit 0 or 1.
    Ci(commands::ci::CiArgs),
    /// Delete everything hoist deployed for this project and developer.
    Down(commands::down::DownArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions(commands::completions::CompletionsArgs),
}

//! `hoist registry login|logout`: credentials where Docker keeps them, the credential
//! helper config.json names for the registry or else its `auths`.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use hoist_oci::auth::{self, Credential};
use hoist_oci::client::{ClientOptions, RegistryClient};
use hoist_oci::{Reference, block_on};
use miette::{IntoDiagnostic, miette};

use crate::cli::GlobalOpts;

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Check credentials against a registry and store them in Docker's config.json.
    Login(LoginArgs),
    /// Remove a registry's stored credentials.
    Logout(LogoutArgs),
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host[:port] (e.g. ghcr.io, 127.0.0.1:5000), or as a URL (https://ghcr.io/).
    pub registry: String,
    #[arg(short, long)]
    pub username: String,
    /// Password (prefer --password-stdin: command lines are visible to other users).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Talk plain HTTP to this registry even if it is not on loopback.
    #[arg(long)]
    pub insecure: bool,
    /// Extra CA certificates (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    pub registry: String,
}

pub fn run(cmd: RegistryCommand, _g: &GlobalOpts) -> miette::Result<ExitCode> {
    match cmd {
        RegistryCommand::Login(a) => login(a),
        RegistryCommand::Logout(a) => {
            let registry = auth::registry_arg(&a.registry).into_diagnostic()?;
            let (stored, removed) = block_on(auth::remove(&registry)).into_diagnostic()?;
            if removed {
                outln!("removed credentials for {registry} from {stored}");
            } else {
                outln!("no stored credentials for {registry} in {stored}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn login(a: LoginArgs) -> miette::Result<ExitCode> {
    let password = match (&a.password, a.password_stdin) {
        (Some(p), _) => p.clone(),
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .into_diagnostic()?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
        (None, false) if std::io::stdin().is_terminal() => {
            return Err(miette!("no password given: use --password-stdin (or -p)"));
        }
        (None, false) => return Err(miette!("no password given: use --password-stdin (or -p)")),
    };
    if password.is_empty() {
        return Err(miette!("empty password"));
    }
    let registry = auth::registry_arg(&a.registry).into_diagnostic()?;
    // A reference on the registry makes the client pick scheme and host like any other call.
    let probe = Reference::parse(&format!("{registry}/hoist-login-probe")).into_diagnostic()?;
    let mut opts = ClientOptions::from_env().into_diagnostic()?;
    if let Some(f) = &a.ca_file {
        opts.ca_file = Some(f.clone());
    }
    if a.insecure {
        opts.insecure.push(registry.clone());
    }
    let client = RegistryClient::new(opts).into_diagnostic()?;
    client.set_credential(
        &probe.registry,
        Credential::Basic {
            username: a.username.clone(),
            password: password.clone(),
        },
    );
    block_on(client.ping(&probe)).map_err(|e| match e {
        // The generic 401 text tells to log in, which is what failed here.
        hoist_oci::Error::Unauthorized { sent: true, .. } => miette!(
            help = "check the username and the password",
            "login to {registry} failed: it refused user {:?} with this password (HTTP 401)",
            a.username
        ),
        e => miette!("login to {registry} failed: {e}"),
    })?;
    let stored =
        block_on(auth::store(&probe.registry, &a.username, &password)).into_diagnostic()?;
    outln!("login succeeded; credentials for {registry} stored in {stored}");
    Ok(ExitCode::SUCCESS)
}

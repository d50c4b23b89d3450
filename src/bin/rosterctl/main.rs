//! `rosterctl`: the admin CLI for rosterd. It only talks HTTP to the daemon's admin
//! API (`/api/v1`); it never opens the store.
//!
//! # Layout
//!
//! - `cli`: the command line (clap): commands, flags, environment variables.
//! - `client`: the token (flag, variable or `./data/admin.token`) and a JSON client
//!   that maps transport and API failures to [`error::CtlError`].
//! - `error`: the error kinds and their exit codes (1 refused, 2 usage, 3 unreachable).
//! - `employees`, `bulk`, `audit`, `catalog`, `sync`, `outbox`: one handler per command; each reads
//!   its flags, calls the API through `client` and prints through `output`.
//! - `model`: the API's JSON shapes as read here; `output`: tables and `key: value` text.
//!
//! Calls point one way: `main` → handlers → `client`/`output`.

mod audit;
mod bulk;
mod catalog;
mod cli;
mod client;
mod employees;
mod error;
mod model;
mod outbox;
mod output;
mod sync;

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, Command};
use client::Client;
use error::CtlError;

fn main() -> ExitCode {
    // Usage errors exit with 2 (clap's default); --help and --version with 0.
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CtlError::failed(format!("cannot start the async runtime: {e}")))
        .and_then(|rt| rt.block_on(run(cli, &matches)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report();
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli, matches: &clap::ArgMatches) -> Result<(), CtlError> {
    let base = client::parse_base_url(&cli.url)?;
    let token = client::resolve_token(&cli, matches)?;
    let client = Client::new(base, token, Duration::from_secs(cli.timeout))?;
    match cli.command {
        Command::Employees(cmd) => employees::run(&client, cmd).await,
        Command::Bulk(args) => bulk::run(&client, args).await,
        Command::Audit(args) => audit::run(&client, args).await,
        Command::Catalog(args) => catalog::run(&client, args).await,
        Command::Sync(cmd) => sync::run(&client, cmd).await,
        Command::Outbox(cmd) => outbox::run(&client, cmd).await,
    }
}

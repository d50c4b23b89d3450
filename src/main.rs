//! `rosterd`: parse the command line, load the config, start tracing, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "rosterd",
    version,
    about = "Directory sync daemon for the employee roster"
)]
struct Cli {
    /// Config file [default: ./config/rosterd.toml if present, else /etc/rosterd/rosterd.toml]
    #[arg(long, global = true, env = "ROSTERD_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "ROSTERD_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the config and exit: 0 if valid, 1 with the reason if not.
    CheckConfig,
    /// Create or upgrade the store's schema ([store]; also done at start) and exit.
    Migrate,
    /// Work on a store as a whole (`rosterd store copy`).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Send a test message with the [mail] settings to prove they work.
    SendTestEmail {
        /// Recipient address.
        #[arg(long, value_name = "ADDR")]
        to: String,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy everything a store holds into a new, empty store (sled to
    /// PostgreSQL or back): employees with their ids and versions, the audit
    /// log with its sequence numbers, the outbox, sync runs and plans,
    /// positions, sessions. Stop the daemon first.
    #[command(after_help = STORE_SPECS)]
    Copy {
        /// The store to read (see below).
        #[arg(long, value_name = "STORE")]
        from: String,
        /// The new store to write; it must be empty (see below).
        #[arg(long, value_name = "STORE")]
        to: String,
    },
}

const STORE_SPECS: &str = "\
A STORE is one of:
  sled:PATH           the sled store directory (<data_dir>/store; a data_dir holding one works too)
  sled:config         the sled store under the config's data_dir
  postgres:env:NAME   PostgreSQL, the URL in environment variable NAME
  postgres:file:PATH  PostgreSQL, the URL in a file (e.g. mode 0600)
  postgres:config     PostgreSQL as the config's [store] says (url / url_file / url_env)
  postgres:URL        a URL without a password (one with a password is refused: the
                      command line is visible to other users)
The URL is never printed: messages show it with the password as ***.

Example:
  ROSTERD_PG=postgres://rosterd:secret@db:5432/rosterd \\
    rosterd store copy --from sled:/var/lib/rosterd/store --to postgres:env:ROSTERD_PG";

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("ROSTERD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // Under systemd (JOURNAL_STREAM set), journald stamps each line itself.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    match (format, journald) {
        (LogFormat::Human, false) => builder.init(),
        (LogFormat::Human, true) => builder.without_time().init(),
        (LogFormat::Json, _) => builder.json().init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// SIGHUP (`systemctl reload`) as reload requests. Registered before the daemon
/// starts, so an early SIGHUP cannot kill the process; SIGHUPs that arrive while
/// a reload is pending are merged into it.
fn hangups() -> tokio::sync::mpsc::Receiver<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP received");
                    if let Err(tokio::sync::mpsc::error::TrySendError::Closed(())) =
                        reload_tx.try_send(())
                    {
                        break;
                    }
                }
            });
        }
        Err(e) => tracing::error!(error = %e, "cannot listen for SIGHUP; config reload is off"),
    }
    reload_rx
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("rosterd: cannot start the async runtime: {e}");
            None
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    if let Some(Command::Store(StoreCommand::Copy { from, to })) = &cli.command {
        // The config is read only if a store names it.
        return store_copy(cli.config.as_deref(), from, to);
    }
    let config = match rosterd::config::resolve_path(cli.config.as_deref())
        .and_then(|p| rosterd::config::load(&p))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rosterd: invalid config: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            println!("{}: config is valid", config.file.display());
            ExitCode::SUCCESS
        }
        Command::Migrate => {
            match rosterd::store::Store::migrate(&config.store, &config.data_dir.join("store")) {
                Ok(said) => {
                    println!("{said}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("rosterd: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Store(_) => ExitCode::SUCCESS,
        Command::SendTestEmail { to } => {
            let Some(mail) = config.mail.clone() else {
                eprintln!(
                    "rosterd: {}: no [mail] section; add one (see config/rosterd.toml) to send mail",
                    config.file.display()
                );
                return ExitCode::from(1);
            };
            let Some(rt) = runtime() else {
                return ExitCode::from(1);
            };
            let result = rt.block_on(async {
                let mailer = rosterd::mail::Mailer::new(mail)?;
                mailer.send_test(&to).await?;
                anyhow::Ok(())
            });
            match result {
                Ok(()) => {
                    println!("test message to {to} accepted by the SMTP server");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("rosterd: test message not sent: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Run => {
            let Some(rt) = runtime() else {
                return ExitCode::from(1);
            };
            tracing::info!(config = %config.file.display(), "starting rosterd {}", env!("CARGO_PKG_VERSION"));
            let result = rt.block_on(async {
                let reload_rx = hangups();
                rosterd::daemon::run_with_reload(config, shutdown_signal(), reload_rx).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("rosterd: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `rosterd store copy`: progress on stderr (a bar on a terminal), the
/// summary per table on stdout.
fn store_copy(config: Option<&std::path::Path>, from: &str, to: &str) -> ExitCode {
    use rosterd::store::copy;
    use std::io::IsTerminal;
    let env: Vec<(String, String)> = std::env::vars().collect();
    let load = || {
        rosterd::config::resolve_path(config)
            .and_then(|p| rosterd::config::load(&p))
            .map(|c| (c.store.clone(), c.data_dir.clone()))
            .map_err(Box::<dyn std::error::Error>::from)
    };
    let endpoints = copy::parse_endpoint(from, &env, &load)
        .map_err(|e| format!("--from {e}"))
        .and_then(|f| {
            copy::parse_endpoint(to, &env, &load)
                .map(|t| (f, t))
                .map_err(|e| format!("--to {e}"))
        });
    let (from, to) = match endpoints {
        Ok(e) => e,
        Err(e) => {
            eprintln!("rosterd: {e}");
            return ExitCode::from(2);
        }
    };
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} rows {wide_msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let last = std::sync::Mutex::new(None);
    let progress = |p: copy::Progress| {
        bar.set_length(p.total);
        bar.set_position(p.copied);
        let mut last = last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last != Some(p.table) {
            *last = Some(p.table);
            bar.set_message(p.table.name());
        }
    };
    eprintln!("copying {from} into {to}");
    // The active flag, for a target that keeps it (as the daemon classifies
    // records at start).
    let is_active = |body: &[u8]| {
        #[derive(serde::Deserialize)]
        struct Flag {
            active: bool,
        }
        serde_json::from_slice::<Flag>(body)
            .map(|f| f.active)
            .unwrap_or(true)
    };
    let started = std::time::Instant::now();
    match copy::copy(&from, &to, &is_active, &progress) {
        Ok(summary) => {
            bar.finish_and_clear();
            println!(
                "copied {from} into {to} in {:.1} s:",
                started.elapsed().as_secs_f64()
            );
            for (table, n) in &summary.tables {
                println!("  {:<16} {n}", table.name());
            }
            println!(
                "new ids continue at {}, audit sequence numbers at {}",
                summary.next.id, summary.next.audit_seq
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            bar.abandon();
            eprintln!("rosterd: store copy failed: {e}");
            ExitCode::from(1)
        }
    }
}

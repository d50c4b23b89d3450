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
    /// Send a test message with the [mail] settings to prove they work.
    SendTestEmail {
        /// Recipient address.
        #[arg(long, value_name = "ADDR")]
        to: String,
    },
}

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

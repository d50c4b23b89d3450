//! Wiring: open the store, set up the admin token, build the router, bind the
//! listener, start the sync schedules and the mail worker, serve until shutdown
//! (finishing in-flight requests and the message being sent), flush the store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tower_http::trace::TraceLayer;

use crate::admin::{self, AppState};
use crate::auth::{self, TokenSet};
use crate::config::{Config, NamedToken};
use crate::employee::Roster;
use crate::mail::Mailer;
use crate::mail::worker::MailWorker;
use crate::store::Store;
use crate::sync::SyncEngine;
use crate::sync::scheduler::Scheduler;

/// A running daemon (see [`start`]); [`Daemon::stop`] shuts it down cleanly.
pub struct Daemon {
    /// The address the listener is bound to (useful with port 0).
    pub addr: SocketAddr,
    /// Where the generated admin token is, when no token is configured.
    pub admin_token_file: Option<PathBuf>,
    pub roster: Roster,
    pub sync: SyncEngine,
    scheduler: Option<Scheduler>,
    notifier: Option<JoinHandle<()>>,
    /// The mail worker's stop signal and task, when `[mail]` is configured.
    mail: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    shutdown_tx: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Daemon {
    /// Stops accepting, finishes in-flight requests, flushes the store.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        crate::notify::stopping();
        if let Some(t) = self.notifier.take() {
            t.abort();
        }
        if let Some(s) = self.scheduler.take() {
            s.shutdown().await;
        }
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        if let Some((stop_tx, task)) = self.mail.take() {
            let _ = stop_tx.send(true);
            if let Err(e) = task.await {
                tracing::error!(error = %e, "mail worker task failed");
            }
        }
        self.wait().await
    }

    async fn wait(self) -> anyhow::Result<()> {
        self.server
            .await
            .context("while waiting for the HTTP server task")?
            .context("while serving HTTP")?;
        self.roster
            .store()
            .flush()
            .await
            .context("while flushing the store at shutdown")?;
        tracing::info!("store flushed; stopped");
        Ok(())
    }
}

/// Opens the store, binds the listener and starts serving in the background.
pub async fn start(config: Config) -> anyhow::Result<Daemon> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "while creating data_dir {} (set data_dir or ROSTERD_DATA_DIR to a writable directory)",
            config.data_dir.display()
        )
    })?;
    let store = Store::open(&config.data_dir.join("store")).context("while opening the store")?;

    let (tokens, admin_token_file) = if config.admin_tokens.is_empty() {
        let (token, path, created) = auth::ensure_generated_admin_token(&config.data_dir)
            .with_context(|| {
                format!(
                    "while setting up the admin token in {}",
                    config.data_dir.display()
                )
            })?;
        if created {
            tracing::info!(path = %path.display(), "no admin token configured; generated one (mode 0600)");
        } else {
            tracing::info!(path = %path.display(), "using the generated admin token");
        }
        (
            vec![NamedToken {
                name: auth::GENERATED_TOKEN_NAME.into(),
                token,
            }],
            Some(path),
        )
    } else {
        (config.admin_tokens.clone(), None)
    };

    let roster = Roster::new(
        store,
        config.catalog.clone(),
        config.password_policy.clone(),
        config.photo_max_bytes,
    )
    .with_accounts(config.accounts.clone());
    let sync = SyncEngine::new(roster.clone(), config.sources.clone())
        .context("while opening the sync run history")?;
    let state = AppState {
        roster: roster.clone(),
        admin_tokens: Arc::new(TokenSet::new(&tokens)),
        sync: sync.clone(),
        login_limits: Arc::new(crate::ratelimit::LoginLimits::new(&config.accounts)),
    };
    roster
        .load_positions()
        .await
        .context("while loading the catalog's positions from the store")?;
    let metrics = crate::metrics::Metrics::new(roster.clone(), sync.clone());
    let metrics_route = axum::Router::new()
        .route("/metrics", axum::routing::get(crate::metrics::metrics_get))
        .with_state(metrics.clone());
    let mut app = admin::routes(config.max_body_bytes, config.photo_max_bytes)
        .with_state(state)
        .merge(metrics_route);
    let mut scim_config = config.scim.clone();
    if scim_config.clients.is_empty() && scim_config.generate_token {
        let (token, path, created) =
            auth::ensure_generated_token(&config.data_dir, auth::GENERATED_SCIM_TOKEN_FILE)
                .with_context(|| {
                    format!(
                        "while setting up the SCIM token in {}",
                        config.data_dir.display()
                    )
                })?;
        if created {
            tracing::info!(path = %path.display(), "scim.generate_token: generated a SCIM token (mode 0600) for client `default`");
        }
        scim_config.clients.push(NamedToken {
            name: "default".into(),
            token,
        });
    }
    if scim_config.clients.is_empty() {
        tracing::info!("SCIM is off (no [[scim.clients]] configured)");
    } else {
        let scim_state =
            crate::scim::ScimState::new(roster.clone(), &scim_config, config.max_body_bytes);
        app = app.nest(
            crate::scim::BASE_PATH,
            crate::scim::routes(config.max_body_bytes).with_state(scim_state),
        );
        tracing::info!(
            clients = scim_config.clients.len(),
            "SCIM on at {}",
            crate::scim::BASE_PATH
        );
    }
    let app = app
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track,
        ))
        .layer(TraceLayer::new_for_http());

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "while binding {} (set listen or ROSTERD_LISTEN to a free address)",
                config.listen
            )
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, employees = roster.store().len(), "listening on http://{addr}");

    let scheduler = Scheduler::start(sync.clone())
        .await
        .context("while starting the sync schedules")?;
    let mail = match &config.mail {
        Some(mc) => {
            let mailer = Mailer::new(mc.clone()).context("while setting up [mail]")?;
            let (stop_tx, stop_rx) = watch::channel(false);
            let worker = MailWorker::new(roster.clone(), mailer);
            Some((stop_tx, tokio::spawn(worker.run(stop_rx))))
        }
        None => {
            let waiting = roster
                .outbox(false)
                .map(|m| {
                    m.iter()
                        .filter(|m| m.state == crate::store::DeliveryState::Pending)
                        .count()
                })
                .unwrap_or(0);
            tracing::info!(
                waiting,
                "mail is off (no [mail] section); invitations and resets wait in the outbox"
            );
            None
        }
    };
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    crate::notify::ready(&crate::notify::status_line(&roster, &sync));
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = shutdown_rx.await;
            tracing::info!("shutting down: no new connections, finishing requests");
        })
        .await
    });
    let notifier = crate::notify::start(roster.clone(), sync.clone());
    Ok(Daemon {
        notifier: Some(notifier),
        addr,
        admin_token_file,
        roster,
        sync,
        scheduler: Some(scheduler),
        mail,
        shutdown_tx: Some(shutdown_tx),
        server,
    })
}

/// Runs the daemon until `shutdown` completes, then stops cleanly.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let daemon = start(config).await?;
    shutdown.await;
    daemon.stop().await
}

//! Wiring: open the store, set up the admin token, build the router, bind the
//! listener, serve until shutdown (finishing in-flight requests), flush the store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::trace::TraceLayer;

use crate::admin::{self, AppState};
use crate::auth::{self, TokenSet};
use crate::config::{Config, NamedToken};
use crate::employee::Roster;
use crate::store::Store;

/// A running daemon (see [`start`]); [`Daemon::stop`] shuts it down cleanly.
pub struct Daemon {
    /// The address the listener is bound to (useful with port 0).
    pub addr: SocketAddr,
    /// Where the generated admin token is, when no token is configured.
    pub admin_token_file: Option<PathBuf>,
    pub roster: Roster,
    shutdown_tx: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Daemon {
    /// Stops accepting, finishes in-flight requests, flushes the store.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
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
    );
    let state = AppState {
        roster: roster.clone(),
        admin_tokens: Arc::new(TokenSet::new(&tokens)),
    };
    roster
        .load_positions()
        .await
        .context("while loading the catalog's positions from the store")?;
    let mut app = admin::routes(config.max_body_bytes, config.photo_max_bytes).with_state(state);
    if config.scim.clients.is_empty() {
        tracing::info!("SCIM is off (no [[scim.clients]] configured)");
    } else {
        let scim_state =
            crate::scim::ScimState::new(roster.clone(), &config.scim, config.max_body_bytes);
        app = app.nest(
            crate::scim::BASE_PATH,
            crate::scim::routes(config.max_body_bytes).with_state(scim_state),
        );
        tracing::info!(
            clients = config.scim.clients.len(),
            "SCIM on at {}",
            crate::scim::BASE_PATH
        );
    }
    let app = app.layer(TraceLayer::new_for_http());

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

    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = shutdown_rx.await;
                tracing::info!("shutting down: no new connections, finishing requests");
            })
            .await
    });
    Ok(Daemon {
        addr,
        admin_token_file,
        roster,
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

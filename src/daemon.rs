//! Wiring: open the store, set up the admin token, build the router, bind the
//! listener, start the sync schedules and the mail worker, serve until shutdown
//! (finishing in-flight requests and the message being sent), flush the store.
//!
//! A reload ([`Daemon::reload`], on SIGHUP) puts a new validated config in force
//! without a restart: admin and SCIM client tokens, the catalog, the sync sources
//! and their schedules, the mail settings. Settings baked into the listener or the
//! router (listen address, data_dir, body limits, turning SCIM on...) are logged
//! as needing a restart and otherwise ignored.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tower_http::trace::TraceLayer;

use crate::admin::{self, AppState};
use crate::auth::{self, SharedTokens, TokenSet};
use crate::config::{Config, NamedToken, ScimConfig};
use crate::employee::Roster;
use crate::mail::Mailer;
use crate::mail::worker::MailWorker;
use crate::sync::SyncEngine;
use crate::sync::scheduler::Scheduler;

/// How long a stop waits for sync runs in flight to end (well inside systemd's
/// stop timeout).
const SYNC_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A running daemon (see [`start`]); [`Daemon::stop`] shuts it down cleanly.
pub struct Daemon {
    /// The address the listener is bound to (useful with port 0).
    pub addr: SocketAddr,
    /// Where the generated admin token is, when no token is configured.
    pub admin_token_file: Option<PathBuf>,
    pub roster: Roster,
    pub sync: SyncEngine,
    /// The config in force (the last one applied).
    config: Config,
    admin_tokens: SharedTokens,
    /// The SCIM layer's state (settings and client tokens), when SCIM was on at
    /// start.
    scim: Option<crate::scim::ScimState>,
    scheduler: Option<Scheduler>,
    notifier: Option<JoinHandle<()>>,
    /// The mail worker's stop signal and task, when `[mail]` is configured.
    mail: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    shutdown_tx: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Daemon {
    /// Stops every background task in order, each by name, and awaits it:
    /// the notifier, the schedules (no new run), the sync runs in flight (they
    /// end at their next batch, recorded `interrupted`, or complete), the
    /// listeners (in-flight requests finish), the mail worker (the message
    /// being sent finishes); then flushes the store.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        crate::notify::stopping();
        if let Some(t) = self.notifier.take() {
            t.abort();
            let _ = t.await;
            tracing::debug!(task = "notifier", "stopped");
        }
        if let Some(s) = self.scheduler.take() {
            s.shutdown().await;
            tracing::debug!(task = "scheduler", "stopped");
        }
        // One still going at the timeout is marked at the next start.
        let ended = self.sync.shutdown(SYNC_STOP_TIMEOUT).await;
        tracing::debug!(task = "sync runs", all_ended = ended, "stopped");
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        self.stop_mail().await;
        tracing::debug!(task = "mail worker", "stopped");
        self.wait().await
    }

    /// Stops the mail worker, letting it finish the message being sent.
    async fn stop_mail(&mut self) {
        if let Some((stop_tx, task)) = self.mail.take() {
            let _ = stop_tx.send(true);
            if let Err(e) = task.await {
                tracing::error!(error = %e, "mail worker task failed");
            }
        }
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Re-reads the config file in force and applies it ([`Daemon::reload`]). A file
    /// that does not validate is logged, naming the key and the file, and the
    /// config in force stays.
    pub async fn reload_from_file(&mut self) {
        crate::notify::reloading();
        let file = self.config.file.clone();
        tracing::info!(config = %file.display(), "reloading the config");
        match crate::config::load(&file) {
            Ok(new) => {
                if let Err(e) = self.reload(new).await {
                    tracing::error!(config = %file.display(), "config reload failed: {e:#}");
                }
            }
            Err(e) => tracing::error!(
                config = %file.display(),
                key = %e.key,
                "config reload rejected, keeping the config in force: {e}"
            ),
        }
        crate::notify::ready(&crate::notify::status_line(&self.roster, &self.sync));
    }

    /// Puts `new` in force: admin tokens, SCIM settings and client tokens, the catalog, the sync
    /// sources and their schedules, the mail settings. Everything that can fail
    /// (token files, mail templates, the store) comes first, so an error there
    /// leaves the old config in force; only restarting the schedules can fail after
    /// the swap. Settings that need a restart are logged and ignored.
    pub async fn reload(&mut self, new: Config) -> anyhow::Result<()> {
        let unchanged = "the config in force is unchanged";
        self.log_needs_restart(&new);
        let (admin, _) = admin_tokens(&new).context(unchanged)?;
        let scim = match self.scim {
            Some(_) => Some(scim_clients(&new).context(unchanged)?),
            None => None,
        };
        let mailer = match &new.mail {
            Some(mc) => Some(
                Mailer::new(mc.clone())
                    .context("while setting up [mail]")
                    .context(unchanged)?,
            ),
            None => None,
        };
        self.roster
            .set_catalog(new.catalog.clone())
            .await
            .context("while putting the reloaded catalog in force")
            .context(unchanged)?;

        self.admin_tokens.replace(TokenSet::new(&admin));
        if let (Some(state), Some(scim)) = (&self.scim, &scim) {
            if scim.clients.is_empty() {
                tracing::warn!(
                    "no [[scim.clients]] in the reloaded config: every SCIM request is refused until a restart turns SCIM off"
                );
            }
            state.reconfigure(scim);
        }
        self.sync.set_sources(new.sources.clone());
        // The worker finishes the message it is sending before it stops.
        self.stop_mail().await;
        self.mail = mailer.map(|m| start_mail_worker(&self.roster, m));
        if self.mail.is_none() {
            tracing::info!("mail is off (no [mail] section); messages wait in the outbox");
        }
        let summary = (admin.len(), new.sources.len(), new.mail.is_some());
        self.config = new;

        // Scheduled runs already started finish; a tick of the new schedules that
        // finds one still running is skipped by the engine.
        if let Some(old) = self.scheduler.take() {
            old.shutdown().await;
        }
        self.scheduler = Some(Scheduler::restart(self.sync.clone()).await.context(
            "while starting the reloaded sync schedules; the rest of the reloaded config is in force, \
             no scheduled run happens until the next reload or restart",
        )?);
        tracing::info!(
            admin_tokens = summary.0,
            sources = summary.1,
            mail = summary.2,
            "config reloaded"
        );
        Ok(())
    }

    fn log_needs_restart(&self, new: &Config) {
        let old = &self.config;
        let mut keys = Vec::new();
        if old.listen != new.listen {
            keys.push("listen");
        }
        if old.listen_unix != new.listen_unix {
            keys.push("listen_unix");
        }
        if old.data_dir != new.data_dir {
            keys.push("data_dir");
        }
        if old.http != new.http {
            keys.push("http");
        }
        if old.max_body_bytes != new.max_body_bytes {
            keys.push("http.max_body_bytes");
        }
        if old.photo_max_bytes != new.photo_max_bytes {
            keys.push("photos.max_bytes");
        }
        if old.password_policy != new.password_policy {
            keys.push("password_policy");
        }
        if old.accounts != new.accounts {
            keys.push("accounts");
        }
        let scim_on = !new.scim.clients.is_empty() || new.scim.generate_token;
        if self.scim.is_none() && scim_on {
            keys.push("scim.clients (turning SCIM on)");
        }
        for key in keys {
            tracing::warn!(key, "config change needs a restart; ignored until then");
        }
    }

    async fn wait(self) -> anyhow::Result<()> {
        self.server
            .await
            .context("while waiting for the HTTP server task")?
            .context("while serving HTTP")?;
        tracing::debug!(task = "listeners", "stopped");
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
    start_with_clock(config, crate::employee::account::Clock::system()).await
}

/// [`start`] with the clock account links expire by (a test moves it forward).
pub async fn start_with_clock(
    config: Config,
    clock: crate::employee::account::Clock,
) -> anyhow::Result<Daemon> {
    let store = open_store(&config)?;
    let (tokens, admin_token_file) = admin_tokens(&config)?;
    let roster = open_roster(store, &config, clock)?;
    let sync = SyncEngine::new(roster.clone(), config.sources.clone())
        .context("while opening the sync run history")?;
    let admin_tokens = SharedTokens::new(TokenSet::new(&tokens));
    let (app, scim) = build_app(&config, &roster, &sync, &admin_tokens).await?;
    let (listener, unix_listener) = bind_listeners(&config).await?;
    let addr = listener.local_addr()?;
    let opts = serve_options(&config);
    tracing::info!(%addr, employees = roster.counts().total, "listening on http://{addr}");

    let scheduler = Scheduler::start(sync.clone())
        .await
        .context("while starting the sync schedules")?;
    let mail = start_mail(&config, &roster)?;
    crate::notify::ready(&crate::notify::status_line(&roster, &sync));
    let (shutdown_tx, server) = spawn_servers(listener, unix_listener, app, opts);
    let notifier = crate::notify::start(roster.clone(), sync.clone());
    Ok(Daemon {
        notifier: Some(notifier),
        addr,
        admin_token_file,
        roster,
        sync,
        config,
        admin_tokens,
        scim,
        scheduler: Some(scheduler),
        mail,
        shutdown_tx: Some(shutdown_tx),
        server,
    })
}

/// The data directory made private and the store in it opened.
fn open_store(config: &Config) -> anyhow::Result<crate::store::Store> {
    // The data directory holds the store and the generated tokens: private to
    // the daemon's user (0700, files 0600) whatever umask it was started with.
    crate::secret::private_umask();
    crate::secret::restrict_dir(&config.data_dir, false).with_context(|| {
        format!(
            "while creating data_dir {} with mode 0700 (set data_dir or ROSTERD_DATA_DIR to a writable directory)",
            config.data_dir.display()
        )
    })?;
    crate::store::Store::open_config(&config.store, &config.data_dir.join("store"))
        .context("while opening the store")
}

/// The roster over the store, with the config's plain values (catalog,
/// password policy, photo limit, link lifetimes).
fn open_roster(
    store: crate::store::Store,
    config: &Config,
    clock: crate::employee::account::Clock,
) -> anyhow::Result<Roster> {
    Ok(Roster::open(
        store,
        config.catalog.clone(),
        config.password_policy.clone(),
        config.photo_max_bytes,
    )
    .context("while reading the stored profiles")?
    .with_accounts(config.accounts.clone())
    .with_clock(clock))
}

/// The whole HTTP app: the admin API, /metrics, the web console and, when
/// clients are configured, SCIM (its state is returned for reloads), with
/// the request metrics and tracing layers. Loads the stored positions first.
async fn build_app(
    config: &Config,
    roster: &Roster,
    sync: &SyncEngine,
    admin_tokens: &SharedTokens,
) -> anyhow::Result<(axum::Router, Option<crate::scim::ScimState>)> {
    let state = AppState {
        roster: roster.clone(),
        admin_tokens: admin_tokens.clone(),
        sync: sync.clone(),
        login_limits: Arc::new(crate::ratelimit::LoginLimits::new(
            config.accounts.login_max_attempts_per_address,
            config.accounts.login_max_failures,
            config.accounts.login_window,
        )),
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
        .with_state(state.clone())
        .merge(metrics_route)
        .merge(crate::web::routes(state));
    let scim_config = scim_clients(config)?;
    let scim = if scim_config.clients.is_empty() {
        tracing::info!("SCIM is off (no [[scim.clients]] configured)");
        None
    } else {
        let scim_state =
            crate::scim::ScimState::new(roster.clone(), &scim_config, config.max_body_bytes);
        let handle = scim_state.clone();
        app = app.nest(
            crate::scim::BASE_PATH,
            crate::scim::routes(config.max_body_bytes).with_state(scim_state),
        );
        tracing::info!(
            clients = scim_config.clients.len(),
            "SCIM on at {}",
            crate::scim::BASE_PATH
        );
        Some(handle)
    };
    let app = app
        .layer(axum::middleware::from_fn_with_state(
            roster.clone(),
            follow_first,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(crate::serve::request_span));
    Ok((app, scim))
}

/// On a shared store, a request first catches up with the other nodes'
/// writes as a task ([`Roster::follow_async`]), so that its handler reads
/// from memory without waiting on a thread. Not the health checks: they read
/// nothing of the roster, and must answer at once while the database fails
/// over.
async fn follow_first(
    axum::extract::State(roster): axum::extract::State<Roster>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !matches!(req.uri().path(), "/healthz" | "/readyz") {
        roster.follow_async().await;
    }
    next.run(req).await
}

/// The TCP listener (socket-activated, or bound to `listen`) and the unix
/// socket (with `listen_unix`).
async fn bind_listeners(
    config: &Config,
) -> anyhow::Result<(tokio::net::TcpListener, Option<tokio::net::UnixListener>)> {
    let listener = match socket_activated()? {
        Some(l) => {
            tracing::info!("using the socket-activated listener (LISTEN_FDS); `listen` is ignored");
            l
        }
        None => tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| {
                format!(
                    "while binding {} (set listen or ROSTERD_LISTEN to a free address)",
                    config.listen
                )
            })?,
    };
    let unix_listener = match &config.listen_unix {
        Some(path) => Some(bind_unix(path)?),
        None => None,
    };
    Ok((listener, unix_listener))
}

/// The mail worker, with `[mail]`; without it, says how many messages wait
/// in the outbox.
fn start_mail(
    config: &Config,
    roster: &Roster,
) -> anyhow::Result<Option<(watch::Sender<bool>, JoinHandle<()>)>> {
    let Some(mc) = &config.mail else {
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
        return Ok(None);
    };
    let mailer = Mailer::new(mc.clone()).context("while setting up [mail]")?;
    Ok(Some(start_mail_worker(roster, mailer)))
}

/// Serves `app` on the listeners in the background until the returned sender
/// fires (or is dropped): the TCP listener stops taking connections and
/// finishes its requests, and tells the unix listener to do the same; the
/// task ends when both have.
fn spawn_servers(
    listener: tokio::net::TcpListener,
    unix_listener: Option<tokio::net::UnixListener>,
    app: axum::Router,
    (tcp_opts, unix_opts): (crate::serve::ServeOptions, crate::serve::ServeOptions),
) -> (oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let (unix_stop_tx, unix_stop_rx) = oneshot::channel::<()>();
    let unix_app = app.clone();
    let unix_server = unix_listener.map(|l| {
        tokio::spawn(async move {
            crate::serve::serve(l, unix_app, unix_opts, async {
                let _ = unix_stop_rx.await;
            })
            .await
        })
    });
    let server = tokio::spawn(async move {
        let tcp = crate::serve::serve(listener, app, tcp_opts, async {
            let _ = shutdown_rx.await;
            tracing::info!("shutting down: no new connections, finishing requests");
            let _ = unix_stop_tx.send(());
        })
        .await;
        if let Some(u) = unix_server {
            match u.await {
                Ok(Err(e)) => tracing::error!(error = %e, "unix socket listener"),
                Err(e) => tracing::error!(error = %e, "unix socket listener task"),
                Ok(Ok(())) => {}
            }
        }
        tcp
    });
    (shutdown_tx, server)
}

/// The serving options of the TCP and unix listeners: the open-file limit is
/// raised to its hard limit, and the connection cap kept below it (shared by the
/// two listeners, three quarters to TCP when both are on).
fn serve_options(config: &Config) -> (crate::serve::ServeOptions, crate::serve::ServeOptions) {
    let nofile = crate::serve::raise_nofile_limit();
    let cap = crate::serve::connection_cap(config.http.max_connections, nofile);
    let (tcp_cap, unix_cap) = match config.listen_unix {
        Some(_) => ((cap * 3 / 4).max(1), (cap / 4).max(1)),
        None => (cap, 1),
    };
    tracing::info!(
        open_file_limit = nofile,
        max_connections = cap,
        "connection cap (kept below the open-file limit)"
    );
    if config.listen_unix.is_some() && !config.http.trusted_proxies.trusts_unix() {
        tracing::info!(
            "the per-address sign-in limit is off for the unix socket (its clients have no address); \
             add \"unix\" to [http] trusted_proxies when a reverse proxy connects there and sends X-Forwarded-For"
        );
    }
    let opts = |max_connections| crate::serve::ServeOptions {
        settings: config.http.clone(),
        max_connections,
        // The photo routes take bodies up to the photo limit (the console's
        // form, with its other fields, a little more).
        max_body_bytes: config
            .max_body_bytes
            .max(config.photo_max_bytes + crate::web::form::FORM_ALLOWANCE),
    };
    (opts(tcp_cap), opts(unix_cap))
}

fn start_mail_worker(roster: &Roster, mailer: Mailer) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = MailWorker::new(roster.clone(), mailer);
    (stop_tx, tokio::spawn(worker.run(stop_rx)))
}

/// The admin tokens of `config`: the configured ones, else the generated token
/// (created in data_dir on first use), with that file's path.
fn admin_tokens(config: &Config) -> anyhow::Result<(Vec<NamedToken>, Option<PathBuf>)> {
    if !config.admin_tokens.is_empty() {
        return Ok((config.admin_tokens.clone(), None));
    }
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
    Ok((
        vec![NamedToken {
            name: auth::GENERATED_TOKEN_NAME.into(),
            token,
        }],
        Some(path),
    ))
}

/// The SCIM settings of `config`, with the generated client token added when
/// `scim.generate_token` is set and no client is configured.
fn scim_clients(config: &Config) -> anyhow::Result<ScimConfig> {
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
    Ok(scim_config)
}

/// The listening socket systemd passed (socket activation: `LISTEN_FDS`), if any.
fn socket_activated() -> anyhow::Result<Option<tokio::net::TcpListener>> {
    use std::os::fd::FromRawFd;
    let Some(fd) = sd_notify::listen_fds()
        .context("while reading LISTEN_FDS")?
        .next()
    else {
        return Ok(None);
    };
    // SAFETY: systemd hands this fd to us (LISTEN_PID is checked by listen_fds);
    // nothing else in the process owns it.
    let std_listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    std_listener
        .set_nonblocking(true)
        .context("while preparing the socket-activated listener")?;
    Ok(Some(
        tokio::net::TcpListener::from_std(std_listener)
            .context("while adopting the socket-activated listener (is it a TCP socket?)")?,
    ))
}

/// Binds the unix socket (replacing a stale socket file), mode 0660.
fn bind_unix(path: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)
                .with_context(|| format!("while removing the stale socket {}", path.display()))?;
        } else {
            anyhow::bail!(
                "listen_unix: {} exists and is not a socket; remove it or choose another path",
                path.display()
            );
        }
    }
    let l = tokio::net::UnixListener::bind(path).with_context(|| {
        format!(
            "while binding the unix socket {} (listen_unix)",
            path.display()
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("while setting the mode of {}", path.display()))?;
    tracing::info!(path = %path.display(), "also listening on unix socket");
    Ok(l)
}

/// Runs the daemon until `shutdown` completes, then stops cleanly.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (_reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    run_with_reload(config, shutdown, reload_rx).await
}

/// Like [`run`]; every message on `reload_rx` (SIGHUP) re-reads the config file
/// and applies it ([`Daemon::reload_from_file`]).
pub async fn run_with_reload(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
    mut reload_rx: tokio::sync::mpsc::Receiver<()>,
) -> anyhow::Result<()> {
    let mut daemon = start(config).await?;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = reload_rx.recv() => daemon.reload_from_file().await,
        }
    }
    daemon.stop().await
}

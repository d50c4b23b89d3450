//! Serving HTTP/1.1 on the listeners, with the limits a server facing anyone
//! needs (`axum::serve` has none of them):
//!
//! - a **header-read timeout**: a request's head must be complete within
//!   `[http] header_read_timeout_secs` of the connection starting to wait for it
//!   (when it opens, or after the previous response);
//! - an **idle timeout**: a connection on which no handler runs and no byte moves
//!   for `[http] idle_timeout_secs` is closed (a client that stops reading a
//!   response included; a handler waiting for a slow body is running, so not idle);
//! - a **cap on connections** ([`connection_cap`]: `[http] max_connections`, and
//!   always below the open-file limit): at the cap, the connection idle the
//!   longest (no handler running) is closed to make room, so sockets held open
//!   by anyone cannot keep `/healthz` out;
//! - an **early 413** for a declared `Content-Length` over the body limit, before
//!   the body is read;
//! - the **client's address**: each request carries a [`ClientInfo`] with the
//!   peer's address, or the forwarded one when the peer is a trusted proxy
//!   ([`TrustedProxies`]); forwarded headers from anyone else are ignored.
//!
//! [`raise_nofile_limit`] raises the soft open-file limit to the hard one at start.
//! Graceful shutdown: stop accepting, let each connection finish its request,
//! wait for all of them.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};

/// File descriptors kept free for everything that is not a client connection
/// (the store's files, LDAP, SMTP and HR connections, logs...).
pub const RESERVED_FDS: u64 = 128;

/// The `[http]` connection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Configured cap on open client connections (lowered below the file limit
    /// at start, see [`connection_cap`]).
    pub max_connections: usize,
    pub trusted_proxies: TrustedProxies,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

// ---------------------------------------------------------------------------
// Client addresses and trusted proxies.
// ---------------------------------------------------------------------------

/// One `trusted_proxies` entry: an address, a CIDR range, or the unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ProxyRule {
    Net(IpAddr, u8),
    Unix,
}

/// The peers whose `X-Forwarded-For` / `Forwarded` / `X-Forwarded-Host` /
/// `X-Forwarded-Proto` are believed (`[http] trusted_proxies`). Empty: none are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ProxyRule>);

/// A `trusted_proxies` entry that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("`{0}` is not an address, a CIDR range (\"10.0.0.0/8\") or \"unix\"")]
    NotAnAddress(String),
    #[error("`{entry}`: the prefix length must be 0 to {max}")]
    PrefixLength { entry: String, max: u8 },
}

impl TrustedProxies {
    /// Parses entries: `"127.0.0.1"`, `"10.0.0.0/8"`, `"::1"`, `"fd00::/8"`, or
    /// `"unix"` (whoever connects over `listen_unix`).
    pub fn parse(entries: &[String]) -> Result<Self, ProxyError> {
        let mut rules = Vec::new();
        for e in entries {
            let t = e.trim();
            if t.eq_ignore_ascii_case("unix") {
                rules.push(ProxyRule::Unix);
                continue;
            }
            let (addr, bits) = match t.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (t, None),
            };
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| ProxyError::NotAnAddress(e.clone()))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| {
                    ProxyError::PrefixLength {
                        entry: e.clone(),
                        max,
                    }
                })?,
                None => max,
            };
            rules.push(ProxyRule::Net(ip, bits));
        }
        Ok(Self(rules))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when the unix socket's peers are trusted.
    pub fn trusts_unix(&self) -> bool {
        self.0.contains(&ProxyRule::Unix)
    }

    /// True when `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|r| match r {
            ProxyRule::Net(net, bits) => in_net(ip, canonical(*net), *bits),
            ProxyRule::Unix => false,
        })
    }

    fn trusts_peer(&self, peer: &Peer) -> bool {
        match peer {
            Peer::Tcp(a) => self.trusts(a.ip()),
            Peer::Unix => self.trusts_unix(),
        }
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// How the connection reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix,
}

/// What the server believes about the client of a request (a request
/// extension, set for every request by [`serve`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address: the peer's, or the one a trusted proxy forwarded;
    /// `None` over a unix socket without a trusted proxy.
    pub ip: Option<IpAddr>,
    /// `X-Forwarded-Host` / `Forwarded: host=`, from a trusted proxy only.
    pub forwarded_host: Option<String>,
    /// `X-Forwarded-Proto` / `Forwarded: proto=`, from a trusted proxy only.
    pub forwarded_proto: Option<String>,
}

impl ClientInfo {
    /// Works out the client from the peer and, when the peer is trusted, the
    /// forwarded headers: the client is the right-most address of the chain
    /// that is not itself a trusted proxy (the left part can be made up by anyone).
    pub fn from_request(peer: &Peer, headers: &HeaderMap, trusted: &TrustedProxies) -> Self {
        let peer_ip = match peer {
            Peer::Tcp(a) => Some(canonical(a.ip())),
            Peer::Unix => None,
        };
        if !trusted.trusts_peer(peer) {
            return ClientInfo {
                ip: peer_ip,
                ..Default::default()
            };
        }
        let fwd = parse_forwarded(headers);
        let mut chain: Vec<IpAddr> = fwd.iter().filter_map(|e| e.for_ip).collect();
        if chain.is_empty() {
            chain = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(parse_node)
                .collect();
        }
        let mut ip = peer_ip;
        for hop in chain.iter().rev() {
            ip = Some(canonical(*hop));
            if !trusted.trusts(*hop) {
                break;
            }
        }
        let header = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let last = fwd.last();
        ClientInfo {
            ip,
            forwarded_host: last
                .and_then(|e| e.host.clone())
                .or_else(|| header("x-forwarded-host"))
                .filter(|h| valid_host(h)),
            forwarded_proto: last
                .and_then(|e| e.proto.clone())
                .or_else(|| header("x-forwarded-proto"))
                .map(|p| p.to_ascii_lowercase())
                .filter(|p| p == "http" || p == "https"),
        }
    }
}

/// A host (and port) fit for a URL: no spaces, slashes, `@` or control characters.
pub fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c))
}

#[derive(Debug, Default)]
struct ForwardedElement {
    for_ip: Option<IpAddr>,
    host: Option<String>,
    proto: Option<String>,
}

/// RFC 7239 `Forwarded`, element by element (every header line, in order).
fn parse_forwarded(headers: &HeaderMap) -> Vec<ForwardedElement> {
    let mut out = Vec::new();
    for v in headers.get_all(header::FORWARDED).iter() {
        let Ok(v) = v.to_str() else { continue };
        for element in v.split(',') {
            let mut e = ForwardedElement::default();
            for pair in element.split(';') {
                let Some((k, val)) = pair.split_once('=') else {
                    continue;
                };
                let val = val.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "for" => e.for_ip = parse_node(val),
                    "host" => e.host = Some(val.to_string()),
                    "proto" => e.proto = Some(val.to_string()),
                    _ => {}
                }
            }
            out.push(e);
        }
    }
    out
}

/// `1.2.3.4`, `1.2.3.4:80`, `[::1]`, `[::1]:80`, `::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a.ip());
    }
    None
}

/// The span of a request in the trace layer: method and path, never the query
/// string (a client may put a token in `?access_token=`, a filter may hold an
/// email address), nor any header.
pub fn request_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        version = ?req.version(),
    )
}

// ---------------------------------------------------------------------------
// The open-file limit.
// ---------------------------------------------------------------------------

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (where the process may) and
/// returns the soft limit in force.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass; no other memory.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            tracing::debug!(
                from = lim.rlim_cur,
                to = lim.rlim_max,
                "raised the open-file limit"
            );
            lim.rlim_cur = lim.rlim_max;
        }
    }
    lim.rlim_cur
}

/// The connection cap in force: `configured`, but at most the open-file limit
/// less [`RESERVED_FDS`] (and at least 16).
pub fn connection_cap(configured: usize, nofile: u64) -> usize {
    let room = nofile.saturating_sub(RESERVED_FDS).max(16);
    configured
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

// ---------------------------------------------------------------------------
// Listeners and connections.
// ---------------------------------------------------------------------------

/// A listener [`serve`] can accept from.
pub trait Listen: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Io, Peer)>> + Send;
}

impl Listen for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<(Self::Io, Peer)> {
        let (s, a) = tokio::net::TcpListener::accept(self).await?;
        let _ = s.set_nodelay(true);
        Ok((s, Peer::Tcp(a)))
    }
}

impl Listen for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&self) -> io::Result<(Self::Io, Peer)> {
        let (s, _) = tokio::net::UnixListener::accept(self).await?;
        Ok((s, Peer::Unix))
    }
}

/// Milliseconds since the server's epoch (for atomics).
fn millis(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What the server tracks about one open connection.
struct Conn {
    /// Handlers running on it.
    handlers: AtomicUsize,
    /// Last byte read or written, in ms since the epoch.
    active_at: AtomicU64,
    /// Told to close (evicted at the cap).
    close: Notify,
}

impl Conn {
    /// A handler is running on it.
    fn busy(&self) -> bool {
        self.handlers.load(Ordering::Acquire) > 0
    }

    /// How long since a byte last moved on it.
    fn idle_for(&self, epoch: Instant) -> Duration {
        Duration::from_millis(millis(epoch).saturating_sub(self.active_at.load(Ordering::Acquire)))
    }
}

/// The open connections, for the cap.
struct Conns {
    epoch: Instant,
    open: Mutex<std::collections::HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

impl Conns {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<Conn>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a connection; at the cap, first evicts the one idle the longest.
    /// `false` when every open connection is busy (the new one is refused).
    fn admit(&self, cap: usize) -> Option<(u64, Arc<Conn>)> {
        let mut open = self.lock();
        if open.len() >= cap {
            let victim = open
                .iter()
                .filter(|(_, c)| c.handlers.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, c)| c.active_at.load(Ordering::Acquire))
                .map(|(id, c)| (*id, c.clone()));
            let (id, c) = victim?;
            open.remove(&id);
            c.close.notify_one();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            handlers: AtomicUsize::new(0),
            active_at: AtomicU64::new(millis(self.epoch)),
            close: Notify::new(),
        });
        open.insert(id, conn.clone());
        Some((id, conn))
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// A connection's place in [`Conns`], given up when its task ends, even by a
/// panic (a leaked place would count against the cap for ever).
struct Registered {
    conns: Arc<Conns>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.conns.remove(self.id);
    }
}

/// An IO stream that records when a byte last moved.
struct Tracked<T> {
    inner: T,
    conn: Arc<Conn>,
    epoch: Instant,
}

impl<T> Tracked<T> {
    fn touch(&self) {
        self.conn
            .active_at
            .store(millis(self.epoch), Ordering::Release);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Counts a running handler for as long as it lives.
struct HandlerGuard(Arc<Conn>, Instant);

impl Drop for HandlerGuard {
    fn drop(&mut self) {
        self.0.active_at.store(millis(self.1), Ordering::Release);
        self.0.handlers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What [`serve`] needs besides the listener and the app.
#[derive(Clone)]
pub struct ServeOptions {
    pub settings: HttpSettings,
    /// The connection cap in force (see [`connection_cap`]).
    pub max_connections: usize,
    /// A declared `Content-Length` over this gets 413 before the body is read.
    pub max_body_bytes: usize,
}

/// The early 413 for a declared body over the limit (the connection is closed
/// after it, since the body is never read).
fn too_large(path: &str, limit: usize) -> Response {
    let message = format!("the request body is larger than the limit of {limit} bytes");
    let (ty, body) = if path.starts_with(crate::scim::BASE_PATH) {
        (
            crate::scim::error::SCIM_JSON,
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": "413",
                "detail": message,
            }),
        )
    } else if path.starts_with("/api/") {
        (
            "application/json",
            serde_json::json!({ "error": "payload_too_large", "message": message }),
        )
    } else {
        // A console form (a photo too big for even the early check): a page a
        // person can read, not JSON. Nothing in it comes from the request.
        let page = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Too large - rosterd</title></head><body><main><h1>Too large</h1>\
             <p>Nothing was saved: {message}. Go back and choose a smaller file.</p>\
             </main></body></html>"
        );
        let mut r = (
            StatusCode::PAYLOAD_TOO_LARGE,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, "default-src 'none'"),
            ],
            page,
        )
            .into_response();
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    };
    let mut r = (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONTENT_TYPE, ty)],
        body.to_string(),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn declared_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting
/// and waits for the open connections to finish their requests.
pub async fn serve<L: Listen>(
    listener: L,
    app: Router,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let conns = Arc::new(Conns {
        epoch: Instant::now(),
        open: Mutex::new(std::collections::HashMap::new()),
        next_id: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let http = Arc::new(http1_builder(&opts.settings));
    let trusted = Arc::new(opts.settings.trusted_proxies.clone());
    let mut refused_logged = false;
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some((id, conn)) = conns.admit(opts.max_connections) else {
            if !refused_logged {
                tracing::warn!(
                    max_connections = opts.max_connections,
                    "connection cap reached with every connection busy; refusing new ones"
                );
                refused_logged = true;
            }
            drop(io);
            continue;
        };
        refused_logged = false;
        let requests = PerRequest {
            app: app.clone(),
            trusted: trusted.clone(),
            conn,
            epoch: conns.epoch,
            peer,
            max_body: opts.max_body_bytes,
        };
        let registered = Registered {
            conns: conns.clone(),
            id,
        };
        tokio::spawn(drive_connection(
            http.clone(),
            io,
            requests,
            registered,
            stop_rx.clone(),
            opts.settings.idle_timeout,
        ));
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    // Every connection task holds a receiver; `closed` completes when all are done.
    stop_tx.closed().await;
    Ok(())
}

/// The HTTP/1 connection settings every connection shares.
fn http1_builder(settings: &HttpSettings) -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true);
    http
}

/// What each request on one connection needs before it reaches the app.
#[derive(Clone)]
struct PerRequest {
    app: Router,
    trusted: Arc<TrustedProxies>,
    conn: Arc<Conn>,
    epoch: Instant,
    peer: Peer,
    max_body: usize,
}

impl PerRequest {
    /// Counts the handler as running on its connection, stamps who the client
    /// is on the request, and answers a declared body over the limit with 413
    /// before reading it; everything else goes to the app.
    fn call(
        &self,
        req: axum::http::Request<hyper::body::Incoming>,
    ) -> impl Future<Output = Result<Response, std::convert::Infallible>> + Send + use<> {
        self.conn.handlers.fetch_add(1, Ordering::AcqRel);
        let guard = HandlerGuard(self.conn.clone(), self.epoch);
        let mut req: Request = req.map(axum::body::Body::new);
        let info = ClientInfo::from_request(&self.peer, req.headers(), &self.trusted);
        req.extensions_mut().insert(info);
        req.extensions_mut().insert(self.peer);
        if let Peer::Tcp(a) = self.peer {
            req.extensions_mut().insert(ConnectInfo(a));
        }
        let early = declared_length(req.headers()).is_some_and(|n| n > self.max_body as u64);
        let max_body = self.max_body;
        let mut app = self.app.clone();
        async move {
            let resp = if early {
                too_large(req.uri().path(), max_body)
            } else {
                // One read: on a shared store its follows share one catch-up.
                match crate::employee::as_one_read(tower_service::Service::call(&mut app, req))
                    .await
                {
                    Ok(r) => r,
                    Err(never) => match never {},
                }
            };
            drop(guard);
            Ok(resp)
        }
    }
}

/// Runs one connection to its end: the client closes it, it is evicted at the
/// cap, it sits idle past `idle`, or the server stops (then it finishes its
/// requests first). Gives up its place in [`Conns`] when done.
async fn drive_connection<I>(
    http: Arc<hyper::server::conn::http1::Builder>,
    io: I,
    requests: PerRequest,
    registered: Registered,
    mut stop_rx: watch::Receiver<bool>,
    idle: Duration,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = requests.conn.clone();
    let epoch = requests.epoch;
    let io = Tracked {
        inner: io,
        conn: conn.clone(),
        epoch,
    };
    let svc = hyper::service::service_fn(move |req| requests.call(req));
    let c = http.serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    tokio::pin!(c);
    let mut stopping = false;
    loop {
        // A running handler is never idle: look again a full period later.
        let wait = if conn.busy() {
            idle
        } else {
            idle.saturating_sub(conn.idle_for(epoch))
        }
        .max(Duration::from_millis(10));
        tokio::select! {
            r = c.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = conn.close.notified() => {
                tracing::debug!("idle connection closed to make room (connection cap)");
                break;
            }
            _ = stop_rx.changed(), if !stopping => {
                stopping = true;
                c.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(wait) => {
                if !conn.busy() && conn.idle_for(epoch) >= idle {
                    tracing::debug!("idle connection closed (idle_timeout_secs)");
                    break;
                }
            }
        }
    }
    drop(registered);
    drop(stop_rx);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn tcp(ip: &str) -> Peer {
        Peer::Tcp(SocketAddr::new(ip.parse().unwrap(), 40000))
    }

    #[test]
    fn forwarded_headers_are_ignored_without_trusted_proxies() {
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.8;host=evil2.example"),
        ]);
        let none = TrustedProxies::default();
        let c = ClientInfo::from_request(&tcp("127.0.0.1"), &h, &none);
        assert_eq!(c.ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(c.forwarded_host, None);
        assert_eq!(c.forwarded_proto, None);
        // A trusted proxy elsewhere does not make this peer trusted.
        let other = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let c = ClientInfo::from_request(&tcp("127.0.0.1"), &h, &other);
        assert_eq!(c.ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(c.forwarded_host, None);
        // Over the unix socket, nobody: the per-address limit is off.
        let c = ClientInfo::from_request(&Peer::Unix, &h, &other);
        assert_eq!(c, ClientInfo::default());
    }

    #[test]
    fn a_trusted_proxy_is_believed_from_the_right() {
        let t = TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into(), "unix".into()])
            .unwrap();
        // The client made up the left part; 10.1.1.1 is another of our proxies.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1, 198.51.100.7"),
            ("x-forwarded-for", "10.1.1.1"),
            ("x-forwarded-host", "roster.example.com"),
            ("x-forwarded-proto", "HTTPS"),
        ]);
        let c = ClientInfo::from_request(&tcp("127.0.0.1"), &h, &t);
        assert_eq!(c.ip, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(c.forwarded_host.as_deref(), Some("roster.example.com"));
        assert_eq!(c.forwarded_proto.as_deref(), Some("https"));
        let c = ClientInfo::from_request(&Peer::Unix, &h, &t);
        assert_eq!(c.ip, Some("198.51.100.7".parse().unwrap()));
        // RFC 7239 wins over X-Forwarded-*.
        let h = headers(&[
            (
                "forwarded",
                "for=\"[2001:db8::1]:4711\";proto=http;host=a.example",
            ),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        let c = ClientInfo::from_request(&tcp("10.2.3.4"), &h, &t);
        assert_eq!(c.ip, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(c.forwarded_host.as_deref(), Some("a.example"));
        // A host fit for no URL is dropped.
        let h = headers(&[("x-forwarded-host", "a.example/evil?x=")]);
        let c = ClientInfo::from_request(&tcp("127.0.0.1"), &h, &t);
        assert_eq!(c.forwarded_host, None);
        // A trusted proxy that forwards nothing: the proxy is the client.
        let c = ClientInfo::from_request(&tcp("10.9.9.9"), &HeaderMap::new(), &t);
        assert_eq!(c.ip, Some("10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn trusted_proxy_entries_parse_or_say_why() {
        let t = TrustedProxies::parse(&["::1".into(), "fd00::/8".into(), "192.168.0.0/16".into()])
            .unwrap();
        assert!(t.trusts("::1".parse().unwrap()));
        assert!(t.trusts("fd12::5".parse().unwrap()));
        assert!(t.trusts("192.168.44.1".parse().unwrap()));
        assert!(t.trusts("::ffff:192.168.1.1".parse().unwrap()));
        assert!(!t.trusts("192.169.0.1".parse().unwrap()));
        assert!(!t.trusts_unix());
        assert!(
            TrustedProxies::parse(&["0.0.0.0/0".into()])
                .unwrap()
                .trusts("8.8.8.8".parse().unwrap())
        );
        for bad in ["localhost", "10.0.0.0/33", "1.2.3", "::1/129"] {
            assert!(TrustedProxies::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cap_stays_below_the_file_limit() {
        assert_eq!(connection_cap(4096, 1024), 896);
        assert_eq!(connection_cap(100, 1024), 100);
        assert_eq!(connection_cap(4096, 65536), 4096);
        assert_eq!(connection_cap(4096, 10), 16);
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room() {
        let conns = Conns {
            epoch: Instant::now(),
            open: Mutex::new(Default::default()),
            next_id: AtomicU64::new(0),
        };
        let (a, ca) = conns.admit(2).unwrap();
        let (_, cb) = conns.admit(2).unwrap();
        ca.active_at.store(0, Ordering::Release);
        cb.active_at.store(5, Ordering::Release);
        let (_, cc) = conns.admit(2).unwrap();
        assert!(!conns.lock().contains_key(&a), "the oldest idle one went");
        // Busy connections are never evicted.
        cb.handlers.store(1, Ordering::Release);
        cc.handlers.store(1, Ordering::Release);
        assert!(conns.admit(2).is_none());
    }
}

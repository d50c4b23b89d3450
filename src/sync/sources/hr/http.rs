//! The HTTP edge of HR sources: one request with auth, timeout and retries
//! ([`send`]), and reading every page of a REST/JSON API ([`fetch`]) with the
//! next page worked out by the pure [`Pager`] of [`super::paging`]. A page that still fails after its
//! retries fails the whole fetch: a partial read never reaches the planner.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName};
use serde_json::Value;
use url::Url;

use super::map::JsonRecord;
use super::paging::{Next, Pager, kind_of, same_origin, with_params};
pub use super::paging::{Pagination, Paging, link_next, redact};
use super::{FetchError, HrFetched, HttpSource};
use crate::secret::Secret;
use crate::sync::map::MapError;

/// A secret and, when it came from a file, the file (re-read at every run).
#[derive(Debug, Clone)]
pub struct SecretRef {
    pub value: Secret,
    pub file: Option<PathBuf>,
}

impl SecretRef {
    /// The current value: the file's content now, else the value read at start.
    async fn current(&self, what: &str) -> Result<Secret, FetchError> {
        let Some(f) = &self.file else {
            return Ok(self.value.clone());
        };
        let text = tokio::fs::read_to_string(f)
            .await
            .map_err(|e| FetchError(format!("cannot read the {what} file {}: {e}", f.display())))?;
        let v = text.trim();
        if v.is_empty() {
            return Err(FetchError(format!(
                "the {what} file {} is empty",
                f.display()
            )));
        }
        Ok(Secret::new(v))
    }
}

/// How requests authenticate (validated).
#[derive(Debug, Clone)]
pub enum Auth {
    Bearer(SecretRef),
    Basic {
        username: SecretRef,
        password: Option<SecretRef>,
    },
    Header {
        name: HeaderName,
        prefix: String,
        token: SecretRef,
    },
    Query {
        param: String,
        token: SecretRef,
    },
}

/// [`Auth`] with its secrets read for one fetch.
enum LoadedAuth {
    None,
    Bearer(Secret),
    Basic(Secret, Option<Secret>),
    Header(HeaderName, Secret),
    Query(String, Secret),
}

impl LoadedAuth {
    async fn load(a: Option<&Auth>) -> Result<Self, FetchError> {
        Ok(match a {
            None => Self::None,
            Some(Auth::Bearer(t)) => Self::Bearer(t.current("token").await?),
            Some(Auth::Basic { username, password }) => Self::Basic(
                username.current("username").await?,
                match password {
                    Some(p) => Some(p.current("password").await?),
                    None => None,
                },
            ),
            Some(Auth::Header {
                name,
                prefix,
                token,
            }) => Self::Header(
                name.clone(),
                Secret::new(format!(
                    "{prefix}{}",
                    token.current("token").await?.expose()
                )),
            ),
            Some(Auth::Query { param, token }) => {
                Self::Query(param.clone(), token.current("token").await?)
            }
        })
    }

    /// The secret values, to scrub from any message.
    fn secrets(&self) -> Vec<String> {
        let v: Vec<&Secret> = match self {
            Self::None => vec![],
            Self::Bearer(t) | Self::Header(_, t) | Self::Query(_, t) => vec![t],
            Self::Basic(u, p) => std::iter::once(u).chain(p.as_ref()).collect(),
        };
        v.into_iter()
            .map(|s| s.expose().to_string())
            .filter(|s| s.len() >= 3)
            .collect()
    }

    fn apply(&self, mut rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::None => {}
            Self::Bearer(t) => rb = rb.bearer_auth(t.expose()),
            Self::Basic(u, p) => rb = rb.basic_auth(u.expose(), p.as_ref().map(|p| p.expose())),
            Self::Header(name, v) => rb = rb.header(name.clone(), v.expose()),
            Self::Query(param, t) => rb = rb.query(&[(param.as_str(), t.expose())]),
        }
        rb
    }
}

/// Retry policy (validated).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Retry {
    /// The wait after failed attempt `n` (1-based): `Retry-After` if the server
    /// sent one, else exponential backoff; never more than `max_backoff`.
    pub fn delay(&self, n: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1)));
        retry_after.unwrap_or(backoff).min(self.max_backoff)
    }
}

/// What a request is, apart from its URL's paging parameters (validated).
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub url: Url,
    pub method: reqwest::Method,
    pub body: Option<Value>,
    /// Static query parameters.
    pub query: Vec<(String, String)>,
    /// Static headers (values held as secrets so `Debug` never shows them).
    pub headers: Vec<(HeaderName, Secret)>,
    pub auth: Option<Auth>,
    pub timeout: Duration,
    pub retry: Retry,
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(v: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or_default(),
    )
}

/// The HTTP client for a source: timeouts, no redirects to another site.
fn client(spec: &RequestSpec) -> Result<reqwest::Client, FetchError> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let cross = attempt
            .previous()
            .first()
            .is_some_and(|first| !same_origin(first, attempt.url()));
        if cross {
            attempt.error("redirect to another site refused (credentials would follow)")
        } else if attempt.previous().len() >= 5 {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .timeout(spec.timeout)
        .connect_timeout(spec.timeout.min(Duration::from_secs(10)))
        .redirect(policy)
        .user_agent(concat!("rosterd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError(format!("cannot build the HTTP client: {e}")))
}

/// A request failure: worth retrying or not, and when the server says to.
enum Failure {
    Retry(String, Option<Duration>),
    Fatal(String),
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {}s (timeout_secs)", timeout.as_secs());
    }
    let mut msg = if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let t: String = text.trim().chars().take(200).collect();
    if t.is_empty() {
        String::new()
    } else {
        format!(": {t}")
    }
}

/// The most one response (a page, or a CSV export) may hold. An HR API that
/// sends more fails the run rather than filling the daemon's memory.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Reads a body, giving up (for good: a retry would get the same) once it
/// passes `cap` bytes, or at once when `Content-Length` says it will.
async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
    timeout: Duration,
) -> Result<bytes::Bytes, Failure> {
    let too_big = |n: String| {
        Failure::Fatal(format!(
            "the response is larger than {} MiB ({n}); page the source in smaller pages",
            cap / (1024 * 1024)
        ))
    };
    if let Some(len) = resp.content_length()
        && len > cap as u64
    {
        return Err(too_big(format!("Content-Length {len}")));
    }
    let mut body = bytes::BytesMut::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(too_big(format!("more than {cap} bytes")));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => {
                return Err(Failure::Retry(
                    format!("reading the body failed: {}", describe(&e, timeout)),
                    None,
                ));
            }
        }
    }
}

/// A page as received.
pub struct Response {
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

/// One attempt.
async fn attempt(
    client: &reqwest::Client,
    spec: &RequestSpec,
    auth: &LoadedAuth,
    url: &Url,
    accept: &str,
) -> Result<Response, Failure> {
    let mut rb = client.request(spec.method.clone(), url.clone());
    if !spec
        .headers
        .iter()
        .any(|(n, _)| n == reqwest::header::ACCEPT)
    {
        rb = rb.header(reqwest::header::ACCEPT, accept);
    }
    for (name, value) in &spec.headers {
        rb = rb.header(name.clone(), value.expose());
    }
    if let Some(b) = &spec.body {
        rb = rb.json(b);
    }
    rb = auth.apply(rb);
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) if e.is_redirect() || e.is_builder() => {
            return Err(Failure::Fatal(describe(&e, spec.timeout)));
        }
        Err(e) => return Err(Failure::Retry(describe(&e, spec.timeout), None)),
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = read_capped(resp, MAX_RESPONSE_BYTES, spec.timeout).await?;
    if status.is_success() {
        return Ok(Response { headers, body });
    }
    let code = format!(
        "HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        let after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        return Err(Failure::Retry(code, after));
    }
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(Failure::Fatal(format!(
            "{code}: the server refused the credentials; check [sources.auth] and the account's permissions"
        )));
    }
    Err(Failure::Fatal(format!("{code}{}", snippet(&body))))
}

/// Sends a request with retries. `what` names it in messages (`page 2 of
/// https://...`); `accept` is the `Accept` header unless `headers` set one.
async fn send(
    client: &reqwest::Client,
    spec: &RequestSpec,
    auth: &LoadedAuth,
    (url, accept): (&Url, &str),
    what: &str,
) -> Result<Response, FetchError> {
    let mut n = 0;
    loop {
        n += 1;
        match attempt(client, spec, auth, url, accept).await {
            Ok(r) => return Ok(r),
            Err(Failure::Fatal(m)) => return Err(FetchError(format!("{what}: {m}"))),
            Err(Failure::Retry(m, after)) => {
                if n >= spec.retry.attempts {
                    return Err(FetchError(format!(
                        "{what} failed after {n} attempt{}: {m}",
                        if n == 1 { "" } else { "s" }
                    )));
                }
                let wait = spec.retry.delay(n, after);
                let m = scrub(FetchError(m), &auth.secrets()).0;
                tracing::warn!(request = what, attempt = n, error = %m, wait_ms = wait.as_millis() as u64, "HR request failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Replaces any secret value in an error message by `***`.
fn scrub(mut e: FetchError, secrets: &[String]) -> FetchError {
    for s in secrets {
        e.0 = e.0.replace(s.as_str(), "***");
    }
    e
}

/// GETs one document (a CSV export) with auth and retries.
pub async fn get_bytes(spec: &RequestSpec) -> Result<bytes::Bytes, FetchError> {
    let auth = LoadedAuth::load(spec.auth.as_ref()).await?;
    let secrets = auth.secrets();
    let run = async {
        let client = client(spec)?;
        let url = with_params(&spec.url, &spec.query, &[]);
        let what = format!("GET {}", redact(&url));
        send(&client, spec, &auth, (&url, "text/csv, */*;q=0.5"), &what)
            .await
            .map(|r| r.body)
    };
    run.await.map_err(|e| scrub(e, &secrets))
}

/// Reads every page and maps every record.
pub async fn fetch(src: &HttpSource, tz: chrono_tz::Tz) -> Result<HrFetched, FetchError> {
    let spec = &src.request;
    let auth = LoadedAuth::load(spec.auth.as_ref()).await?;
    let secrets = auth.secrets();
    fetch_pages(src, spec, &auth, tz)
        .await
        .map_err(|e| scrub(e, &secrets))
}

async fn fetch_pages(
    src: &HttpSource,
    spec: &RequestSpec,
    auth: &LoadedAuth,
    tz: chrono_tz::Tz,
) -> Result<HrFetched, FetchError> {
    let client = client(spec)?;
    let mut pager = Pager::new(&src.pagination, &spec.url, &spec.query);
    let mut url = pager.first();
    let mut out = HrFetched::default();
    let mut page = 0u32;
    let base = redact(&spec.url);
    loop {
        page += 1;
        let what = format!("page {page} of {base}");
        let resp = send(&client, spec, auth, (&url, "application/json"), &what).await?;
        let body: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| FetchError(format!("{what} is not JSON: {e}")))?;
        let records = match body.pointer(&src.records) {
            Some(Value::Array(a)) => a.as_slice(),
            Some(other) => {
                return Err(FetchError(format!(
                    "{what}: the records at `{}` are {}, not an array (check `records`)",
                    src.records,
                    kind_of(other)
                )));
            }
            None => {
                return Err(FetchError(format!(
                    "{what} has no record array at `{}` (check `records`)",
                    src.records
                )));
            }
        };
        tracing::debug!(page, records = records.len(), source = %base, "HR page read");
        let first_no = pager.seen();
        for (i, r) in records.iter().enumerate() {
            let dn = format!("record {} (page {page})", first_no + i as u64 + 1);
            let mapped = if r.is_object() {
                src.mapping.map(&JsonRecord(r), &dn, tz).map_err(|message| {
                    let (key, email) = src.mapping.identify(&JsonRecord(r));
                    MapError::new(dn, message.to_string()).of(key, email)
                })
            } else {
                Err(MapError::new(
                    dn,
                    format!("is {}, not a JSON object", kind_of(r)),
                ))
            };
            match mapped {
                Ok(m) => out.entries.push(m),
                Err(e) => out.errors.push(e),
            }
        }
        let links: Vec<&str> = resp
            .headers
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        match pager
            .advance(&url, &body, records, &links)
            .map_err(|m| FetchError(format!("{base}: {m}")))?
        {
            Next::Done => break,
            Next::Fetch(next) => url = next,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body past the cap fails for good, whether announced by Content-Length
    /// or streamed without one; one within it is read whole.
    #[tokio::test]
    async fn a_response_past_the_cap_is_refused() {
        use axum::body::Body;
        let app = axum::Router::new()
            .route("/sized", axum::routing::get(|| async { "x".repeat(5000) }))
            .route(
                "/streamed",
                axum::routing::get(|| async {
                    let chunks = (0..10).map(|_| Ok::<_, std::io::Error>("y".repeat(1000)));
                    Body::from_stream(futures::stream::iter(chunks))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        let t = Duration::from_secs(5);
        for path in ["sized", "streamed"] {
            let get = || client.get(format!("http://{addr}/{path}")).send();
            let err = match read_capped(get().await.unwrap(), 4096, t).await {
                Err(Failure::Fatal(m)) => m,
                Ok(b) => panic!("{path}: read {} bytes past the cap", b.len()),
                Err(Failure::Retry(m, _)) => panic!("{path}: retryable: {m}"),
            };
            assert!(err.contains("larger than"), "{path}: {err}");
            let whole = read_capped(get().await.unwrap(), 1 << 20, t).await;
            assert!(matches!(whole, Ok(b) if b.len() >= 5000), "{path}");
        }
        server.abort();
    }

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        let r = Retry {
            attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(r.delay(1, None), Duration::from_millis(100));
        assert_eq!(r.delay(2, None), Duration::from_millis(200));
        assert_eq!(r.delay(3, None), Duration::from_millis(400));
        assert_eq!(r.delay(5, None), Duration::from_secs(1));
        assert_eq!(r.delay(40, None), Duration::from_secs(1));
        assert_eq!(
            r.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
        assert_eq!(r.delay(1, Some(Duration::ZERO)), Duration::ZERO);
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn redacted_urls_have_no_query() {
        let u = Url::parse("https://hr.example.com/a/b?api_key=s3cret&x=1").unwrap();
        assert_eq!(redact(&u), "https://hr.example.com/a/b");
    }

    #[test]
    fn scrub_hides_secrets() {
        let e = scrub(
            FetchError("bad token abc123xyz".into()),
            &["abc123xyz".into()],
        );
        assert_eq!(e.0, "bad token ***");
    }
}

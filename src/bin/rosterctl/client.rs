//! The HTTP side: where the token comes from, and a small JSON client for rosterd's
//! admin API (`/api/v1/...`) that turns every failure into a [`CtlError`].

use std::path::Path;
use std::time::Duration;

use clap::ArgMatches;
use clap::parser::ValueSource;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cli::Cli;
use crate::error::CtlError;

/// Where the token is read from when no flag or variable names one.
pub const DEFAULT_TOKEN_FILE: &str = "./data/admin.token";

/// The admin token. Never printed.
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Picks the token: `--token`/`--token-file` on the command line first, then
/// `ROSTERD_TOKEN`, then `ROSTERD_TOKEN_FILE`, then `./data/admin.token`.
pub fn resolve_token(cli: &Cli, matches: &ArgMatches) -> Result<Token, CtlError> {
    let on_cli = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let use_file = match (&cli.token, &cli.token_file) {
        (Some(_), Some(_)) if on_cli("token") && on_cli("token_file") => {
            return Err(CtlError::usage("give --token or --token-file, not both"));
        }
        (Some(_), Some(_)) => on_cli("token_file"),
        (None, Some(_)) => true,
        (Some(_), None) => false,
        (None, None) => return read_token_file(Path::new(DEFAULT_TOKEN_FILE), true),
    };
    match (&cli.token, &cli.token_file) {
        (_, Some(file)) if use_file => read_token_file(file, false),
        (Some(t), _) => check_token(t.trim().to_string(), "--token / ROSTERD_TOKEN"),
        _ => Err(CtlError::usage("no admin token given")),
    }
}

fn read_token_file(path: &Path, is_default: bool) -> Result<Token, CtlError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let how = "pass --token-file FILE (or set ROSTERD_TOKEN_FILE), or --token TOKEN (or \
                   set ROSTERD_TOKEN); rosterd writes <data_dir>/admin.token on its first start";
        if is_default {
            CtlError::usage(format!(
                "no admin token: cannot read {} ({e}); {how}",
                path.display()
            ))
        } else {
            CtlError::usage(format!(
                "cannot read the token file {} ({e}); check the path, or {how}",
                path.display()
            ))
        }
    })?;
    check_token(text.trim().to_string(), &path.display().to_string())
}

fn check_token(token: String, origin: &str) -> Result<Token, CtlError> {
    if token.is_empty() {
        return Err(CtlError::usage(format!(
            "the admin token from {origin} is empty"
        )));
    }
    Ok(Token(token))
}

/// Checks `--url`: an absolute http(s) URL, possibly with a path prefix.
pub fn parse_base_url(raw: &str) -> Result<Url, CtlError> {
    let bad = |why: String| {
        CtlError::usage(format!(
            "--url `{raw}` {why}; give e.g. http://127.0.0.1:8080"
        ))
    };
    let url = Url::parse(raw.trim()).map_err(|e| bad(format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(bad("must start with http:// or https://".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment".into()));
    }
    Ok(url)
}

/// A client for one rosterd.
pub struct Client {
    http: reqwest::Client,
    base: Url,
}

impl Client {
    pub fn new(base: Url, token: Token, timeout: Duration) -> Result<Self, CtlError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.0)).map_err(|_| {
            CtlError::usage("the admin token has characters that cannot be sent in an HTTP header")
        })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("rosterctl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .build()
            .map_err(|e| CtlError::failed(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self { http, base })
    }

    /// `<base>/api/v1/<segments...>`, each segment percent-encoded.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    /// The base URL as shown in messages (without any user:password part).
    fn shown_base(&self) -> String {
        let mut url = self.base.clone();
        let _ = url.set_password(None);
        let _ = url.set_username("");
        url.to_string()
    }

    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, CtlError> {
        let req = self.http.get(self.endpoint(segments)).query(query);
        self.send(req).await
    }

    pub async fn send_json(
        &self,
        method: Method,
        segments: &[&str],
        body: &impl serde::Serialize,
    ) -> Result<Value, CtlError> {
        let req = self
            .http
            .request(method, self.endpoint(segments))
            .json(body);
        self.send(req).await
    }

    pub async fn post_empty(&self, segments: &[&str]) -> Result<Value, CtlError> {
        let req = self.http.post(self.endpoint(segments));
        self.send(req).await
    }

    pub async fn delete(&self, segments: &[&str]) -> Result<Value, CtlError> {
        let req = self.http.delete(self.endpoint(segments));
        self.send(req).await
    }

    pub async fn put_bytes(
        &self,
        segments: &[&str],
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Value, CtlError> {
        let req = self
            .http
            .put(self.endpoint(segments))
            .header(CONTENT_TYPE, content_type)
            .body(bytes);
        self.send(req).await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, CtlError> {
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.transport_error(e))?;
        if !status.is_success() {
            return Err(api_error(status, &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            CtlError::failed(format!(
                "rosterd at {} sent a response that is not JSON ({e}); is --url pointing at rosterd?",
                self.shown_base()
            ))
        })
    }

    fn transport_error(&self, e: reqwest::Error) -> CtlError {
        let detail = if e.is_timeout() {
            "no answer in time (see --timeout); if this was a change, check `rosterctl audit` \
             before retrying"
                .to_string()
        } else {
            error_chain(&e.without_url())
        };
        CtlError::Unreachable {
            url: self.shown_base(),
            detail,
        }
    }
}

/// `{error, message, field?}` from rosterd; anything else (a proxy's page) is shown
/// briefly as is.
fn api_error(status: reqwest::StatusCode, body: &str) -> CtlError {
    #[derive(serde::Deserialize)]
    struct Body {
        error: String,
        message: String,
        field: Option<String>,
    }
    match serde_json::from_str::<Body>(body) {
        Ok(b) => CtlError::Api {
            status: status.as_u16(),
            code: b.error,
            message: b.message,
            field: b.field,
        },
        Err(_) => {
            let snippet: String = body.trim().chars().take(200).collect();
            CtlError::Api {
                status: status.as_u16(),
                code: status
                    .canonical_reason()
                    .unwrap_or("error")
                    .to_lowercase()
                    .replace(' ', "_"),
                message: if snippet.is_empty() {
                    "(no details in the response)".into()
                } else {
                    snippet
                },
                field: None,
            }
        }
    }
}

/// "a: b: c" from an error and its sources.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Decodes a JSON value the server sent into a typed shape.
pub fn decode<T: DeserializeOwned>(v: Value, what: &str) -> Result<T, CtlError> {
    serde_json::from_value(v)
        .map_err(|e| CtlError::failed(format!("unexpected {what} from rosterd: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_a_path_prefix_and_encode_keys() {
        let c = Client::new(
            parse_base_url("http://h:1/roster/").expect("url"),
            Token("t".into()),
            Duration::from_secs(1),
        )
        .expect("client");
        assert_eq!(
            c.endpoint(&["employees", "a/b@c.d"]).as_str(),
            "http://h:1/roster/api/v1/employees/a%2Fb@c.d"
        );
        let c = Client::new(
            parse_base_url("http://h:1").expect("url"),
            Token("t".into()),
            Duration::from_secs(1),
        )
        .expect("client");
        assert_eq!(
            c.endpoint(&["catalog"]).as_str(),
            "http://h:1/api/v1/catalog"
        );
    }

    #[test]
    fn base_urls_must_be_http() {
        assert!(parse_base_url("127.0.0.1:8080").is_err());
        assert!(parse_base_url("ftp://h").is_err());
        assert!(parse_base_url("https://h/x").is_ok());
    }

    #[test]
    fn tokens_never_print() {
        assert_eq!(format!("{:?}", Token("secret".into())), "***");
    }

    #[test]
    fn non_json_errors_are_shown_briefly() {
        let e = api_error(reqwest::StatusCode::BAD_GATEWAY, "upstream down");
        assert_eq!(e.to_string(), "502 bad_gateway: upstream down");
    }
}

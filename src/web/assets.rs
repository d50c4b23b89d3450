//! The console's stylesheet and script: ours, embedded with `include_bytes!`,
//! served under URLs that carry the first 16 hex digits of their SHA-256, so a
//! browser may cache them for good and a new build is fetched at once.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::Digest;

const CSS: &[u8] = include_bytes!("static/console.css");
const JS: &[u8] = include_bytes!("static/console.js");

fn hashed(name: &str, ext: &str, bytes: &[u8]) -> String {
    let digest = hex::encode(sha2::Sha256::digest(bytes));
    format!("/static/{name}-{}.{ext}", &digest[..16])
}

/// `/static/console-<hash>.css`
pub fn css_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| hashed("console", "css", CSS))
}

/// `/static/console-<hash>.js`
pub fn js_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| hashed("console", "js", JS))
}

/// `GET /static/{file}`: only the current hashed names exist.
pub async fn asset_get(Path(file): Path<String>) -> Response {
    let path = format!("/static/{file}");
    let (ct, body) = if path == css_url() {
        ("text/css; charset=utf-8", CSS)
    } else if path == js_url() {
        ("text/javascript; charset=utf-8", JS)
    } else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, ct),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_carry_the_hash() {
        assert!(super::css_url().starts_with("/static/console-"));
        assert!(super::css_url().ends_with(".css"));
        assert_eq!(super::js_url().len(), "/static/console-".len() + 16 + 3);
    }
}

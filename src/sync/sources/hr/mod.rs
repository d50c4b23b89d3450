//! HR sources: `kind = "http"` (a REST/JSON API driven by config) and
//! `kind = "csv"` (a local file or an https URL). Both fetch records, which a
//! declared mapping turns into [`MappedEntry`]s with effective dates read in the
//! source's time zone.
//!
//! Layout: [`config`] holds the keys operators write and validates them;
//! [`map`] is the pure record → entry mapping; [`http`] does requests (auth,
//! timeouts, retries) and pagination; [`csv`] decodes and parses exports. The
//! engine calls [`fetch_http`] / [`fetch_csv`]: `Ok` means every record was read
//! (each one mapped or reported in [`HrFetched::errors`]); `Err` means the read is
//! incomplete, and the run fails without deactivating anyone.

pub mod config;
pub mod csv;
pub mod http;
pub mod map;
pub mod paging;

use std::path::PathBuf;

pub use self::config::{CsvSection, HttpSection, validate_csv, validate_http};
pub use self::map::HrMapping;
use crate::sync::map::{MapError, MappedEntry};

/// A validated `kind = "http"` source.
#[derive(Debug, Clone)]
pub struct HttpSource {
    pub mapping: HrMapping,
    pub(crate) request: http::RequestSpec,
    /// JSON pointer to the record array in a page.
    pub(crate) records: String,
    pub(crate) pagination: http::Pagination,
}

/// Where a CSV export is read from.
#[derive(Debug, Clone)]
pub enum CsvInput {
    File(PathBuf),
    Url(Box<http::RequestSpec>),
}

/// A validated `kind = "csv"` source.
#[derive(Debug, Clone)]
pub struct CsvSource {
    pub mapping: HrMapping,
    pub(crate) input: CsvInput,
    pub(crate) delimiter: u8,
    pub(crate) encoding: &'static encoding_rs::Encoding,
}

impl HttpSource {
    /// Where the source reads from (the URL, without credentials or query).
    pub fn location(&self) -> String {
        http::redact(&self.request.url)
    }
}

impl CsvSource {
    /// The file path or URL.
    pub fn location(&self) -> String {
        match &self.input {
            CsvInput::File(p) => p.display().to_string(),
            CsvInput::Url(r) => http::redact(&r.url),
        }
    }
}

/// What a fetch returns: every record mapped or refused.
#[derive(Debug, Default)]
pub struct HrFetched {
    pub entries: Vec<MappedEntry>,
    /// Records that could not be read or mapped (skipped, reported; the run goes on).
    pub errors: Vec<MapError>,
}

/// The fetch as a whole failed: nothing from it may be planned. The message says
/// what failed and never holds a secret.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

/// Reads every page of an HTTP source and maps its records.
pub async fn fetch_http(src: &HttpSource, tz: chrono_tz::Tz) -> Result<HrFetched, FetchError> {
    http::fetch(src, tz).await
}

/// Reads a CSV export and maps its rows.
pub async fn fetch_csv(src: &CsvSource, tz: chrono_tz::Tz) -> Result<HrFetched, FetchError> {
    csv::fetch(src, tz).await
}

#[cfg(test)]
mod tests;

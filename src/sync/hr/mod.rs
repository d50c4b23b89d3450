//! HR sources: `kind = "http"` (a REST/JSON API driven by config) and
//! `kind = "csv"` (a local file or an https URL). Both fetch records, which a
//! declared mapping turns into [`MappedEntry`]s with effective dates read in the
//! source's time zone.

use serde::Deserialize;

use super::config::SourceCtx;
use super::map::{MapError, MappedEntry};
use crate::config::ConfigError;

/// The profile-field mapping shared by both HR kinds (validated).
#[derive(Debug, Clone, Default)]
pub struct HrMapping {}

impl HrMapping {
    /// Profile fields this mapping writes.
    pub fn provides(&self) -> Vec<&'static str> {
        vec!["email"]
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSection {}

#[derive(Debug, Clone)]
pub struct HttpSource {
    pub mapping: HrMapping,
}

#[derive(Debug, Clone)]
pub struct CsvSource {
    pub mapping: HrMapping,
}

impl HttpSource {
    /// Where the source reads from (the URL, without credentials).
    pub fn location(&self) -> String {
        String::new()
    }
}

impl CsvSource {
    /// The file path or URL.
    pub fn location(&self) -> String {
        String::new()
    }
}

pub fn validate_http(ctx: &SourceCtx<'_>, _s: HttpSection) -> Result<HttpSource, ConfigError> {
    Err(ctx.err("kind", "http sources are not built yet"))
}

pub fn validate_csv(ctx: &SourceCtx<'_>, _s: CsvSection) -> Result<CsvSource, ConfigError> {
    Err(ctx.err("kind", "csv sources are not built yet"))
}

/// What a fetch returns: every record mapped or refused.
#[derive(Debug, Default)]
pub struct HrFetched {
    pub entries: Vec<MappedEntry>,
    /// Records that could not be read or mapped (skipped, reported; the run goes on).
    pub errors: Vec<MapError>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

pub async fn fetch_http(_src: &HttpSource, _tz: chrono_tz::Tz) -> Result<HrFetched, FetchError> {
    Err(FetchError("not built yet".into()))
}

pub async fn fetch_csv(_src: &CsvSource, _tz: chrono_tz::Tz) -> Result<HrFetched, FetchError> {
    Err(FetchError("not built yet".into()))
}

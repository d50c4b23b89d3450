//! The one place that maps domain errors to HTTP status codes for the admin API:
//! [`crate::employee::Error`], [`StoreError`], [`SyncError`], [`AccountError`] and
//! [`RetryError`] all become `{ "error", "message", "field"? }` here (the table
//! test below lists every variant); internal errors are logged and hidden.
//!
//! Errors about the request's own shape are mapped here too (bad JSON, bad query
//! string, oversized body: the `From<*Rejection>` impls). A few stay at the edge,
//! built with [`ApiError::new`] where the handler sees them, because no domain
//! error carries them: an unknown endpoint (404, `admin/mod.rs`), `/readyz`
//! (503, `admin/mod.rs`), a path id that does not parse (404, `admin/sync.rs`,
//! `admin/account.rs`) and the sign-in rate limit (429, `admin/account.rs`).

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::employee::Error as DomainError;
use crate::employee::account::{AccountError, RetryError};
use crate::store::StoreError;
use crate::sync::SyncError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token (Authorization: Bearer <admin token>)",
        )
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let message = e.to_string();
        match e {
            DomainError::Invalid { field, .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                message,
            )
            .with_field(field),
            DomainError::BadRequest { field, .. } => {
                let mut err = Self::bad_request(message);
                err.field = field;
                err
            }
            DomainError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            DomainError::Conflict { field, .. } => {
                Self::new(StatusCode::CONFLICT, "conflict", message).with_field(field)
            }
            DomainError::VersionMismatch { .. } => {
                Self::new(StatusCode::CONFLICT, "version_mismatch", message).with_field("version")
            }
            DomainError::PhotoTooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
                    .with_field("photo")
            }
            DomainError::Store(err) => err.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    /// Every store error is the server's problem: logged, hidden from the client.
    fn from(err: StoreError) -> Self {
        let internal = |err: &StoreError| {
            tracing::error!(error = %err, "store error while serving a request");
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; the server log has the details",
            )
        };
        match &err {
            // The disk or the store failed under the request (not the data).
            StoreError::Io(_) | StoreError::Flush(_) => internal(&err),
            StoreError::Open { .. }
            | StoreError::Schema { .. }
            | StoreError::Unique { .. }
            | StoreError::VersionConflict { .. }
            | StoreError::Corrupt(_)
            | StoreError::Invalid(_) => internal(&err),
        }
    }
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        let msg = e.to_string();
        match e {
            SyncError::UnknownSource(_) | SyncError::RunNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", msg)
            }
            SyncError::AlreadyRunning(_) => {
                ApiError::new(StatusCode::CONFLICT, "already_running", msg)
            }
            SyncError::NotHeld(_) => ApiError::new(StatusCode::CONFLICT, "not_held", msg),
            SyncError::Interrupted(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopping", msg)
            }
            SyncError::Domain(d) => d.into(),
            SyncError::Store(s) => s.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        let message = e.to_string();
        match e {
            AccountError::InvalidToken => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_token", message).with_field("token")
            }
            AccountError::Unauthorized => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", message)
            }
            AccountError::Forbidden(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
            }
            AccountError::Domain(d) => d.into(),
        }
    }
}

impl From<RetryError> for ApiError {
    fn from(e: RetryError) -> Self {
        match e {
            RetryError::NotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no outbox message {id}"),
            ),
            RetryError::AlreadySent(id) => ApiError::new(
                StatusCode::CONFLICT,
                "already_sent",
                format!("outbox message {id} was already sent; send a new invite or reset instead"),
            ),
            RetryError::Domain(d) => d.into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::BytesRejection(b) => b.into(),
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ),
            other => Self::bad_request(format!("invalid JSON body: {}", other.body_text())),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than the server accepts",
            )
        } else {
            Self::bad_request(format!("cannot read the request body: {}", r.body_text()))
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(format!("invalid query string: {}", r.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.code,
            message: &self.message,
            field: self.field.as_deref(),
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rosterd\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::IndexKind;

    fn domain_invalid() -> DomainError {
        DomainError::Invalid {
            field: "role".into(),
            message: "x".into(),
        }
    }

    /// Every domain error the admin API can meet, and what it answers: status,
    /// `error` code, `field`. Long by nature: one row per error, in one table.
    #[test]
    fn every_error_maps_to_its_status() {
        let f = |s: &str| Some(s.to_string());
        let cases: Vec<(ApiError, StatusCode, &str, Option<String>)> = vec![
            // employee::Error
            (
                domain_invalid().into(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                f("role"),
            ),
            (
                DomainError::BadRequest {
                    field: f("cursor"),
                    message: "x".into(),
                }
                .into(),
                StatusCode::BAD_REQUEST,
                "invalid_request",
                f("cursor"),
            ),
            (
                DomainError::NotFound("x".into()).into(),
                StatusCode::NOT_FOUND,
                "not_found",
                None,
            ),
            (
                DomainError::Conflict {
                    field: "email".into(),
                    message: "x".into(),
                }
                .into(),
                StatusCode::CONFLICT,
                "conflict",
                f("email"),
            ),
            (
                DomainError::VersionMismatch {
                    expected: 1,
                    current: 2,
                }
                .into(),
                StatusCode::CONFLICT,
                "version_mismatch",
                f("version"),
            ),
            (
                DomainError::PhotoTooLarge { size: 2, max: 1 }.into(),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                f("photo"),
            ),
            // StoreError: every variant is internal.
            (
                StoreError::Io("disk".into()).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
            ),
            (
                StoreError::Flush("disk".into()).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
            ),
            (
                StoreError::Open {
                    path: "p".into(),
                    reason: "r".into(),
                }
                .into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
            ),
            (
                StoreError::Schema {
                    path: "p".into(),
                    found: "9".into(),
                    expected: 1,
                }
                .into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
            ),
            (
                StoreError::Unique {
                    index: IndexKind::Email,
                    key: "k".into(),
                }
                .into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
            ),
            (
                StoreError::VersionConflict {
                    expected: Some(1),
                    found: Some(2),
                }
                .into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
            ),
            (
                StoreError::Corrupt("c".into()).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
            ),
            (
                StoreError::Invalid("i".into()).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
            ),
            (
                DomainError::Store(StoreError::Io("disk".into())).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
            ),
            // SyncError
            (
                SyncError::UnknownSource("corp".into()).into(),
                StatusCode::NOT_FOUND,
                "not_found",
                None,
            ),
            (
                SyncError::RunNotFound(7).into(),
                StatusCode::NOT_FOUND,
                "not_found",
                None,
            ),
            (
                SyncError::AlreadyRunning("corp".into()).into(),
                StatusCode::CONFLICT,
                "already_running",
                None,
            ),
            (
                SyncError::NotHeld(7).into(),
                StatusCode::CONFLICT,
                "not_held",
                None,
            ),
            (
                SyncError::Interrupted("x".into()).into(),
                StatusCode::SERVICE_UNAVAILABLE,
                "stopping",
                None,
            ),
            (
                SyncError::Domain(domain_invalid()).into(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                f("role"),
            ),
            (
                SyncError::Store(StoreError::Corrupt("c".into())).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
            ),
            // AccountError
            (
                AccountError::InvalidToken.into(),
                StatusCode::BAD_REQUEST,
                "invalid_token",
                f("token"),
            ),
            (
                AccountError::Unauthorized.into(),
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                None,
            ),
            (
                AccountError::Forbidden("x".into()).into(),
                StatusCode::FORBIDDEN,
                "forbidden",
                None,
            ),
            (
                AccountError::Domain(DomainError::Invalid {
                    field: "password".into(),
                    message: "x".into(),
                })
                .into(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                f("password"),
            ),
            // RetryError
            (
                RetryError::NotFound(1).into(),
                StatusCode::NOT_FOUND,
                "not_found",
                None,
            ),
            (
                RetryError::AlreadySent(1).into(),
                StatusCode::CONFLICT,
                "already_sent",
                None,
            ),
            (
                RetryError::Domain(DomainError::NotFound("x".into())).into(),
                StatusCode::NOT_FOUND,
                "not_found",
                None,
            ),
        ];
        for (i, (got, status, code, field)) in cases.into_iter().enumerate() {
            assert_eq!(
                (got.status, got.code, got.field),
                (status, code, field),
                "case {i}: {}",
                got.message
            );
        }
    }

    #[test]
    fn internal_errors_are_hidden() {
        let a = ApiError::from(DomainError::Store(StoreError::Unique {
            index: IndexKind::Email,
            key: "secret-internal-detail".into(),
        }));
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!a.message.contains("secret-internal-detail"));
        for e in [
            SyncError::Store(StoreError::Io("secret-io-detail".into())),
            SyncError::Store(StoreError::Corrupt("secret-io-detail".into())),
        ] {
            let a = ApiError::from(e);
            assert!(!a.message.contains("secret-io-detail"), "{}", a.message);
        }
    }
}

//! The one place that picks HTTP status codes for the admin API. Domain errors map
//! to `{ "error", "message", "field"? }`; internal errors are logged and hidden.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::employee::Error as DomainError;

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
            DomainError::Store(err) => {
                tracing::error!(error = %err, "store error while serving a request");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the server log has the details",
                )
            }
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
    use crate::store::{IndexKind, StoreError};

    fn status(e: DomainError) -> (StatusCode, &'static str, Option<String>) {
        let a = ApiError::from(e);
        (a.status, a.code, a.field)
    }

    #[test]
    fn domain_errors_map_to_statuses() {
        assert_eq!(
            status(DomainError::Invalid {
                field: "role".into(),
                message: "x".into()
            }),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                Some("role".into())
            )
        );
        assert_eq!(
            status(DomainError::Conflict {
                field: "email".into(),
                message: "x".into()
            }),
            (StatusCode::CONFLICT, "conflict", Some("email".into()))
        );
        assert_eq!(
            status(DomainError::NotFound("x".into())).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(DomainError::VersionMismatch {
                expected: 1,
                current: 2
            })
            .0,
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(DomainError::PhotoTooLarge { size: 2, max: 1 }).0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(DomainError::BadRequest {
                field: None,
                message: "x".into()
            })
            .0,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn internal_errors_are_hidden() {
        let a = ApiError::from(DomainError::Store(StoreError::Unique {
            index: IndexKind::Email,
            key: "secret-internal-detail".into(),
        }));
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!a.message.contains("secret-internal-detail"));
    }
}

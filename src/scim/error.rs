//! The one place that picks SCIM status codes: [`ScimError`] renders the RFC 7644
//! §3.12 error body (`status` as a string, `scimType`, `detail`) as
//! `application/scim+json`; domain errors ([`DomainError`], [`StoreError`]) map to
//! it here (the table test below lists every variant), internal errors are logged
//! and hidden. Request-shape errors (bad filter, path, syntax, value) are built by
//! the parsers with the constructors below, which fix their status and `scimType`. [`ScimJson`] reads request bodies so that malformed JSON, a wrong media
//! type or an oversized body are SCIM errors too.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::schema;
use crate::employee::Error as DomainError;
use crate::store::StoreError;

/// The SCIM media type of every response body.
pub const SCIM_JSON: &str = "application/scim+json";

#[derive(Debug)]
pub struct ScimError {
    pub status: StatusCode,
    /// RFC 7644 Table 9 (`invalidFilter`, `uniqueness`, ...).
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad("invalidValue", detail)
    }

    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::bad("invalidFilter", detail)
    }

    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::bad("invalidPath", detail)
    }

    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad("invalidSyntax", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, detail)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            None,
            "missing or invalid bearer token (Authorization: Bearer <SCIM client token>)",
        )
    }

    pub fn precondition_failed(current: u64) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            format!("the resource is at version W/\"{current}\"; read it again and retry"),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            "this method is not supported on this endpoint",
        )
    }

    pub fn not_implemented(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, None, detail)
    }
}

impl From<DomainError> for ScimError {
    fn from(e: DomainError) -> Self {
        let detail = e.to_string();
        match e {
            DomainError::Invalid { .. } | DomainError::BadRequest { .. } => {
                Self::invalid_value(detail)
            }
            DomainError::NotFound(_) => Self::not_found(detail),
            DomainError::Conflict { .. } => {
                Self::new(StatusCode::CONFLICT, Some("uniqueness"), detail)
            }
            DomainError::VersionMismatch { current, .. } => Self::precondition_failed(current),
            DomainError::PhotoTooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, None, detail)
            }
            DomainError::Store(err) => err.into(),
        }
    }
}

impl From<StoreError> for ScimError {
    /// Every store error is the server's problem: logged, hidden from the client.
    fn from(err: StoreError) -> Self {
        let internal = |err: &StoreError| {
            tracing::error!(error = %err, "store error while serving a SCIM request");
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
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

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [schema::ERROR],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        let mut resp = scim_response(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rosterd-scim\""),
            );
        }
        resp
    }
}

/// A JSON body as `application/scim+json`.
pub fn scim_response(status: StatusCode, body: &Value) -> Response {
    scim_bytes(status, serde_json::to_vec(body).unwrap_or_default())
}

/// A SCIM JSON response of bytes already written.
pub fn scim_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON))],
        bytes,
    )
        .into_response()
}

/// A request body parsed as JSON. Accepts `application/scim+json`,
/// `application/json` (any `charset`) and a missing content type; rejections are
/// SCIM errors (400 `invalidSyntax`, 413, 415).
pub struct ScimJson(pub Value);

impl<S: Send + Sync> FromRequest<S> for ScimJson {
    type Rejection = ScimError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ScimError> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !(ct.is_empty() || ct.ends_with("/json") || ct.ends_with("+json")) {
            return Err(ScimError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                format!(
                    "content type `{ct}` is not accepted; send application/scim+json or application/json"
                ),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ScimError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    None,
                    "the request body is larger than maxPayloadSize (see /ServiceProviderConfig)",
                )
            } else {
                ScimError::invalid_syntax(format!(
                    "cannot read the request body: {}",
                    r.body_text()
                ))
            }
        })?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ScimError::invalid_syntax(format!("the body is not valid JSON: {e}")))?;
        if !v.is_object() {
            return Err(ScimError::invalid_syntax("the body must be a JSON object"));
        }
        Ok(ScimJson(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::IndexKind;

    fn map(e: DomainError) -> (u16, Option<&'static str>) {
        let s = ScimError::from(e);
        (s.status.as_u16(), s.scim_type)
    }

    #[test]
    fn domain_errors_map_to_scim_statuses() {
        let inv = DomainError::Invalid {
            field: "role".into(),
            message: "x".into(),
        };
        assert_eq!(map(inv), (400, Some("invalidValue")));
        let c = DomainError::Conflict {
            field: "email".into(),
            message: "x".into(),
        };
        assert_eq!(map(c), (409, Some("uniqueness")));
        assert_eq!(map(DomainError::NotFound("x".into())), (404, None));
        assert_eq!(
            map(DomainError::VersionMismatch {
                expected: 1,
                current: 2
            }),
            (412, None)
        );
        assert_eq!(
            map(DomainError::PhotoTooLarge { size: 2, max: 1 }),
            (413, None)
        );
        let internal = ScimError::from(DomainError::Store(StoreError::Corrupt("secret".into())));
        assert_eq!(internal.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!internal.detail.contains("secret"));
    }

    /// Every domain and store error, and the status and `scimType` it answers.
    /// Long by nature: one row per error, in one table.
    #[test]
    fn every_error_maps_to_status_and_scim_type() {
        let domain = |field: &str| DomainError::Invalid {
            field: field.into(),
            message: "x".into(),
        };
        let cases: Vec<(ScimError, u16, Option<&str>)> = vec![
            (domain("role").into(), 400, Some("invalidValue")),
            (
                DomainError::BadRequest {
                    field: None,
                    message: "x".into(),
                }
                .into(),
                400,
                Some("invalidValue"),
            ),
            (DomainError::NotFound("x".into()).into(), 404, None),
            (
                DomainError::Conflict {
                    field: "email".into(),
                    message: "x".into(),
                }
                .into(),
                409,
                Some("uniqueness"),
            ),
            (
                DomainError::VersionMismatch {
                    expected: 1,
                    current: 2,
                }
                .into(),
                412,
                None,
            ),
            (
                DomainError::PhotoTooLarge { size: 2, max: 1 }.into(),
                413,
                None,
            ),
            (
                DomainError::Store(StoreError::Io("x".into())).into(),
                500,
                None,
            ),
            (StoreError::Io("x".into()).into(), 500, None),
            (StoreError::Flush("x".into()).into(), 500, None),
            (
                StoreError::Open {
                    path: "p".into(),
                    reason: "r".into(),
                }
                .into(),
                500,
                None,
            ),
            (
                StoreError::Schema {
                    path: "p".into(),
                    found: "9".into(),
                    expected: 1,
                }
                .into(),
                500,
                None,
            ),
            (
                StoreError::Unique {
                    index: IndexKind::Email,
                    key: "k".into(),
                }
                .into(),
                500,
                None,
            ),
            (
                StoreError::VersionConflict {
                    expected: None,
                    found: Some(1),
                }
                .into(),
                500,
                None,
            ),
            (StoreError::Corrupt("x".into()).into(), 500, None),
            (StoreError::Invalid("x".into()).into(), 500, None),
            // The request-shape constructors.
            (ScimError::invalid_filter("x"), 400, Some("invalidFilter")),
            (ScimError::invalid_path("x"), 400, Some("invalidPath")),
            (ScimError::invalid_syntax("x"), 400, Some("invalidSyntax")),
            (ScimError::invalid_value("x"), 400, Some("invalidValue")),
            (ScimError::not_found("x"), 404, None),
            (ScimError::unauthorized(), 401, None),
            (ScimError::precondition_failed(3), 412, None),
            (ScimError::method_not_allowed(), 405, None),
            (ScimError::not_implemented("x"), 501, None),
        ];
        for (i, (got, status, scim_type)) in cases.into_iter().enumerate() {
            assert_eq!(
                (got.status.as_u16(), got.scim_type),
                (status, scim_type),
                "case {i}: {}",
                got.detail
            );
            if status == 500 {
                assert!(!got.detail.contains("x"), "case {i}: {}", got.detail);
            }
        }
    }

    #[tokio::test]
    async fn error_body_has_string_status() {
        let resp = ScimError::bad("invalidFilter", "nope").into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], SCIM_JSON);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], "400");
        assert_eq!(v["scimType"], "invalidFilter");
        assert_eq!(v["schemas"][0], schema::ERROR);
    }
}

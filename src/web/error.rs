//! The one place that maps domain errors to the console's status codes:
//! [`DomainError`] (with the store errors inside it) and [`SyncError`] become
//! pages here, with the status the admin API would give; the table test below
//! lists every variant. Form problems a user can fix (a field left empty, a
//! CSRF token missing, an unknown action) are answered where the form is read,
//! with the page that shows them (`form.rs`, `employees.rs`, `session.rs`,
//! `account.rs`).

use axum::http::StatusCode;
use axum::response::Response;

use super::{error_page, message_page};
use crate::employee::Error as DomainError;
use crate::store::StoreError;
use crate::sync::SyncError;

/// A domain error as a page: the status the admin API would give, the message
/// for the rules a user can fix, a generic one (logged) for the rest.
pub fn domain_error_page(e: DomainError) -> Response {
    match e {
        DomainError::NotFound(m) => error_page(StatusCode::NOT_FOUND, &m),
        DomainError::Invalid { .. } | DomainError::BadRequest { .. } => {
            error_page(StatusCode::BAD_REQUEST, &e.to_string())
        }
        DomainError::Conflict { .. } | DomainError::VersionMismatch { .. } => {
            error_page(StatusCode::CONFLICT, &e.to_string())
        }
        DomainError::PhotoTooLarge { .. } => {
            error_page(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string())
        }
        DomainError::Store(s) => store_error_page(&s),
    }
}

/// Every store error (I/O included) is the server's problem: logged, a generic
/// page.
fn store_error_page(s: &StoreError) -> Response {
    tracing::error!(error = %s, "web console: store error");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The roster could not be read or written; try again, and tell an administrator if it persists.",
    )
}

/// A sync error as a page (the statuses the admin API gives).
pub(super) fn sync_error_page(e: SyncError) -> Response {
    let status = match &e {
        SyncError::UnknownSource(_) | SyncError::RunNotFound(_) => StatusCode::NOT_FOUND,
        SyncError::AlreadyRunning(_) | SyncError::NotHeld(_) => StatusCode::CONFLICT,
        SyncError::Interrupted(_) => StatusCode::SERVICE_UNAVAILABLE,
        SyncError::Domain(_) | SyncError::Store(_) => {
            tracing::error!(error = %e, "web console: sync");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The sync history could not be read or written; try again, and tell an administrator if it persists.",
            );
        }
    };
    let mut m = e.to_string();
    if let Some(first) = m.get(..1) {
        m = first.to_uppercase() + &m[1..] + ".";
    }
    message_page(status, "Sync", &m, Some(("/sync", "Back to Sync")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every domain and sync error, and the console's status for it.
    #[test]
    fn every_error_maps_to_its_status() {
        let invalid = || DomainError::Invalid {
            field: "role".into(),
            message: "x".into(),
        };
        let domain: Vec<(DomainError, StatusCode)> = vec![
            (invalid(), StatusCode::BAD_REQUEST),
            (
                DomainError::BadRequest {
                    field: None,
                    message: "x".into(),
                },
                StatusCode::BAD_REQUEST,
            ),
            (DomainError::NotFound("x".into()), StatusCode::NOT_FOUND),
            (
                DomainError::Conflict {
                    field: "email".into(),
                    message: "x".into(),
                },
                StatusCode::CONFLICT,
            ),
            (
                DomainError::VersionMismatch {
                    expected: 1,
                    current: 2,
                },
                StatusCode::CONFLICT,
            ),
            (
                DomainError::PhotoTooLarge { size: 2, max: 1 },
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                DomainError::Store(StoreError::Io("x".into())),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                DomainError::Store(StoreError::Corrupt("x".into())),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, status) in domain {
            let what = format!("{e:?}");
            assert_eq!(domain_error_page(e).status(), status, "{what}");
        }
        let sync: Vec<(SyncError, StatusCode)> = vec![
            (
                SyncError::UnknownSource("corp".into()),
                StatusCode::NOT_FOUND,
            ),
            (SyncError::RunNotFound(7), StatusCode::NOT_FOUND),
            (
                SyncError::AlreadyRunning("corp".into()),
                StatusCode::CONFLICT,
            ),
            (SyncError::NotHeld(7), StatusCode::CONFLICT),
            (
                SyncError::Interrupted("x".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                SyncError::Domain(invalid()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                SyncError::Store(StoreError::Io("x".into())),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, status) in sync {
            let what = format!("{e:?}");
            assert_eq!(sync_error_page(e).status(), status, "{what}");
        }
    }
}

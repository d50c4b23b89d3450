//! What can go wrong, and the exit code each kind gets: 1 rosterd refused (or some
//! items failed), 2 usage, 3 rosterd unreachable.

/// An error that ends the command.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Bad flags or local setup (no token, no confirmation possible).
    #[error("{0}")]
    Usage(String),
    /// rosterd answered with an error status.
    #[error("{}", api_message(*.status, .code, .message, .field.as_deref()))]
    Api {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
    /// The command ran but did not (fully) succeed: items failed, the user declined,
    /// the answer could not be understood.
    #[error("{0}")]
    Failed(String),
    /// No answer from rosterd: connection refused, timeout, TLS failure.
    #[error("cannot reach rosterd at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// Standard output was closed (e.g. piped into `head`): stop quietly.
    #[error("standard output closed")]
    BrokenPipe,
}

impl CtlError {
    pub fn usage(message: impl Into<String>) -> Self {
        CtlError::Usage(message.into())
    }

    pub fn failed(message: impl Into<String>) -> Self {
        CtlError::Failed(message.into())
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Api { .. } | CtlError::Failed(_) => 1,
            CtlError::Usage(_) => 2,
            CtlError::Unreachable { .. } => 3,
            // What a shell reports for a process ended by SIGPIPE.
            CtlError::BrokenPipe => 141,
        }
    }

    /// Prints the error to stderr (nothing for a closed pipe).
    pub fn report(&self) {
        if !matches!(self, CtlError::BrokenPipe) {
            eprintln!("rosterctl: {self}");
        }
    }
}

/// `409 conflict: email: ...`. The server's message often starts with the field
/// already; it is not repeated then.
fn api_message(status: u16, code: &str, message: &str, field: Option<&str>) -> String {
    let mut out = format!("{status} {code}: ");
    if let Some(f) = field
        && !message.starts_with(&format!("{f}:"))
    {
        out.push_str(f);
        out.push_str(": ");
    }
    out.push_str(message);
    if status == 401 {
        out.push_str(" (check --token, --token-file, ROSTERD_TOKEN or ROSTERD_TOKEN_FILE)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str, message: &str, field: Option<&str>) -> CtlError {
        CtlError::Api {
            status,
            code: code.into(),
            message: message.into(),
            field: field.map(str::to_string),
        }
    }

    #[test]
    fn api_errors_name_the_field_once() {
        let e = api(
            409,
            "conflict",
            "email: `a@b.c` is already used",
            Some("email"),
        );
        assert_eq!(
            e.to_string(),
            "409 conflict: email: `a@b.c` is already used"
        );
        let e = api(
            400,
            "invalid_request",
            "limit must be a number",
            Some("limit"),
        );
        assert_eq!(
            e.to_string(),
            "400 invalid_request: limit: limit must be a number"
        );
        let e = api(404, "not_found", "no employee", None);
        assert_eq!(e.to_string(), "404 not_found: no employee");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(api(404, "not_found", "x", None).exit_code(), 1);
        assert_eq!(CtlError::usage("x").exit_code(), 2);
        let e = CtlError::Unreachable {
            url: "http://127.0.0.1:1".into(),
            detail: "refused".into(),
        };
        assert_eq!(e.exit_code(), 3);
    }
}

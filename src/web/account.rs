//! The pages invitation and reset mails link to: `/accept-invite?token=…` and
//! `/reset-password?token=…`. No sign-in: the token is the key. The token comes
//! in the link's URL (the mail's), is carried in the form's body from there, and
//! goes to the same domain calls as `POST /api/v1/account/accept-invite` and
//! `reset-password`. A link that no longer works gets a page saying so and what
//! to do.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Chrome, WebState, domain_error_page, message_page};
use crate::employee::Error as DomainError;
use crate::employee::PasswordPolicy;
use crate::employee::account::AccountError;
use crate::secret::Secret;

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: Option<Secret>,
}

#[derive(Deserialize)]
pub struct AccountForm {
    #[serde(default)]
    token: Option<Secret>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    password_again: Option<Secret>,
}

#[derive(Template, WebTemplate)]
#[template(path = "set_password.html")]
struct SetPasswordPage {
    chrome: Chrome,
    /// Accepting an invitation (choose a username too) or a reset.
    invite: bool,
    action: &'static str,
    title: &'static str,
    token: String,
    username: String,
    username_error: Option<String>,
    password_error: Option<String>,
    rules: Vec<String>,
}

/// The password policy in words.
pub fn policy_rules(p: &PasswordPolicy) -> Vec<String> {
    let mut r = vec![format!(
        "between {} and {} characters",
        p.min_length, p.max_length
    )];
    for (on, what) in [
        (p.require_uppercase, "an uppercase letter"),
        (p.require_lowercase, "a lowercase letter"),
        (p.require_digit, "a digit"),
        (p.require_symbol, "a symbol (not a letter or digit)"),
    ] {
        if on {
            r.push(format!("at least {what}"));
        }
    }
    r
}

fn form_page(
    state: &WebState,
    invite: bool,
    token: &str,
    username: &str,
    errors: (Option<String>, Option<String>),
) -> SetPasswordPage {
    SetPasswordPage {
        chrome: Chrome::anonymous(),
        invite,
        action: if invite {
            "/accept-invite"
        } else {
            "/reset-password"
        },
        title: if invite {
            "Set up your account"
        } else {
            "Choose a new password"
        },
        token: token.to_string(),
        username: username.to_string(),
        username_error: errors.0,
        password_error: errors.1,
        rules: policy_rules(state.app.roster.password_policy()),
    }
}

fn link_dead(invite: bool) -> Response {
    let what = if invite {
        "Ask an administrator to send you a new invitation."
    } else {
        "Ask for a new password reset (an administrator can send one)."
    };
    message_page(
        StatusCode::BAD_REQUEST,
        "This link no longer works",
        &format!("The link is unknown, has expired, or was already used. {what}"),
        None,
    )
}

async fn show(state: WebState, q: TokenQuery, invite: bool) -> Response {
    let Some(token) = q.token.filter(|t| !t.expose().trim().is_empty()) else {
        return link_dead(invite);
    };
    match state.app.roster.link_is_live(&token, invite) {
        Ok(true) => {
            form_page(&state, invite, token.expose().trim(), "", (None, None)).into_response()
        }
        Ok(false) => link_dead(invite),
        Err(e) => domain_error_page(e),
    }
}

/// `GET /accept-invite?token=…`
pub async fn accept_invite_get(
    State(state): State<WebState>,
    Query(q): Query<TokenQuery>,
) -> Response {
    show(state, q, true).await
}

/// `GET /reset-password?token=…`
pub async fn reset_password_get(
    State(state): State<WebState>,
    Query(q): Query<TokenQuery>,
) -> Response {
    show(state, q, false).await
}

async fn submit(state: WebState, form: AccountForm, invite: bool) -> Response {
    let Some(token) = form.token.filter(|t| !t.expose().trim().is_empty()) else {
        return link_dead(invite);
    };
    let password = form.password.unwrap_or_else(|| Secret::new(""));
    let again = form.password_again.unwrap_or_else(|| Secret::new(""));
    let redo = |errors: (Option<String>, Option<String>)| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            form_page(&state, invite, token.expose(), &form.username, errors),
        )
            .into_response()
    };
    if password.expose() != again.expose() {
        return redo((
            None,
            Some("The two passwords differ; type the same one twice.".into()),
        ));
    }
    let roster = &state.app.roster;
    let r = if invite {
        roster
            .accept_invite(&token, &form.username, &password)
            .await
    } else {
        roster.reset_password(&token, &password).await
    };
    match r {
        Ok(e) => {
            let m = if invite {
                format!(
                    "Your account is set up. Sign in with the username {} and your new password.",
                    e.username
                )
            } else {
                "Your password is changed. Sign in with your new password.".to_string()
            };
            message_page(StatusCode::OK, "Done", &m, Some(("/sign-in", "Sign in")))
        }
        Err(AccountError::InvalidToken) => link_dead(invite),
        Err(AccountError::Forbidden(m)) => message_page(
            StatusCode::FORBIDDEN,
            "This account cannot be set up",
            &m,
            None,
        ),
        Err(AccountError::Domain(
            DomainError::Invalid { field, message } | DomainError::Conflict { field, message },
        )) => {
            if field == "username" {
                redo((Some(message), None))
            } else {
                redo((None, Some(message)))
            }
        }
        Err(AccountError::Domain(e)) => domain_error_page(e),
        Err(AccountError::Unauthorized) => link_dead(invite),
    }
}

/// `POST /accept-invite`
pub async fn accept_invite_post(
    State(state): State<WebState>,
    Form(form): Form<AccountForm>,
) -> Response {
    submit(state, form, true).await
}

/// `POST /reset-password`
pub async fn reset_password_post(
    State(state): State<WebState>,
    Form(form): Form<AccountForm>,
) -> Response {
    submit(state, form, false).await
}

//! `rosterctl outbox list [--dead]` and `rosterctl outbox retry ID`: the messages
//! rosterd queued (invitations, password resets), their delivery state, and a
//! fresh round of attempts for dead ones. Links are never shown.

use comfy_table::{Table, presets};
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::cli::OutboxCommand;
use crate::client::{Client, decode};
use crate::error::CtlError;
use crate::output;

/// One outbox message as the API returns it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Message {
    id: u64,
    kind: String,
    to: String,
    state: String,
    attempts: u32,
    created_at: String,
    next_attempt_at: String,
    last_error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Page {
    items: Vec<Value>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// Every message, following `next_cursor` page by page.
async fn list_all(client: &Client, dead: bool, page_size: u64) -> Result<Page, CtlError> {
    let mut all = Page::default();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", page_size.to_string())];
        if dead {
            query.push(("dead", "true".to_string()));
        }
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let page: Page = decode(client.get(&["outbox"], &query).await?, "outbox")?;
        all.items.extend(page.items);
        // A cursor that does not move would loop for ever: stop there.
        match page.next_cursor {
            Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
            _ => return Ok(all),
        }
    }
}

pub async fn run(client: &Client, cmd: OutboxCommand) -> Result<(), CtlError> {
    match cmd {
        OutboxCommand::List {
            dead,
            json,
            page_size,
        } => {
            let page = list_all(client, dead, page_size).await?;
            if json {
                return output::emit_json(&Value::Array(page.items));
            }
            if page.items.is_empty() {
                let what = if dead {
                    "no dead messages"
                } else {
                    "the outbox is empty"
                };
                return output::emit_lines(&[what.into()]);
            }
            let mut msgs = Vec::with_capacity(page.items.len());
            for v in page.items {
                msgs.push(decode::<Message>(v, "outbox message")?);
            }
            output::emit(&format!("{}\n", table(&msgs)))
        }
        OutboxCommand::Retry { id } => {
            let id = id.to_string();
            let v = client
                .send_json(
                    Method::POST,
                    &["outbox", &id, "retry"],
                    &serde_json::json!({}),
                )
                .await?;
            let m: Message = decode(v, "outbox message")?;
            output::emit_lines(&[format!(
                "message {} to {} queued for another attempt ({})",
                m.id, m.to, m.state
            )])
        }
    }
}

fn table(msgs: &[Message]) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(vec![
        "ID",
        "KIND",
        "TO",
        "STATE",
        "ATTEMPTS",
        "CREATED",
        "NEXT ATTEMPT",
        "LAST ERROR",
    ]);
    for m in msgs {
        let next = if m.state == "pending" {
            output::short_time(&m.next_attempt_at)
        } else {
            "-".into()
        };
        t.add_row(vec![
            m.id.to_string(),
            m.kind.clone(),
            m.to.clone(),
            m.state.clone(),
            m.attempts.to_string(),
            output::short_time(&m.created_at),
            next,
            m.last_error.clone().unwrap_or_default(),
        ]);
    }
    t.lines()
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_state_and_error() {
        let t = table(&[Message {
            id: 3,
            kind: "invite".into(),
            to: "a@x.example".into(),
            state: "dead".into(),
            attempts: 10,
            created_at: "2024-05-01T10:00:00Z".into(),
            next_attempt_at: "2024-05-01T10:00:00Z".into(),
            last_error: Some("connection refused".into()),
        }]);
        assert!(
            t.contains("a@x.example") && t.contains("dead") && t.contains("connection refused")
        );
    }
}

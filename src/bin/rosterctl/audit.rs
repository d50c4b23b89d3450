//! `rosterctl audit`: the audit log, newest first, following `next_before` pages.

use serde_json::Value;

use crate::cli::AuditArgs;
use crate::client::{Client, decode};
use crate::error::CtlError;
use crate::model::{AuditEntry, AuditPage};
use crate::output;

/// The most entries the server returns in one page.
const MAX_PAGE: usize = 1000;

pub async fn run(client: &Client, a: AuditArgs) -> Result<(), CtlError> {
    let limit = usize::try_from(a.limit).unwrap_or(usize::MAX);
    let mut items: Vec<Value> = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut query = vec![("limit", (limit - items.len()).min(MAX_PAGE).to_string())];
        if let Some(e) = &a.employee {
            query.push(("employee", e.trim().to_string()));
        }
        if let Some(b) = before {
            query.push(("before", b.to_string()));
        }
        let page: AuditPage = decode(client.get(&["audit"], &query).await?, "audit page")?;
        items.extend(page.items);
        match page.next_before {
            Some(b) if items.len() < limit => before = Some(b),
            _ => break,
        }
    }
    items.truncate(limit);
    if a.json {
        return output::emit_json(&Value::Array(items));
    }
    if items.is_empty() {
        return output::emit_lines(&["no audit entries".into()]);
    }
    let mut lines = Vec::new();
    for v in items {
        let entry: AuditEntry = decode(v, "audit entry")?;
        lines.extend(entry_lines(&entry));
    }
    output::emit_lines(&lines)
}

/// A header line per entry, then one indented line per changed field.
fn entry_lines(e: &AuditEntry) -> Vec<String> {
    let mut out = vec![format!(
        "#{}  {}  {}  {}  {}",
        e.seq,
        output::short_time(&e.at),
        e.actor,
        e.action,
        e.employee_id.as_deref().unwrap_or("-")
    )];
    out.extend(e.changes.iter().map(|c| {
        format!(
            "    {}: {} -> {}",
            c.field,
            output::compact(&c.before),
            output::compact(&c.after)
        )
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Actor, FieldChange};

    #[test]
    fn entries_show_who_what_and_when() {
        let e = AuditEntry {
            seq: 7,
            at: "2024-05-01T10:00:00.123456789Z".into(),
            actor: Actor {
                kind: "admin".into(),
                name: "admin".into(),
            },
            employee_id: Some("abc".into()),
            action: "update".into(),
            changes: vec![FieldChange {
                field: "role".into(),
                before: Value::String("Technician".into()),
                after: Value::String("Dispatcher".into()),
            }],
        };
        assert_eq!(
            entry_lines(&e),
            vec![
                "#7  2024-05-01 10:00:00Z  admin:admin  update  abc".to_string(),
                "    role: \"Technician\" -> \"Dispatcher\"".to_string(),
            ]
        );
    }
}

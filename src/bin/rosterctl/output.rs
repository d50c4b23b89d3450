//! Everything written to stdout: JSON, the employee table, `key: value` listings.
//! Writes go through [`emit`], so a closed pipe ends the command quietly instead of
//! panicking.

use std::io::Write;

use comfy_table::{Table, presets};
use serde_json::Value;

use crate::error::CtlError;
use crate::model::Employee;

/// Writes text to stdout.
pub fn emit(text: &str) -> Result<(), CtlError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => CtlError::BrokenPipe,
            _ => CtlError::failed(format!("cannot write to standard output: {e}")),
        })
}

/// Writes lines to stdout.
pub fn emit_lines(lines: &[String]) -> Result<(), CtlError> {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    emit(&text)
}

/// Pretty JSON, one document.
pub fn emit_json(v: &Value) -> Result<(), CtlError> {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| CtlError::failed(format!("cannot format JSON: {e}")))?;
    emit(&format!("{text}\n"))
}

pub fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn or_dash(s: Option<&str>) -> String {
    match s {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => "-".into(),
    }
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

/// "1 employee", "3 employees".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The employee table of `employees list`.
pub fn employee_table(employees: &[Employee]) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING).set_header(vec![
        "ID",
        "NAME",
        "EMAIL",
        "ROLE",
        "POSITIONS",
        "BUSINESS UNIT",
        "ENABLED",
        "ACTIVE",
        "STATUS",
    ]);
    for e in employees {
        table.add_row(vec![
            e.id.clone(),
            e.display_name.clone(),
            e.email.clone(),
            e.role.clone(),
            list_or_dash(&e.positions),
            or_dash(e.business_unit.as_deref()),
            yes_no(e.enabled).to_string(),
            yes_no(e.active).to_string(),
            e.account_status.clone(),
        ]);
    }
    table
        .lines()
        .map(|l| l.trim().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `key: value` lines for one employee, id first.
pub fn employee_lines(e: &Employee) -> Vec<String> {
    let office = e.office_phone.as_ref().map(|p| match &p.extension {
        Some(x) if !x.is_empty() => format!("{} ext. {x}", p.number),
        _ => p.number.clone(),
    });
    let photo = e.photo_url.as_ref().map(|u| match &e.photo_content_type {
        Some(ct) => format!("{u} ({ct})"),
        None => u.clone(),
    });
    let account = format!(
        "{} (password {})",
        e.account_status,
        if e.has_password { "set" } else { "not set" }
    );
    let active = match (&e.active, &e.deactivated_by) {
        (false, Some(by)) => format!("no (deactivated by {by})"),
        (a, _) => yes_no(*a).to_string(),
    };
    let sources = e
        .source_keys
        .iter()
        .map(|(s, k)| format!("{s}={k}"))
        .collect::<Vec<_>>();
    let rows: Vec<(&str, String)> = vec![
        ("id", e.id.clone()),
        ("display_name", e.display_name.clone()),
        ("given_name", e.given_name.clone()),
        ("family_name", e.family_name.clone()),
        ("email", e.email.clone()),
        ("username", e.username.clone()),
        ("positions", list_or_dash(&e.positions)),
        ("role", e.role.clone()),
        ("business_unit", or_dash(e.business_unit.as_deref())),
        ("photo", or_dash(photo.as_deref())),
        ("mobile_phone", or_dash(e.mobile_phone.as_deref())),
        ("office_phone", or_dash(office.as_deref())),
        ("account_status", account),
        ("enabled", yes_no(e.enabled).to_string()),
        ("active", active),
        ("permissions_granted", list_or_dash(&e.permissions.grant)),
        ("permissions_revoked", list_or_dash(&e.permissions.revoke)),
        (
            "effective_permissions",
            list_or_dash(&e.effective_permissions),
        ),
        ("external_id", or_dash(e.external_id.as_deref())),
        ("source_keys", list_or_dash(&sources)),
        ("version", e.version.to_string()),
        ("created_at", e.created_at.clone()),
        ("updated_at", e.updated_at.clone()),
    ];
    aligned(&rows)
}

/// `key:   value` lines with the values in one column.
pub fn aligned(rows: &[(&str, String)]) -> Vec<String> {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    rows.iter()
        .map(|(k, v)| format!("{:<width$}{v}", format!("{k}:")))
        .collect()
}

/// A JSON value in one short line, for audit changes.
pub fn compact(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Asks "Proceed? [y/N]" on the terminal; refuses (exit 2) when standard input is
/// not one. `what` completes "refusing to ... without confirmation".
pub fn confirm(what: &str) -> Result<(), CtlError> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CtlError::usage(format!(
            "refusing to {what} without confirmation: standard input is not a terminal; \
             re-run with --yes to proceed (nothing was changed)"
        )));
    }
    eprint!("Proceed? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CtlError::failed(format!("cannot read the answer: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CtlError::failed("not confirmed; nothing was changed")),
    }
}

/// `2024-05-01 10:00:00Z` from an RFC 3339 time (as is if it does not parse).
pub fn short_time(at: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%SZ")
                .to_string()
        })
        .unwrap_or_else(|_| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn employee_lines_start_with_the_id_and_list_permissions() {
        let e = Employee {
            id: "abc".into(),
            effective_permissions: vec!["jobs.view".into(), "reports.view".into()],
            office_phone: Some(crate::model::OfficePhone {
                number: "+1 555 0100".into(),
                extension: Some("12".into()),
            }),
            ..Default::default()
        };
        let lines = employee_lines(&e);
        assert!(lines[0].starts_with("id:"));
        assert!(lines[0].ends_with("abc"));
        assert!(
            lines.iter().any(|l| l.starts_with("effective_permissions:")
                && l.ends_with("jobs.view, reports.view"))
        );
        assert!(lines.iter().any(|l| l.ends_with("+1 555 0100 ext. 12")));
    }

    #[test]
    fn counts_are_plural_aware() {
        assert_eq!(count(1, "employee"), "1 employee");
        assert_eq!(count(0, "employee"), "0 employees");
    }
}

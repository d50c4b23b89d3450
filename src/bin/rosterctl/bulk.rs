//! `rosterctl bulk activate|deactivate|send-invite|send-password-reset`: collect
//! the ids (given, or by filter), ask the server for a dry run, show it, get a
//! confirmation (or `--yes`), then apply and report each id. Nothing changes (and
//! no mail is queued) without the confirmation.

use std::collections::{BTreeSet, HashMap};

use comfy_table::{Table, presets};
use reqwest::Method;

use crate::cli::{BulkAction, BulkArgs};
use crate::client::{Client, decode};
use crate::employees::{ListRequest, fetch_all};
use crate::error::CtlError;
use crate::model::{BulkResponse, Employee};
use crate::output;

/// The most ids the server takes in one request.
const BULK_MAX: usize = 5000;

/// Words for one action.
struct Words {
    /// "refusing to {verb} 3 employees", "will {verb}".
    verb: &'static str,
    /// "2 will be {past}".
    past: &'static str,
    /// "{done} 2 employees".
    done: &'static str,
    /// The row of an id that needed nothing.
    already: &'static str,
}

fn words(action: BulkAction) -> Words {
    match action {
        BulkAction::Activate => Words {
            verb: "activate",
            past: "activated",
            done: "activated",
            already: "already active",
        },
        BulkAction::Deactivate => Words {
            verb: "deactivate",
            past: "deactivated",
            done: "deactivated",
            already: "already inactive",
        },
        BulkAction::SendInvite => Words {
            verb: "send an invite to",
            past: "sent an invite",
            done: "sent an invite to",
            already: "unchanged",
        },
        BulkAction::SendPasswordReset => Words {
            verb: "send a password reset to",
            past: "sent a password reset",
            done: "sent a password reset to",
            already: "unchanged",
        },
    }
}

/// The ids to act on, in order, and a label ("Name <email>") where known.
struct Targets {
    ids: Vec<String>,
    labels: HashMap<String, String>,
}

pub async fn run(client: &Client, a: BulkArgs) -> Result<(), CtlError> {
    let w = words(a.action);
    let targets = collect_targets(client, &a).await?;
    if targets.ids.is_empty() {
        return output::emit_lines(&["no employees match; nothing to do".into()]);
    }
    let plan = send(client, a.action, &targets.ids, true).await?;
    let mut lines = vec![format!(
        "dry run: {} {}",
        w.verb,
        output::count(targets.ids.len(), "employee")
    )];
    lines.extend(result_lines(&plan, &targets, &w, true));
    lines.push(summary(&plan, &w, true));
    output::emit_lines(&lines)?;
    if plan.changed == 0 {
        return match plan.failed {
            0 => output::emit_lines(&["nothing to change".into()]),
            n => Err(CtlError::failed(format!(
                "{} cannot be {}; nothing was changed",
                output::count(n, "employee"),
                w.past
            ))),
        };
    }
    if a.dry_run {
        return Ok(());
    }
    if !a.yes {
        confirm(&w, plan.changed)?;
    }
    let done = send(client, a.action, &targets.ids, false).await?;
    let mut lines = result_lines(&done, &targets, &w, false);
    lines.push(summary(&done, &w, false));
    output::emit_lines(&lines)?;
    match done.failed {
        0 => Ok(()),
        n => Err(CtlError::failed(format!(
            "{} of {} could not be {}",
            n,
            output::count(done.results.len(), "employee"),
            w.past
        ))),
    }
}

async fn collect_targets(client: &Client, a: &BulkArgs) -> Result<Targets, CtlError> {
    if a.filter.is_empty() {
        let mut seen = BTreeSet::new();
        let ids: Vec<String> = a
            .ids
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && seen.insert(s.clone()))
            .collect();
        if ids.is_empty() {
            return Err(CtlError::usage("--ids: give at least one employee id"));
        }
        return Ok(Targets {
            ids,
            labels: HashMap::new(),
        });
    }
    let req = ListRequest {
        status: "all",
        filters: &a.filter,
        sort: None,
        limit: None,
        page_size: 1000,
    };
    let (items, _) = fetch_all(client, &req).await?;
    let mut targets = Targets {
        ids: Vec::with_capacity(items.len()),
        labels: HashMap::new(),
    };
    for v in items {
        let e: Employee = decode(v, "employee")?;
        targets
            .labels
            .insert(e.id.clone(), format!("{} <{}>", e.display_name, e.email));
        targets.ids.push(e.id);
    }
    Ok(targets)
}

/// `POST /api/v1/employees/bulk`, in batches the server accepts, answers merged.
async fn send(
    client: &Client,
    action: BulkAction,
    ids: &[String],
    dry_run: bool,
) -> Result<BulkResponse, CtlError> {
    let mut all = BulkResponse {
        dry_run,
        ..Default::default()
    };
    for chunk in ids.chunks(BULK_MAX) {
        let body = serde_json::json!({ "action": action, "ids": chunk, "dry_run": dry_run });
        let v = client
            .send_json(Method::POST, &["employees", "bulk"], &body)
            .await?;
        let r: BulkResponse = decode(v, "bulk result")?;
        all.succeeded += r.succeeded;
        all.failed += r.failed;
        all.changed += r.changed;
        all.results.extend(r.results);
    }
    Ok(all)
}

/// One row per id: what happened (or would happen), the id, who or why not.
fn result_lines(r: &BulkResponse, t: &Targets, w: &Words, dry_run: bool) -> Vec<String> {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    for item in &r.results {
        let outcome = match (item.ok, item.changed, dry_run) {
            (false, _, true) => "would fail".to_string(),
            (false, _, false) => "failed".to_string(),
            (true, true, true) => format!("will {}", w.verb),
            (true, true, false) => w.past.to_string(),
            (true, false, _) => w.already.to_string(),
        };
        let detail = match (&item.error, t.labels.get(&item.id)) {
            (Some(err), _) => err.clone(),
            (None, Some(label)) => label.clone(),
            (None, None) => String::new(),
        };
        table.add_row(vec![outcome, item.id.clone(), detail]);
    }
    table
        .lines()
        .map(|l| format!(" {}", l.trim_end()))
        .collect()
}

/// "2 will be deactivated, 1 already inactive, 1 would fail" or, after the fact,
/// "deactivated 2 employees, 1 already inactive, 1 failed".
fn summary(r: &BulkResponse, w: &Words, dry_run: bool) -> String {
    let unchanged = r.succeeded.saturating_sub(r.changed);
    if dry_run {
        format!(
            "{} will be {}, {} {}, {} would fail",
            r.changed, w.past, unchanged, w.already, r.failed
        )
    } else {
        format!(
            "{} {}, {} {}, {} failed",
            w.done,
            output::count(r.changed, "employee"),
            unchanged,
            w.already,
            r.failed
        )
    }
}

/// Asks on the terminal; refuses (exit 2) when standard input is not one.
fn confirm(w: &Words, changes: usize) -> Result<(), CtlError> {
    output::confirm(&format!(
        "{} {}",
        w.verb,
        output::count(changes, "employee")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BulkResult;

    #[test]
    fn summaries_count_each_outcome() {
        let r = BulkResponse {
            dry_run: false,
            succeeded: 3,
            failed: 1,
            changed: 2,
            results: vec![BulkResult {
                id: "x".into(),
                ok: false,
                changed: false,
                error: Some("`x` is not an employee id".into()),
            }],
        };
        let w = words(BulkAction::Deactivate);
        assert_eq!(
            summary(&r, &w, false),
            "deactivated 2 employees, 1 already inactive, 1 failed"
        );
        assert_eq!(
            summary(&r, &w, true),
            "2 will be deactivated, 1 already inactive, 1 would fail"
        );
        let t = Targets {
            ids: vec!["x".into()],
            labels: HashMap::new(),
        };
        let lines = result_lines(&r, &t, &w, false);
        assert!(lines[0].contains("failed") && lines[0].contains("not an employee id"));
        let w = words(BulkAction::SendPasswordReset);
        assert_eq!(
            summary(&r, &w, false),
            "sent a password reset to 2 employees, 1 unchanged, 1 failed"
        );
        assert_eq!(
            summary(&r, &w, true),
            "2 will be sent a password reset, 1 unchanged, 1 would fail"
        );
    }
}

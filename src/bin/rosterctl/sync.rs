//! `rosterctl sync ...` and `rosterctl employees explain`: directory sync runs,
//! their history and plans, approval of held plans, and field provenance.
//!
//! A run is started without waiting for it and watched through its progress (a
//! progress bar on a terminal, a line per phase otherwise); its summary is
//! printed when it ends. Plans are read page by page, never whole.

use std::io::IsTerminal;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{ApproveArgs, RunArgs, ShowArgs, SyncCommand, SyncRunArgs, SyncRunsArgs};
use crate::client::Client;
use crate::error::CtlError;
use crate::output;

pub async fn run(client: &Client, cmd: SyncCommand) -> Result<(), CtlError> {
    match cmd {
        SyncCommand::Sources(a) => sources(client, a.json).await,
        SyncCommand::Run(a) => run_source(client, a).await,
        SyncCommand::Runs(a) => runs(client, a).await,
        SyncCommand::Show(a) => show(client, a).await,
        SyncCommand::Approve(a) => approve(client, a).await,
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn sources(client: &Client, json: bool) -> Result<(), CtlError> {
    let v = client.get(&["sync", "sources"], &[]).await?;
    if json {
        return output::emit_json(&v["items"]);
    }
    let mut lines = Vec::new();
    for src in v["items"].as_array().into_iter().flatten() {
        lines.push(format!(
            "{}  {} {}  priority {}{}",
            s(&src["id"]),
            s(&src["kind"]),
            s(&src["location"]),
            s(&src["priority"]),
            if src["lifecycle"] == Value::Bool(true) {
                ", decides the lifecycle"
            } else {
                ""
            }
        ));
        lines.push(format!(
            "  schedules: full {}, incremental {}; last success {}",
            s(&src["full_schedule"]),
            s(&src["incremental_schedule"]),
            s(&src["last_success"])
        ));
        lines.push(format!("  lease: {}", lease_line(&src["lease"])));
        if src["last_run"].is_object() {
            lines.push(format!("  last run: {}", run_line(&src["last_run"])));
        }
    }
    if lines.is_empty() {
        lines.push("no sources configured ([[sources]] in rosterd.toml)".into());
    }
    output::emit_lines(&lines)
}

/// Who holds a source's lease: `held by host:pid, epoch 3, until …`, or free.
fn lease_line(l: &Value) -> String {
    if !l.is_object() {
        return "free".into();
    }
    if l["free"] == Value::Bool(true) {
        return format!(
            "free (last held by {}, epoch {}, expired {})",
            s(&l["holder"]),
            s(&l["epoch"]),
            s(&l["expires_at"])
        );
    }
    format!(
        "held by {}, epoch {}, until {}",
        s(&l["holder"]),
        s(&l["epoch"]),
        s(&l["expires_at"])
    )
}

/// `#12 corp full applied 2026-...: 3 created, 1 updated, ...`
fn run_line(r: &Value) -> String {
    let c = &r["counts"];
    let mut line = format!(
        "#{} {} {} {} ({}) at {}: {} created, {} updated, {} activated, {} deactivated, {} unchanged, {} held, {} skipped, {} errors",
        s(&r["id"]),
        s(&r["source"]),
        s(&r["kind"]),
        s(&r["outcome"]),
        s(&r["trigger"]),
        s(&r["started_at"]),
        s(&c["created"]),
        s(&c["updated"]),
        s(&c["activated"]),
        s(&c["deactivated"]),
        s(&c["unchanged"]),
        s(&c["held"]),
        s(&c["skipped"]),
        s(&c["errors"]),
    );
    if let Some(f) = r["fetch"].as_str() {
        line.push_str(&format!(
            ", fetched: {f} ({} entries)",
            s(&r["entries_seen"])
        ));
    }
    if let Some(m) = r["message"].as_str() {
        line.push_str(&format!("\n  {m}"));
    }
    line
}

/// The run's summary and the errors it shows.
fn run_lines(r: &Value) -> Vec<String> {
    let mut lines = vec![run_line(r)];
    let errors = r["errors"].as_array().cloned().unwrap_or_default();
    if !errors.is_empty() {
        let omitted = r["errors_omitted"].as_u64().unwrap_or(0);
        lines.push(if omitted > 0 {
            format!("errors ({} shown; {omitted} more):", errors.len())
        } else {
            format!("errors ({}):", errors.len())
        });
        for e in &errors {
            lines.push(format!("  {}: {}", s(&e["dn"]), s(&e["message"])));
        }
    }
    lines
}

/// One plan item and its changes.
fn item_lines(item: &Value, lines: &mut Vec<String>) {
    let reason = item["reason"].as_str().unwrap_or("");
    lines.push(format!(
        "  {:<10} {}{}",
        s(&item["action"]),
        s(&item["label"]),
        if reason.is_empty() {
            String::new()
        } else {
            format!("  ({reason})")
        }
    ));
    for c in item["changes"].as_array().into_iter().flatten() {
        lines.push(format!(
            "      {}: {} -> {}",
            s(&c["field"]),
            output::compact(&c["before"]),
            output::compact(&c["after"])
        ));
    }
}

/// Plan items `sync show` prints under a summary; `--plan` shows them all.
const PLAN_PREVIEW: usize = 100;
/// Plan items `sync run` prints under its summary (a first import's would be
/// a hundred profiles' worth of fields; `sync show RUN` shows more).
const RUN_PREVIEW: usize = 20;
/// Plan items per page when a whole plan is read.
const PLAN_PAGE: usize = 2000;

async fn plan_page(
    client: &Client,
    id: &str,
    offset: usize,
    limit: usize,
) -> Result<Value, CtlError> {
    let query = [("offset", offset.to_string()), ("limit", limit.to_string())];
    client.get(&["sync", "runs", id, "plan"], &query).await
}

/// Prints run `id`'s plan: its first `preview` items, or all of them
/// (`all`), page by page as they come.
async fn print_plan(client: &Client, id: &str, all: bool, preview: usize) -> Result<(), CtlError> {
    let mut offset = 0;
    loop {
        let limit = if all { PLAN_PAGE } else { preview };
        let page = plan_page(client, id, offset, limit).await?;
        let total = page["total"].as_u64().unwrap_or(0);
        let items = page["items"].as_array().cloned().unwrap_or_default();
        let mut lines = Vec::new();
        if offset == 0 && total > 0 {
            lines.push(format!(
                "plan ({total} items that change or need attention):"
            ));
        }
        for item in &items {
            item_lines(item, &mut lines);
        }
        offset += items.len();
        let next = page["next_offset"].as_u64();
        if !all && let Some(next) = next {
            lines.push(format!(
                "  ... {} more: rosterctl sync show {id} --plan",
                total.saturating_sub(next)
            ));
        }
        output::emit_lines(&lines)?;
        if !all || next.is_none() || items.is_empty() {
            return Ok(());
        }
    }
}

/// Prints the run's summary as JSON with its whole plan, streamed page by
/// page (`"plan": [...]` after the summary's fields).
async fn stream_json(client: &Client, summary: &Value) -> Result<(), CtlError> {
    let id = s(&summary["id"]);
    let text = serde_json::to_string(summary)
        .map_err(|e| CtlError::failed(format!("cannot format JSON: {e}")))?;
    let head = text.strip_suffix('}').unwrap_or(&text);
    let sep = if head.ends_with('{') { "" } else { "," };
    output::emit(&format!("{head}{sep}\"plan\":["))?;
    let mut offset = 0;
    loop {
        let page = plan_page(client, &id, offset, PLAN_PAGE).await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        let mut chunk = String::new();
        for (i, item) in items.iter().enumerate() {
            if offset + i > 0 {
                chunk.push(',');
            }
            chunk.push_str(&item.to_string());
        }
        output::emit(&chunk)?;
        offset += items.len();
        if page["next_offset"].as_u64().is_none() || items.is_empty() {
            break;
        }
    }
    output::emit("]}\n")
}

/// Polls run `id` until it ends, showing its progress on stderr; its summary.
async fn watch(client: &Client, id: &str) -> Result<Value, CtlError> {
    use indicatif::{ProgressBar, ProgressStyle};
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    let spinner = ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar_style = ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let mut last_phase = String::new();
    loop {
        let r = client.get(&["sync", "runs", id], &[]).await?;
        if r["outcome"] != "running" {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            return Ok(r);
        }
        let p = &r["progress"];
        if p.is_object() {
            let phase = s(&p["phase"]);
            let msg = format!(
                "run #{id} {phase}: {} fetched, {} planned, {} applied ({}/s)",
                s(&p["fetched"]),
                s(&p["planned"]),
                s(&p["applied"]),
                s(&p["rate_per_sec"])
            );
            match &bar {
                Some(b) => {
                    if phase == "apply" {
                        b.set_style(bar_style.clone());
                        b.set_length(p["to_apply"].as_u64().unwrap_or(0));
                        b.set_position(p["applied"].as_u64().unwrap_or(0));
                    } else {
                        b.set_style(spinner.clone());
                    }
                    b.set_message(msg);
                }
                None if phase != last_phase => eprintln!("{msg}"),
                None => {}
            }
            last_phase = phase;
        }
        // Often enough that the prompt comes back soon after the run ends.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_source(client: &Client, a: SyncRunArgs) -> Result<(), CtlError> {
    let kind = if a.incremental { "incremental" } else { "full" };
    let body = json!({ "kind": kind, "dry_run": a.dry_run, "wait": false });
    let started = client
        .send_json(Method::POST, &["sync", "sources", &a.source, "run"], &body)
        .await?;
    let id = s(&started["id"]);
    let r = watch(client, &id).await?;
    if a.json {
        output::emit_json(&r)?;
    } else {
        output::emit_lines(&run_lines(&r))?;
        print_plan(client, &id, false, RUN_PREVIEW).await?;
    }
    if r["outcome"] == "failed" {
        return Err(CtlError::failed(format!(
            "run #{} failed; nobody was deactivated",
            s(&r["id"])
        )));
    }
    Ok(())
}

async fn runs(client: &Client, a: SyncRunsArgs) -> Result<(), CtlError> {
    let mut query = vec![("limit", a.limit.to_string())];
    if let Some(src) = &a.source {
        query.push(("source", src.clone()));
    }
    let v = client.get(&["sync", "runs"], &query).await?;
    if a.json {
        return output::emit_json(&v["items"]);
    }
    let lines: Vec<String> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(run_line)
        .collect();
    if lines.is_empty() {
        return output::emit_lines(&["no runs yet".into()]);
    }
    output::emit_lines(&lines)
}

async fn show(client: &Client, a: RunArgs) -> Result<(), CtlError> {
    let id = a.run.to_string();
    // Every error the run kept.
    let query = [("errors", "1000".to_string())];
    let r = client.get(&["sync", "runs", &id], &query).await?;
    if a.json {
        return stream_json(client, &r).await;
    }
    output::emit_lines(&run_lines(&r))?;
    print_plan(client, &id, a.plan, PLAN_PREVIEW).await
}

async fn approve(client: &Client, a: ApproveArgs) -> Result<(), CtlError> {
    let id = a.run.to_string();
    let r = client.get(&["sync", "runs", &id], &[]).await?;
    if r["outcome"] != "held" {
        return Err(CtlError::failed(format!(
            "run #{id} is {}, not held; only held plans can be approved",
            s(&r["outcome"])
        )));
    }
    output::emit_lines(&run_lines(&r))?;
    print_plan(client, &id, false, PLAN_PREVIEW).await?;
    if !a.yes {
        output::confirm(&format!("apply the held plan of run #{id}"))?;
    }
    let done = client.post_empty(&["sync", "runs", &id, "approve"]).await?;
    output::emit_lines(&[format!("applied: {}", run_line(&done))])
}

/// `rosterctl employees explain KEY`.
pub async fn explain(client: &Client, a: ShowArgs) -> Result<(), CtlError> {
    let v = client.get(&["employees", &a.key, "explain"], &[]).await?;
    if a.json {
        return output::emit_json(&v);
    }
    let mut lines = vec![format!("{} <{}>", s(&v["id"]), s(&v["email"]))];
    if let Some(src) = v["sources"].as_object().filter(|m| !m.is_empty()) {
        let linked: Vec<String> = src
            .iter()
            .map(|(k, key)| format!("{k} (key {})", s(key)))
            .collect();
        lines.push(format!("linked to: {}", linked.join(", ")));
        lines.push(
            "fields a source maps are overwritten at its next run; edits to them do not last"
                .into(),
        );
    }
    if let Some(owners) = v["owners"].as_object().filter(|m| !m.is_empty()) {
        lines.push("field owners (the highest priority wins):".into());
        let mut names: Vec<&String> = owners.keys().collect();
        names.sort();
        for name in names {
            let list: Vec<String> = owners[name]
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| format!("{} (priority {})", s(&o["source"]), s(&o["priority"])))
                .collect();
            let (winner, rest) = list
                .split_first()
                .map_or(("-".to_string(), &[][..]), |(w, r)| (w.clone(), r));
            if rest.is_empty() {
                lines.push(format!("  {name:<18} {winner}"));
            } else {
                lines.push(format!("  {name:<18} {winner}, over {}", rest.join(", ")));
            }
        }
    }
    let life = &v["lifecycle"];
    if life.is_object() {
        let state = if life["active"] == Value::Bool(true) {
            "active".to_string()
        } else {
            match &life["inactive_because"] {
                Value::Object(w) => {
                    format!("inactive: {} says {}", s(&w["source"]), s(&w["reason"]))
                }
                _ => match &life["deactivated_by"] {
                    Value::Object(by) => format!(
                        "inactive: deactivated by {}:{} (an admin reactivates it)",
                        s(&by["kind"]),
                        s(&by["name"])
                    ),
                    _ => "inactive".to_string(),
                },
            }
        };
        lines.push(format!("lifecycle: {state}"));
        if let Some(src) = life["sources"].as_object() {
            for (id, f) in src {
                let mut parts = Vec::new();
                if let Some(h) = f["facts"]["hire"]["date"].as_str() {
                    parts.push(format!("hire {h}"));
                }
                if let Some(t) = f["facts"]["termination"]["date"].as_str() {
                    parts.push(format!("termination {t}"));
                }
                if let Some(d) = f["facts"]["disabled"].as_str() {
                    parts.push(d.to_string());
                }
                if let Some(m) = f["facts"]["unresolved_manager"].as_str() {
                    parts.push(format!("manager `{m}` not on the roster yet"));
                }
                if f["lifecycle"] != Value::Bool(true) {
                    parts.push("(not a lifecycle source)".into());
                }
                if let Some(n) = f["next_change"].as_str() {
                    parts.push(format!("next change {n}"));
                }
                lines.push(format!("  {id}: {}", parts.join("; ")));
            }
        }
    }
    let mut fields: Vec<(&String, &Value)> = v["fields"]
        .as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    for (name, f) in fields {
        lines.push(format!(
            "  {name:<18} {:<32} set by {}:{} ({}) at {}",
            output::compact(&f["value"]),
            s(&f["set_by"]["kind"]),
            s(&f["set_by"]["name"]),
            s(&f["action"]),
            s(&f["at"])
        ));
    }
    output::emit_lines(&lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_run_with_errors_beyond_those_kept_says_how_many_more() {
        let run = |omitted: u64| {
            json!({
                "id": 7, "source": "corp", "kind": "full", "trigger": "manual",
                "outcome": "applied", "started_at": "2026-11-29T03:00:00Z",
                "counts": {"errors": 1 + omitted},
                "errors": [{"key": "k1", "dn": "uid=p1", "message": "invalid email"}],
                "errors_omitted": omitted,
            })
        };
        let lines = run_lines(&run(250));
        assert!(
            lines.contains(&"errors (1 shown; 250 more):".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"  uid=p1: invalid email".to_string()),
            "{lines:?}"
        );
        assert!(run_lines(&run(0)).contains(&"errors (1):".to_string()));
    }
}

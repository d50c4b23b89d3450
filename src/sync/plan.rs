//! Planning (pure): mapped entries and the roster's current state give a [`Plan`]:
//! per entry create / update / activate / deactivate / unchanged / held / skip, each
//! with its field-level changes and its reason. Nothing is written here.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::RunKind;
use super::map::{MapError, MappedEntry};
use crate::employee::{self, AccountStatus, Catalog, Employee, EmployeeId, Error};
use crate::store::{Actor, ActorKind, FieldChange};

/// What the roster looks like to the planner. [`employee::Roster`] implements it;
/// tests use an in-memory roster.
pub trait RosterView {
    fn by_email(&self, email: &str) -> Result<Option<Employee>, Error>;
    /// Every profile linked to the source, as (key, profile).
    fn linked(&self, source: &str) -> Result<Vec<(String, Employee)>, Error>;
}

impl RosterView for employee::Roster {
    fn by_email(&self, email: &str) -> Result<Option<Employee>, Error> {
        employee::Roster::by_email(self, email)
    }
    fn linked(&self, source: &str) -> Result<Vec<(String, Employee)>, Error> {
        employee::Roster::linked(self, source)?
            .into_iter()
            .map(|(k, id)| self.get(id).map(|e| (k, e)))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Activate,
    Deactivate,
    Unchanged,
    /// Deactivated by an admin (or another client): the source does not reactivate it.
    Held,
    /// Not applied: the entry has an error, or is disabled and not on the roster.
    Skip,
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanItem {
    pub action: Action,
    /// The source's join key.
    pub key: String,
    pub dn: String,
    pub employee_id: Option<EmployeeId>,
    /// Email or name, for people reading the plan.
    pub label: String,
    pub changes: Vec<FieldChange>,
    pub reason: String,
    /// Set for skips caused by bad data (reported as errors).
    #[serde(default)]
    pub error: bool,
}

/// Counts by action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub created: usize,
    pub updated: usize,
    pub activated: usize,
    pub deactivated: usize,
    pub unchanged: usize,
    pub held: usize,
    pub skipped: usize,
    pub errors: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub items: Vec<PlanItem>,
    pub counts: Counts,
    /// Active profiles linked to the source before the run (for the threshold).
    pub linked_active: usize,
}

impl Plan {
    fn push(&mut self, item: PlanItem) {
        let c = &mut self.counts;
        match item.action {
            Action::Create => c.created += 1,
            Action::Update => c.updated += 1,
            Action::Activate => c.activated += 1,
            Action::Deactivate => c.deactivated += 1,
            Action::Unchanged => c.unchanged += 1,
            Action::Held => c.held += 1,
            Action::Skip => c.skipped += 1,
        }
        if item.error {
            c.errors += 1;
        }
        self.items.push(item);
    }

    /// Whether the plan deactivates more than the source allows.
    pub fn exceeds(&self, max_abs: usize, max_percent: f64) -> Option<String> {
        let n = self.counts.deactivated;
        if n > max_abs {
            return Some(format!(
                "would deactivate {n} profiles, more than max_deactivations = {max_abs}"
            ));
        }
        if self.linked_active > 0 {
            let pct = n as f64 * 100.0 / self.linked_active as f64;
            if pct > max_percent {
                return Some(format!(
                    "would deactivate {n} of {} linked active profiles ({pct:.1}%), more than max_deactivations_percent = {max_percent}",
                    self.linked_active
                ));
            }
        }
        None
    }
}

/// What the planner needs to know about the source.
pub struct PlanSource<'a> {
    pub id: &'a str,
    pub account_status: AccountStatus,
    pub catalog: &'a Catalog,
}

fn label(e: &MappedEntry) -> String {
    e.fields.email.clone()
}

/// Builds the plan. Pure but for the [`RosterView`] reads.
pub fn plan(
    src: &PlanSource<'_>,
    kind: RunKind,
    entries: &[MappedEntry],
    map_errors: &[MapError],
    view: &impl RosterView,
) -> Result<Plan, Error> {
    let actor = Actor {
        kind: ActorKind::Sync,
        name: src.id.to_string(),
    };
    let mut plan = Plan::default();
    let linked = view.linked(src.id)?;
    plan.linked_active = linked.iter().filter(|(_, e)| e.active).count();

    for m in map_errors {
        plan.push(PlanItem {
            action: Action::Skip,
            key: String::new(),
            dn: m.dn.clone(),
            employee_id: None,
            label: m.dn.clone(),
            changes: vec![],
            reason: m.message.clone(),
            error: true,
        });
    }

    // Every linked profile is loaded once; entries join by key from here.
    let linked_by_key: HashMap<&str, &Employee> =
        linked.iter().map(|(k, e)| (k.as_str(), e)).collect();
    let mut claimed: HashMap<EmployeeId, String> = HashMap::new();
    let mut seen_keys: HashSet<&str> = HashSet::new();
    for m in entries {
        let skip = |reason: String, error: bool, id: Option<EmployeeId>| PlanItem {
            action: Action::Skip,
            key: m.key.clone(),
            dn: m.dn.clone(),
            employee_id: id,
            label: label(m),
            changes: vec![],
            reason,
            error,
        };
        if !seen_keys.insert(m.key.as_str()) {
            plan.push(skip(
                format!("join key {} appears twice in the source", m.key),
                true,
                None,
            ));
            continue;
        }
        let existing = match linked_by_key.get(m.key.as_str()) {
            Some(e) => Some((*e).clone()),
            None => view.by_email(&m.fields.email)?,
        };
        let Some(current) = existing else {
            if let Some(why) = &m.disabled {
                plan.push(skip(
                    format!("disabled in the source ({why}); not imported"),
                    false,
                    None,
                ));
                continue;
            }
            let input = m.fields.to_new(src.account_status, true);
            match employee::build_new(src.catalog, &input, None, &actor) {
                Ok(new) => plan.push(PlanItem {
                    action: Action::Create,
                    key: m.key.clone(),
                    dn: m.dn.clone(),
                    employee_id: None,
                    label: label(m),
                    changes: employee::diff(None, Some(&new)),
                    reason: "new in the source".into(),
                    error: false,
                }),
                Err(e) => plan.push(skip(e.to_string(), true, None)),
            }
            continue;
        };
        if let Some(other) = claimed.insert(current.id, m.key.clone()) {
            plan.push(skip(
                format!("joins the same profile as the entry with key {other}"),
                true,
                Some(current.id),
            ));
            continue;
        }
        // Linked to another entry of this source that still exists? Then this is a
        // second person with the same email.
        if let Some(old_key) = current.source_keys.get(src.id)
            && old_key != &m.key
            && entries.iter().any(|x| &x.key == old_key)
        {
            plan.push(skip(
                format!(
                    "email {} belongs to the profile linked to key {old_key}",
                    m.fields.email
                ),
                true,
                Some(current.id),
            ));
            continue;
        }
        let next =
            match employee::preview_patch(&current, &m.fields.to_patch(), src.catalog, &actor) {
                Ok(n) => n,
                Err(e) => {
                    plan.push(skip(e.to_string(), true, Some(current.id)));
                    continue;
                }
            };
        let mut changes = if next == current {
            Vec::new()
        } else {
            employee::diff(Some(&current), Some(&next))
        };
        let linking = current.source_keys.get(src.id) != Some(&m.key);
        if linking {
            changes.push(FieldChange {
                field: format!("source_keys.{}", src.id),
                before: current
                    .source_keys
                    .get(src.id)
                    .map(|k| serde_json::Value::String(k.clone()))
                    .unwrap_or(serde_json::Value::Null),
                after: serde_json::Value::String(m.key.clone()),
            });
        }
        let (action, reason) = match (&m.disabled, current.active) {
            (Some(why), true) => (
                Action::Deactivate,
                format!("disabled in the source ({why})"),
            ),
            (None, false) => match &current.deactivated_by {
                Some(by) if by.kind == ActorKind::Sync && by.name == src.id => {
                    (Action::Activate, "enabled in the source again".to_string())
                }
                Some(by) => (
                    Action::Held,
                    format!(
                        "deactivated by {by}; the sync does not reactivate it until an admin does"
                    ),
                ),
                None => (
                    Action::Held,
                    "inactive on the roster; the sync does not reactivate it until an admin does"
                        .to_string(),
                ),
            },
            _ if linking && changes.len() == 1 => (Action::Update, "linked by email".to_string()),
            _ if linking => (Action::Update, "linked by email; fields differ".to_string()),
            _ if !changes.is_empty() => (Action::Update, "changed in the source".to_string()),
            _ => (Action::Unchanged, String::new()),
        };
        if matches!(action, Action::Activate | Action::Deactivate) {
            changes.push(FieldChange {
                field: "active".into(),
                before: current.active.into(),
                after: (action == Action::Activate).into(),
            });
        }
        plan.push(PlanItem {
            action,
            key: m.key.clone(),
            dn: m.dn.clone(),
            employee_id: Some(current.id),
            label: label(m),
            changes,
            reason,
            error: false,
        });
    }

    if kind == RunKind::Full {
        for (key, e) in &linked {
            if claimed.contains_key(&e.id) || seen_keys.contains(key.as_str()) || !e.active {
                continue;
            }
            plan.push(PlanItem {
                action: Action::Deactivate,
                key: key.clone(),
                dn: String::new(),
                employee_id: Some(e.id),
                label: e.email.clone(),
                changes: vec![FieldChange {
                    field: "active".into(),
                    before: true.into(),
                    after: false.into(),
                }],
                reason: "no longer in the source (full run)".into(),
                error: false,
            });
        }
    }
    Ok(plan)
}

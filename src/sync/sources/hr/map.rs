//! Mapping (pure): one HR record and the source's validated [`HrMapping`] give a
//! [`MappedEntry`] or the reason the record is refused. A record is anything that
//! answers "the values at this selector" ([`Record`]): a JSON object read by JSON
//! pointer, or a CSV row read by column. No I/O; tested with fixtures.

use chrono::NaiveDate;

use crate::employee::OfficePhone;
use crate::sync::map::{EffectiveDate, MappedEntry, SourceFields};

/// Why a record is refused (reported with the record, the run goes on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the value at {0} is an object or nested array; point at a value inside it")]
    NotAValue(String),
    #[error("no column `{0}`")]
    NoColumn(String),
    #[error("{field} `{value}` is not a date in the format `{format}`")]
    NotADate {
        field: String,
        value: String,
        format: String,
    },
    /// `what` is `join key` or `email`; `rule` the field and where it is read.
    #[error("has no {what} ({rule})")]
    Missing { what: &'static str, rule: String },
}

/// One record as the mapping sees it.
pub trait Record {
    /// The raw values at `selector` (a JSON pointer or a column header): none
    /// when absent or null, one for a scalar, several for an array. `Err` when
    /// the value cannot be a field (a JSON object).
    fn values(&self, selector: &str) -> Result<Vec<String>, RecordError>;
}

/// A JSON record: selectors are JSON pointers (RFC 6901).
pub struct JsonRecord<'a>(pub &'a serde_json::Value);

fn scalar(v: &serde_json::Value) -> Option<Result<String, ()>> {
    use serde_json::Value;
    match v {
        Value::Null => None,
        Value::String(s) => Some(Ok(s.clone())),
        Value::Number(n) => Some(Ok(n.to_string())),
        Value::Bool(b) => Some(Ok(b.to_string())),
        Value::Array(_) | Value::Object(_) => Some(Err(())),
    }
}

impl Record for JsonRecord<'_> {
    fn values(&self, selector: &str) -> Result<Vec<String>, RecordError> {
        use serde_json::Value;
        let nested = || RecordError::NotAValue(selector.to_string());
        match self.0.pointer(selector) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(scalar)
                .map(|r| r.map_err(|()| nested()))
                .collect(),
            Some(v) => match scalar(v) {
                None => Ok(Vec::new()),
                Some(Ok(s)) => Ok(vec![s]),
                Some(Err(())) => Err(nested()),
            },
        }
    }
}

/// A value transform, applied after trimming, in the order configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Trim surrounding whitespace (always done; accepted for clarity).
    Trim,
    Lowercase,
    Uppercase,
    /// Runs of whitespace inside the value become one space.
    CollapseWhitespace,
}

impl Transform {
    pub const NAMES: &'static str = "trim, lowercase, uppercase or collapse_whitespace";

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "trim" => Some(Self::Trim),
            "lowercase" => Some(Self::Lowercase),
            "uppercase" => Some(Self::Uppercase),
            "collapse_whitespace" => Some(Self::CollapseWhitespace),
            _ => None,
        }
    }

    fn apply(self, v: String) -> String {
        match self {
            Self::Trim => v.trim().to_string(),
            Self::Lowercase => v.to_lowercase(),
            Self::Uppercase => v.to_uppercase(),
            Self::CollapseWhitespace => v.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    }
}

/// How one field is read (validated from a field spec).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldRule {
    /// The key of the spec, for messages (`fields.email`).
    pub name: String,
    /// One selector (`from`), or several joined (`join`).
    pub from: Vec<String>,
    /// Between joined parts.
    pub separator: String,
    pub transforms: Vec<Transform>,
    /// Source value (lowercased) → value. Values not in the map are refused.
    pub map: Option<Vec<(String, String)>>,
    /// Used when the value is empty, or not in the map.
    pub default: Option<String>,
    /// Splits one value into several (positions).
    pub split: Option<String>,
}

/// What a read value turned into.
enum Lookup {
    Empty,
    Value(String),
    /// Not in the map (the source value).
    Unmapped(String),
}

impl FieldRule {
    /// The values, trimmed, joined, transformed and split; empty ones dropped.
    fn read(&self, rec: &dyn Record) -> Result<Vec<String>, RecordError> {
        let mut values = if self.from.len() == 1 {
            rec.values(&self.from[0])?
        } else {
            let mut parts = Vec::new();
            for sel in &self.from {
                let v = rec.values(sel)?;
                let v: Vec<&str> = v
                    .iter()
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .collect();
                if !v.is_empty() {
                    parts.push(v.join(&self.separator));
                }
            }
            if parts.is_empty() {
                Vec::new()
            } else {
                vec![parts.join(&self.separator)]
            }
        };
        for v in &mut values {
            let mut s = v.trim().to_string();
            for t in &self.transforms {
                s = t.apply(s);
            }
            *v = s;
        }
        if let Some(sep) = &self.split {
            values = values
                .iter()
                .flat_map(|v| v.split(sep.as_str()))
                .map(|s| s.trim().to_string())
                .collect();
        }
        values.retain(|v| !v.is_empty());
        Ok(values)
    }

    /// One value: the first, with a warning when there are several.
    fn read_one(
        &self,
        rec: &dyn Record,
        warnings: &mut Vec<String>,
    ) -> Result<Option<String>, RecordError> {
        let mut values = self.read(rec)?;
        if values.len() > 1 {
            warnings.push(format!(
                "{} has {} values; the first (`{}`) is used",
                self.name,
                values.len(),
                values[0]
            ));
        }
        Ok(if values.is_empty() {
            None
        } else {
            Some(values.swap_remove(0))
        })
    }

    fn lookup(&self, value: Option<String>) -> Lookup {
        let Some(v) = value else {
            return match &self.default {
                Some(d) if !d.is_empty() => Lookup::Value(d.clone()),
                _ => Lookup::Empty,
            };
        };
        let Some(map) = &self.map else {
            return Lookup::Value(v);
        };
        let lower = v.to_lowercase();
        match map.iter().find(|(k, _)| *k == lower) {
            Some((_, to)) if to.is_empty() => Lookup::Empty,
            Some((_, to)) => Lookup::Value(to.clone()),
            None => match &self.default {
                Some(d) if d.is_empty() => Lookup::Empty,
                Some(d) => Lookup::Value(d.clone()),
                None => Lookup::Unmapped(v),
            },
        }
    }

    /// A text field: `None` when empty; unmapped values are reported and dropped.
    fn text(
        &self,
        rec: &dyn Record,
        warnings: &mut Vec<String>,
    ) -> Result<Option<String>, RecordError> {
        let v = self.read_one(rec, warnings)?;
        Ok(match self.lookup(v) {
            Lookup::Empty => None,
            Lookup::Value(v) => Some(v),
            Lookup::Unmapped(v) => {
                warnings.push(format!(
                    "{} value `{v}` is not in {}.map; left empty",
                    self.name, self.name
                ));
                None
            }
        })
    }
}

/// A date field: read, then parsed with `format` (chrono strftime).
#[derive(Debug, Clone, PartialEq)]
pub struct DateRule {
    pub rule: FieldRule,
    pub format: String,
}

impl DateRule {
    fn date(
        &self,
        rec: &dyn Record,
        warnings: &mut Vec<String>,
    ) -> Result<Option<NaiveDate>, RecordError> {
        match self.rule.read_one(rec, warnings)? {
            None => Ok(None),
            Some(v) => {
                parse_date(&v, &self.format)
                    .transpose()
                    .map_err(|()| RecordError::NotADate {
                        field: self.rule.name.clone(),
                        value: v.clone(),
                        format: self.format.clone(),
                    })
            }
        }
    }
}

/// Parses a date: `None` when empty, `Some(Err)` when unreadable. A value of
/// zeros and separators only (`0000-00-00`, as some HR
/// systems write "no date") is empty. A time or UTC offset after the date
/// (`2024-05-01T00:00:00Z`, `2024-05-01-07:00`) is ignored: the calendar date is
/// what counts.
pub fn parse_date(v: &str, format: &str) -> Option<Result<NaiveDate, ()>> {
    let v = v.trim();
    if v.chars().all(|c| c == '0' || !c.is_alphanumeric()) {
        return None;
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, format) {
        return Some(Ok(d));
    }
    Some(match NaiveDate::parse_and_remainder(v, format) {
        Ok((d, rest)) if rest.starts_with(['T', 't', ' ', '+', '-', 'Z', 'z']) => Ok(d),
        _ => Err(()),
    })
}

/// A status field and the values meaning active / inactive.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRule {
    pub rule: FieldRule,
    /// Lowercased.
    pub active: Vec<String>,
    /// Lowercased.
    pub inactive: Vec<String>,
}

impl StatusRule {
    /// Why the record is disabled, if it is.
    fn disabled(
        &self,
        rec: &dyn Record,
        warnings: &mut Vec<String>,
    ) -> Result<Option<String>, RecordError> {
        let v = self.rule.read_one(rec, warnings)?.unwrap_or_default();
        let lower = v.to_lowercase();
        if self.inactive.contains(&lower) {
            return Ok(Some(format!("status \"{v}\"")));
        }
        if self.active.contains(&lower) {
            return Ok(None);
        }
        if self.active.is_empty() {
            return Ok(None);
        }
        if self.inactive.is_empty() {
            return Ok(Some(if v.is_empty() {
                "status is empty (not in fields.status.active)".to_string()
            } else {
                format!("status \"{v}\" (not in fields.status.active)")
            }));
        }
        warnings.push(format!(
            "status `{v}` is in neither fields.status.active nor fields.status.inactive; treated as active"
        ));
        Ok(None)
    }
}

/// Catalog names, in their catalog spelling, for positions, roles and units.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogNames {
    pub positions: Vec<String>,
    pub roles: Vec<String>,
    pub business_units: Vec<String>,
    /// `catalog.default_role`.
    pub default_role: Option<String>,
}

fn canonical(names: &[String], v: &str) -> Option<String> {
    let lower = v.trim().to_lowercase();
    names.iter().find(|n| n.to_lowercase() == lower).cloned()
}

/// The profile-field mapping shared by both HR kinds (validated); cheap to
/// clone. Its rules are [`Rules`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HrMapping(std::sync::Arc<Rules>);

impl std::ops::Deref for HrMapping {
    type Target = Rules;
    fn deref(&self) -> &Rules {
        &self.0
    }
}

impl From<Rules> for HrMapping {
    fn from(r: Rules) -> Self {
        Self(std::sync::Arc::new(r))
    }
}

/// Which field is read how.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    /// The record's stable id.
    pub join_key: FieldRule,
    pub email: FieldRule,
    pub given_name: Option<FieldRule>,
    pub family_name: Option<FieldRule>,
    pub display_name: Option<FieldRule>,
    pub username: Option<FieldRule>,
    pub mobile_phone: Option<FieldRule>,
    pub office_phone: Option<FieldRule>,
    pub office_phone_extension: Option<FieldRule>,
    pub photo_url: Option<FieldRule>,
    pub employee_number: Option<FieldRule>,
    pub manager: Option<FieldRule>,
    pub hire_date: Option<DateRule>,
    pub termination_date: Option<DateRule>,
    pub status: Option<StatusRule>,
    pub positions: Option<FieldRule>,
    pub role: Option<FieldRule>,
    /// Role when the role field is empty or its value is not in the map (silently)
    /// or not in the catalog; with no role field, every record gets it.
    pub default_role: Option<String>,
    pub business_unit: Option<FieldRule>,
    pub catalog: CatalogNames,
}

impl Rules {
    /// Profile fields this mapping writes.
    pub fn provides(&self) -> Vec<&'static str> {
        let mut out = vec!["email"];
        for (name, rule) in [
            ("given_name", &self.given_name),
            ("family_name", &self.family_name),
            ("display_name", &self.display_name),
            ("username", &self.username),
            ("mobile_phone", &self.mobile_phone),
            ("office_phone", &self.office_phone),
            ("photo", &self.photo_url),
            ("positions", &self.positions),
        ] {
            if rule.is_some() {
                out.push(name);
            }
        }
        if self.role.is_some() || self.default_role.is_some() {
            out.push("role");
        }
        if self.business_unit.is_some() {
            out.push("business_unit");
        }
        if self.employee_number.is_some() {
            out.push("employee_number");
        }
        if self.manager.is_some() {
            out.push("manager");
        }
        out
    }

    /// Every rule, for listing selectors (the CSV columns that must exist).
    fn rules(&self) -> impl Iterator<Item = &FieldRule> {
        [
            Some(&self.join_key),
            Some(&self.email),
            self.given_name.as_ref(),
            self.family_name.as_ref(),
            self.display_name.as_ref(),
            self.username.as_ref(),
            self.mobile_phone.as_ref(),
            self.office_phone.as_ref(),
            self.office_phone_extension.as_ref(),
            self.photo_url.as_ref(),
            self.employee_number.as_ref(),
            self.manager.as_ref(),
            self.hire_date.as_ref().map(|d| &d.rule),
            self.termination_date.as_ref().map(|d| &d.rule),
            self.status.as_ref().map(|s| &s.rule),
            self.positions.as_ref(),
            self.role.as_ref(),
            self.business_unit.as_ref(),
        ]
        .into_iter()
        .flatten()
    }

    /// Every selector the mapping reads, with the key that names it.
    pub fn selectors(&self) -> Vec<(&str, &str)> {
        self.rules()
            .flat_map(|r| r.from.iter().map(move |s| (s.as_str(), r.name.as_str())))
            .collect()
    }

    fn role(
        &self,
        rec: &dyn Record,
        warnings: &mut Vec<String>,
    ) -> Result<Option<String>, RecordError> {
        let fallback = self
            .default_role
            .clone()
            .or_else(|| self.catalog.default_role.clone());
        let Some(rule) = &self.role else {
            return Ok(self.default_role.clone());
        };
        let v = rule.read_one(rec, warnings)?;
        let found = match rule.lookup(v) {
            Lookup::Empty => None,
            Lookup::Value(v) => match canonical(&self.catalog.roles, &v) {
                Some(r) => Some(r),
                None => {
                    warnings.push(format!(
                        "{} `{v}` is not in catalog.roles; the default role is used",
                        rule.name
                    ));
                    None
                }
            },
            Lookup::Unmapped(v) => match canonical(&self.catalog.roles, &v) {
                Some(r) => Some(r),
                // An explicit default_role is the documented answer: no report.
                None if self.default_role.is_some() => None,
                None => {
                    warnings.push(format!(
                        "{} value `{v}` is neither in {}.map nor a catalog role; the default role is used",
                        rule.name, rule.name
                    ));
                    None
                }
            },
        };
        Ok(found.or(fallback))
    }

    fn business_unit(
        &self,
        rule: &FieldRule,
        rec: &dyn Record,
        warnings: &mut Vec<String>,
    ) -> Result<Option<String>, RecordError> {
        let v = rule.read_one(rec, warnings)?;
        Ok(match rule.lookup(v) {
            Lookup::Empty => None,
            Lookup::Value(v) | Lookup::Unmapped(v) => {
                match canonical(&self.catalog.business_units, &v) {
                    Some(u) => Some(u),
                    None => {
                        warnings.push(format!(
                            "{} value `{v}` is neither in {}.map nor a catalog business unit; business unit left empty",
                            rule.name, rule.name
                        ));
                        None
                    }
                }
            }
        })
    }

    fn positions(
        &self,
        rule: &FieldRule,
        rec: &dyn Record,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<String>, RecordError> {
        let mut values = rule.read(rec)?;
        if values.is_empty()
            && let Some(d) = &rule.default
            && !d.is_empty()
        {
            values.push(d.clone());
        }
        let mut out = Vec::new();
        for v in values {
            match rule.lookup(Some(v)) {
                Lookup::Empty => {}
                Lookup::Value(p) | Lookup::Unmapped(p) => {
                    match canonical(&self.catalog.positions, &p) {
                        Some(p) => out.push(p),
                        None => warnings.push(format!(
                            "{} value `{p}` is neither in {}.map nor a catalog position; dropped",
                            rule.name, rule.name
                        )),
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Maps one record. `dn` says where the record is (`line 7`, `record 12
    /// (page 2)`); `Err` is the reason the record is refused. Pure.
    /// What identifies a record that [`HrMapping::map`] refused: its join key
    /// and email, as far as they can be read.
    pub fn identify(&self, rec: &dyn Record) -> (Option<String>, Option<String>) {
        let mut ignored = Vec::new();
        (
            self.join_key.text(rec, &mut ignored).ok().flatten(),
            self.email.text(rec, &mut ignored).ok().flatten(),
        )
    }

    pub fn map(
        &self,
        rec: &dyn Record,
        dn: &str,
        tz: chrono_tz::Tz,
    ) -> Result<MappedEntry, RecordError> {
        let mut warnings = Vec::new();
        let w = &mut warnings;
        let missing = |what, r: &FieldRule| RecordError::Missing {
            what,
            rule: format!("{} = {}", r.name, r.from.join(" + ")),
        };
        let key = self
            .join_key
            .text(rec, w)?
            .ok_or_else(|| missing("join key", &self.join_key))?;
        let email = self
            .email
            .text(rec, w)?
            .ok_or_else(|| missing("email", &self.email))?;
        let opt = |r: &Option<FieldRule>,
                   w: &mut Vec<String>|
         -> Result<Option<Option<String>>, RecordError> {
            r.as_ref().map(|r| r.text(rec, w)).transpose()
        };
        let given_name = opt(&self.given_name, w)?.flatten();
        let family_name = opt(&self.family_name, w)?.flatten();
        let display_name = opt(&self.display_name, w)?.flatten();
        let username = opt(&self.username, w)?.flatten();
        let mobile_phone = opt(&self.mobile_phone, w)?;
        let extension = opt(&self.office_phone_extension, w)?.flatten();
        let office_phone =
            opt(&self.office_phone, w)?.map(|n| n.map(|number| OfficePhone { number, extension }));
        let photo_url = opt(&self.photo_url, w)?;
        let employee_number = opt(&self.employee_number, w)?;
        let manager = opt(&self.manager, w)?.flatten();
        let positions = match &self.positions {
            Some(r) => Some(self.positions(r, rec, w)?),
            None => None,
        };
        let role = self.role(rec, w)?;
        let business_unit = match &self.business_unit {
            Some(r) => Some(self.business_unit(r, rec, w)?),
            None => None,
        };
        let date = |d: &Option<DateRule>,
                    w: &mut Vec<String>|
         -> Result<Option<EffectiveDate>, RecordError> {
            Ok(match d {
                Some(d) => d.date(rec, w)?.map(|day| EffectiveDate::new(day, tz)),
                None => None,
            })
        };
        let hire = date(&self.hire_date, w)?;
        let termination = date(&self.termination_date, w)?;
        let disabled = match &self.status {
            Some(s) => s.disabled(rec, w)?,
            None => None,
        };
        Ok(MappedEntry {
            key,
            dn: dn.to_string(),
            fields: SourceFields {
                email,
                given_name,
                family_name,
                display_name,
                username,
                mobile_phone,
                office_phone,
                photo_url,
                // HR sources link photos (photo_url); they bring no bytes.
                photo: None,
                positions,
                role,
                business_unit,
                employee_number,
            },
            disabled,
            warnings,
            hire,
            termination,
            manager,
        })
    }
}

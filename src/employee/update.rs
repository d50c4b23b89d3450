//! Editing a profile: a partial update (optionally conditional on the
//! version the client read, optionally with an uploaded photo in the same
//! write), and [`apply_patch`], every field rule of a change.

use tracing::instrument;

use super::{
    AccountStatus, Catalog, Employee, EmployeeId, EmployeePatch, Error, PasswordHash, Photo,
    PhotoBytes, Roster, set_active_fields, validate,
};
use crate::store::{Actor, AuditAction, PhotoChange};

impl Roster {
    /// Applies a partial update. `expected_version` (or `patch.version`) makes it
    /// conditional on the profile not having changed since the client read it.
    #[instrument(skip_all, fields(actor = %actor, employee = %id))]
    pub async fn update(
        &self,
        actor: &Actor,
        id: EmployeeId,
        patch: EmployeePatch,
        expected_version: Option<u64>,
    ) -> Result<Employee, Error> {
        self.update_with_photo(actor, id, patch, expected_version, None)
            .await
    }
    /// [`Roster::update`] with an uploaded photo (`(content type, bytes)`,
    /// checked as [`Roster::set_photo`] checks it): the edit and the photo in
    /// one write, either both stored or neither.
    pub async fn update_with_photo(
        &self,
        actor: &Actor,
        id: EmployeeId,
        patch: EmployeePatch,
        expected_version: Option<u64>,
        photo: Option<(String, Vec<u8>)>,
    ) -> Result<Employee, Error> {
        let photo = match photo {
            Some((content_type, bytes)) => Some(self.uploaded_photo(&content_type, bytes)?),
            None => None,
        };
        let expected = expected_version.or(patch.version);
        let password_hash = match &patch.password {
            Some(p) if patch.password_unchecked => Some(self.hash(p).await?),
            Some(p) => Some(self.hash_password(p).await?),
            None => None,
        };
        let (e, changed) = self.modify_noted(
            actor,
            id,
            AuditAction::Update,
            expected,
            patch.audit_note.as_deref(),
            |e, catalog| {
                apply_patch(e, &patch, password_hash.clone(), catalog, actor)?;
                Ok(match &photo {
                    Some((meta, bytes)) => {
                        e.photo = Some(meta.clone());
                        (vec![], PhotoChange::Set(bytes.clone()))
                    }
                    None => (vec![], PhotoChange::Keep),
                })
            },
        )?;
        // A change that writes nothing has no audit entry to carry the note.
        if let (false, Some(note)) = (changed, &patch.audit_note) {
            tracing::info!(employee = %id, note = %note, "nothing changed");
        }
        self.store.flush().await?;
        Ok(e)
    }
}

/// Applies a change to a profile with every field rule (no I/O): only the
/// fields the patch names change. `password_hash`: the new password's hash,
/// already checked against the policy.
pub(super) fn apply_patch(
    e: &mut Employee,
    p: &EmployeePatch,
    password_hash: Option<PasswordHash>,
    catalog: &Catalog,
    actor: &Actor,
) -> Result<(), Error> {
    // In this order: the first field that breaks a rule is the one reported.
    apply_names(e, p)?;
    apply_login(e, p)?;
    apply_catalog_fields(e, p, catalog)?;
    apply_contact(e, p)?;
    apply_account(e, p, password_hash, actor)?;
    if let Some(v) = &p.permissions {
        e.permissions = validate::permissions(catalog, v)?;
    }
    apply_directory_fields(e, p)
}

/// Given, family and display name: a derived display name follows the parts,
/// and a profile keeps at least one name.
fn apply_names(e: &mut Employee, p: &EmployeePatch) -> Result<(), Error> {
    let names_changed = p.given_name.is_some() || p.family_name.is_some();
    // Profiles stored before the flag existed: a display name equal to the
    // derived one was derived.
    let was_derived = e.display_name_derived
        || e.display_name == validate::derived_display_name(&e.given_name, &e.family_name);
    if let Some(v) = &p.given_name {
        e.given_name = validate::optional_name("given_name", v)?;
    }
    if let Some(v) = &p.family_name {
        e.family_name = validate::optional_name("family_name", v)?;
    }
    match p.display_name.as_deref().map(str::trim) {
        Some("") => {
            e.display_name = validate::derived_display_name(&e.given_name, &e.family_name);
            e.display_name_derived = true;
        }
        Some(d) => {
            e.display_name = validate::name("display_name", d)?;
            e.display_name_derived = false;
        }
        // A display name that was derived follows the name parts. (A profile
        // stored before the flag existed keeps it unset while the derived name
        // does not change, so that an upgrade rewrites nobody.)
        None if names_changed && was_derived => {
            let derived = validate::derived_display_name(&e.given_name, &e.family_name);
            if derived != e.display_name {
                e.display_name = derived;
                e.display_name_derived = true;
            }
        }
        None => {}
    }
    validate::has_a_name(&e.given_name, &e.family_name, &e.display_name)?;
    Ok(())
}

/// Email, and the username (which follows an email it was equal to).
fn apply_login(e: &mut Employee, p: &EmployeePatch) -> Result<(), Error> {
    if let Some(v) = &p.email {
        let old_email = e.email.clone();
        e.email = validate::email(v)?;
        // A username that was the email follows it, unless it is set explicitly.
        if p.username.is_none() && validate::fold(&e.username) == validate::fold(&old_email) {
            e.username = e.email.clone();
        }
    }
    if let Some(v) = &p.username {
        e.username = validate::username(v)?;
    }
    Ok(())
}

/// Positions (set, added, removed), role and business unit, from the catalog.
fn apply_catalog_fields(
    e: &mut Employee,
    p: &EmployeePatch,
    catalog: &Catalog,
) -> Result<(), Error> {
    if let Some(v) = &p.positions {
        e.positions = validate::positions(catalog, v)?;
    }
    if !p.add_positions.is_empty() {
        let mut all = e.positions.clone();
        all.extend(validate::positions(catalog, &p.add_positions)?);
        e.positions = validate::positions(catalog, &all)?;
    }
    if !p.remove_positions.is_empty() {
        let remove = validate::positions(catalog, &p.remove_positions)?;
        e.positions.retain(|x| !remove.contains(x));
    }
    if let Some(v) = &p.role {
        e.role = validate::role(catalog, v)?;
    }
    if let Some(v) = &p.business_unit {
        e.business_unit = match v {
            Some(b) => validate::business_unit(catalog, b)?,
            None => None,
        };
    }
    Ok(())
}

/// Photo (a URL or uploaded bytes) and phones.
fn apply_contact(e: &mut Employee, p: &EmployeePatch) -> Result<(), Error> {
    if let Some(v) = &p.photo_url {
        e.photo = match v.as_deref().map(str::trim) {
            Some(u) if !u.is_empty() => Some(Photo::Url {
                url: validate::photo_url(u)?,
            }),
            _ => None,
        };
    }
    if let Some(v) = &p.photo {
        e.photo = v.as_ref().map(PhotoBytes::photo);
    }
    if let Some(v) = &p.mobile_phone {
        e.mobile_phone = match v.as_deref().map(str::trim) {
            Some(m) if !m.is_empty() => Some(validate::phone("mobile_phone", m)?),
            _ => None,
        };
    }
    if let Some(v) = &p.office_phone {
        e.office_phone = match v {
            Some(o) if !o.number.trim().is_empty() => Some(validate::office_phone(o)?),
            _ => None,
        };
    }
    Ok(())
}

/// A new password, the account status, enabled and active.
fn apply_account(
    e: &mut Employee,
    p: &EmployeePatch,
    password_hash: Option<PasswordHash>,
    actor: &Actor,
) -> Result<(), Error> {
    if let Some(h) = password_hash {
        e.password_hash = Some(h);
        // A password set by an admin retires a pending invite or reset link.
        e.account_token = None;
        if p.account_status.is_none() {
            e.account_status = AccountStatus::Credentials;
        }
    }
    if let Some(s) = p.account_status {
        if s == AccountStatus::Credentials && e.password_hash.is_none() {
            return Err(Error::invalid(
                "password",
                "is required to set account_status to `credentials`",
            ));
        }
        e.account_status = s;
    }
    if let Some(v) = p.enabled {
        e.enabled = v;
    }
    if let Some(v) = p.active {
        set_active_fields(e, v, actor);
    }
    Ok(())
}

/// External id, the enterprise fields and the sources' facts.
fn apply_directory_fields(e: &mut Employee, p: &EmployeePatch) -> Result<(), Error> {
    if let Some(v) = &p.external_id {
        e.external_id = match v {
            Some(x) => validate::optional_text("external_id", x, 256)?,
            None => None,
        };
    }
    if let Some(v) = &p.enterprise {
        e.enterprise = validate::enterprise(v)?;
    }
    if let Some(v) = &p.employee_number {
        e.enterprise.employee_number = match v {
            Some(x) => validate::optional_text("employee_number", x, 256)?,
            None => None,
        };
    }
    if let Some(v) = &p.manager {
        e.enterprise.manager = v.clone();
    }
    if let Some((source, facts)) = &p.source_facts {
        match facts {
            Some(f) if !f.is_empty() => {
                e.source_facts.insert(source.clone(), f.clone());
            }
            _ => {
                e.source_facts.remove(source);
            }
        }
    }
    Ok(())
}

/// The profile as it would be after `patch` (every rule applied, nothing written).
pub fn preview_patch(
    current: &Employee,
    patch: &EmployeePatch,
    catalog: &Catalog,
    actor: &Actor,
) -> Result<Employee, Error> {
    let mut next = current.clone();
    apply_patch(&mut next, patch, None, catalog, actor)?;
    Ok(next)
}

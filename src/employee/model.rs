//! The employee profile as stored, and the inputs that create and change it.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::secret::Secret;
use crate::store::Actor;

/// An employee's id (a UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EmployeeId(pub Uuid);

impl EmployeeId {
    /// A UUID v7: ids sort by creation, so a bulk import appends to the end of
    /// the store's trees instead of writing all over them (and a listing in id
    /// order lists the oldest first). The creation time is no secret: the profile
    /// shows it.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for EmployeeId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for EmployeeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for EmployeeId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim()).map(Self)
    }
}

/// How the account was set up when the profile was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    /// Username and password are set up later.
    Later,
    /// An invitation is emailed; the employee picks a username and password.
    Invite,
    /// Username and password were given.
    Credentials,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Later => "later",
            AccountStatus::Invite => "invite",
            AccountStatus::Credentials => "credentials",
        }
    }
}

/// The office phone, with an optional extension.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficePhone {
    pub number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
}

/// The profile photo: a link, or bytes uploaded to rosterd (kept in the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Photo {
    Url {
        url: String,
    },
    Uploaded {
        content_type: String,
        size: usize,
        /// SHA-256 of the bytes (hex), so that a sync sees an unchanged photo
        /// without reading it, and the audit log says which photo it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
    },
}

/// Photo bytes a sync source brings (never read from clients): their content
/// type (checked by the source's mapping), their SHA-256, and the bytes, shared
/// rather than copied. Two are equal when type and digest are; `Debug` and
/// `Hash` never touch the bytes.
#[derive(Clone, Serialize, Deserialize)]
pub struct PhotoBytes {
    pub content_type: String,
    pub sha256: String,
    #[serde(with = "base64_bytes")]
    pub bytes: Arc<[u8]>,
}

impl PhotoBytes {
    pub fn new(content_type: &str, bytes: Vec<u8>) -> Self {
        use sha2::Digest;
        Self {
            content_type: content_type.to_string(),
            sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            bytes: bytes.into(),
        }
    }

    /// The profile's `photo` once these bytes are stored.
    pub fn photo(&self) -> Photo {
        Photo::Uploaded {
            content_type: self.content_type.clone(),
            size: self.bytes.len(),
            sha256: Some(self.sha256.clone()),
        }
    }
}

impl PartialEq for PhotoBytes {
    fn eq(&self, other: &Self) -> bool {
        self.sha256 == other.sha256 && self.content_type == other.content_type
    }
}

impl Eq for PhotoBytes {}

impl std::hash::Hash for PhotoBytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.content_type.hash(state);
        self.sha256.hash(state);
    }
}

impl std::fmt::Debug for PhotoBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhotoBytes")
            .field("content_type", &self.content_type)
            .field("sha256", &self.sha256)
            .field("size", &self.bytes.len())
            .finish()
    }
}

/// Bytes as one base64 string (held sync plans keep their entries as JSON).
mod base64_bytes {
    use std::sync::Arc;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Arc<[u8]>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<[u8]>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text)
            .map(Arc::from)
            .map_err(serde::de::Error::custom)
    }
}

/// Permission overrides on top of the role's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionOverrides {
    #[serde(default)]
    pub grant: Vec<String>,
    #[serde(default)]
    pub revoke: Vec<String>,
}

/// Organisational fields an identity provider keeps about an employee (the SCIM
/// Enterprise User extension, RFC 7643 §4.3). Free text, stored as sent; none of
/// them is bound to a catalog (the business unit is, and is a field of its own).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enterprise {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub division: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// The manager's id in the identity provider's terms (SCIM `manager.value`),
    /// usually a rosterd employee id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
}

impl Enterprise {
    pub fn is_empty(&self) -> bool {
        self == &Enterprise::default()
    }
}

/// A calendar date from a source and the instant it takes effect: local midnight
/// at the start of that date in the source's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EffectiveDate {
    pub date: chrono::NaiveDate,
    pub at: DateTime<Utc>,
}

impl EffectiveDate {
    /// `date` at local midnight in `tz` (on a day that starts in a DST gap, the
    /// first instant of the day).
    pub fn new(date: chrono::NaiveDate, tz: chrono_tz::Tz) -> Self {
        use chrono::TimeZone;
        let mut t = date.and_time(chrono::NaiveTime::MIN);
        let at = loop {
            match tz.from_local_datetime(&t) {
                chrono::LocalResult::Single(x) | chrono::LocalResult::Ambiguous(x, _) => break x,
                chrono::LocalResult::None => t += chrono::Duration::minutes(15),
            }
        };
        Self {
            date,
            at: at.with_timezone(&Utc),
        }
    }
}

/// What a sync source that decides the lifecycle last said about the person: kept
/// per source, so that a profile is active only while none of them says otherwise
/// and dated changes (a hire, a termination) take effect on their day without
/// waiting for the next fetch. Also holds a manager reference not resolved yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFacts {
    /// The source says the person is disabled or gone (why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<String>,
    /// Not active before this date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hire: Option<EffectiveDate>,
    /// Not active from this date on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination: Option<EffectiveDate>,
    /// The manager as the source names them, while no profile matches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unresolved_manager: Option<String>,
}

impl SourceFacts {
    pub fn is_empty(&self) -> bool {
        self == &SourceFacts::default()
    }

    /// Why the person is not active at `now` according to this source, if so.
    pub fn inactive_reason(&self, now: DateTime<Utc>) -> Option<String> {
        if let Some(why) = &self.disabled {
            return Some(why.clone());
        }
        if let Some(t) = &self.termination
            && t.at <= now
        {
            return Some(format!("terminated on {}", t.date));
        }
        if let Some(h) = &self.hire
            && h.at > now
        {
            return Some(format!("starts on {}", h.date));
        }
        None
    }

    /// The next instant after `now` at which [`SourceFacts::inactive_reason`]
    /// changes, if any.
    pub fn next_transition(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        [self.hire, self.termination]
            .into_iter()
            .flatten()
            .map(|d| d.at)
            .filter(|at| *at > now)
            .min()
    }
}

/// An argon2id PHC string. Never printed, never sent to a client.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(pub String);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// What a pending account token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPurpose {
    Invite,
    PasswordReset,
}

/// The pending invite or reset link of a profile. The token itself is never
/// stored: the outbox keeps only the intent ("mail an invitation"), and the mail
/// worker mints the token when it sends the message, writing only its SHA-256
/// digest here. A new link (a new message) replaces the old one; using it removes
/// it (single use).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountToken {
    pub purpose: TokenPurpose,
    /// Hex SHA-256 of the mailed token (also the `account_token` index key);
    /// `None` while its message waits in the outbox: no link works until the
    /// worker mints one as it sends.
    #[serde(default)]
    pub digest: Option<String>,
    /// Until when the link works (set again when the token is minted).
    pub expires_at: DateTime<Utc>,
    /// The outbox message that carries this link. A queued message whose id is
    /// not this one was superseded and is skipped. `None` on records written
    /// before messages were minted at send time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<u64>,
}

impl std::fmt::Debug for AccountToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountToken")
            .field("purpose", &self.purpose)
            .field("digest", &self.digest.as_ref().map(|_| "***"))
            .field("expires_at", &self.expires_at)
            .field("message", &self.message)
            .finish()
    }
}

/// The employee profile as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Employee {
    pub id: EmployeeId,
    /// Changes on every write; the SCIM ETag.
    pub version: u64,
    /// Optional: a profile needs one of given, family or display name.
    pub given_name: String,
    /// Optional (people with one name, shared and service accounts).
    pub family_name: String,
    /// Always set: as given, or derived from the name parts.
    pub display_name: String,
    /// The display name was not given but derived from the name parts (and
    /// follows them); SCIM then does not return it as `displayName`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub display_name_derived: bool,
    pub email: String,
    pub username: String,
    /// Catalog spellings, sorted, no duplicates.
    pub positions: Vec<String>,
    pub role: String,
    pub business_unit: Option<String>,
    pub photo: Option<Photo>,
    pub mobile_phone: Option<String>,
    pub office_phone: Option<OfficePhone>,
    pub account_status: AccountStatus,
    pub password_hash: Option<PasswordHash>,
    /// The employee has a user in the fleet product.
    pub enabled: bool,
    /// Inactive profiles are kept but cannot sign in.
    pub active: bool,
    pub permissions: PermissionOverrides,
    pub external_id: Option<String>,
    /// Enterprise fields (SCIM Enterprise User extension), stored verbatim.
    #[serde(default, skip_serializing_if = "Enterprise::is_empty")]
    pub enterprise: Enterprise,
    /// Join keys of the sync sources this profile is linked to (source id → key).
    #[serde(default)]
    pub source_keys: BTreeMap<String, String>,
    /// Who deactivated the profile, while it is inactive.
    #[serde(default)]
    pub deactivated_by: Option<Actor>,
    /// What lifecycle sources say about the person (source id → facts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_facts: BTreeMap<String, SourceFacts>,
    /// The pending invite or password-reset token (digest only), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_token: Option<AccountToken>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new profile, as a client sends it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEmployee {
    #[serde(default)]
    pub given_name: String,
    #[serde(default)]
    pub family_name: String,
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: String,
    pub username: Option<String>,
    #[serde(default)]
    pub positions: Vec<String>,
    pub role: Option<String>,
    pub business_unit: Option<String>,
    pub photo_url: Option<String>,
    pub mobile_phone: Option<String>,
    pub office_phone: Option<OfficePhone>,
    pub account_status: Option<AccountStatus>,
    pub password: Option<Secret>,
    pub enabled: Option<bool>,
    pub active: Option<bool>,
    pub permissions: Option<PermissionOverrides>,
    pub external_id: Option<String>,
    #[serde(default)]
    pub enterprise: Enterprise,
    /// Sync only (never read from clients): what lifecycle sources say.
    #[serde(skip)]
    pub source_facts: BTreeMap<String, SourceFacts>,
    /// Sync only: photo bytes from the source (they win over `photo_url`).
    #[serde(skip)]
    pub photo: Option<PhotoBytes>,
    /// SCIM only (never read from clients): `password` comes from an identity
    /// provider whose own policy governs; rosterd's policy is not applied.
    #[serde(skip)]
    pub password_unchecked: bool,
    /// SCIM only: a note for the change's audit entry (what was done with an
    /// identity provider's password). Never holds a secret.
    #[serde(skip)]
    pub audit_note: Option<String>,
}

/// A partial update. Absent fields are kept; `null` clears an optional field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmployeePatch {
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub username: Option<String>,
    /// Replaces the whole set.
    pub positions: Option<Vec<String>>,
    /// Adds to the set (after `positions`, if both are given).
    #[serde(default)]
    pub add_positions: Vec<String>,
    /// Removes from the set.
    #[serde(default)]
    pub remove_positions: Vec<String>,
    pub role: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub business_unit: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub photo_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub mobile_phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub office_phone: Option<Option<OfficePhone>>,
    pub account_status: Option<AccountStatus>,
    pub password: Option<Secret>,
    pub enabled: Option<bool>,
    pub active: Option<bool>,
    pub permissions: Option<PermissionOverrides>,
    #[serde(default, deserialize_with = "nullable")]
    pub external_id: Option<Option<String>>,
    /// Replaces all enterprise fields.
    pub enterprise: Option<Enterprise>,
    /// Optimistic concurrency: the version the client last read.
    pub version: Option<u64>,
    /// Sync only (never read from clients): the enterprise employee number.
    #[serde(skip)]
    pub employee_number: Option<Option<String>>,
    /// Sync only: the enterprise manager (a rosterd employee id).
    #[serde(skip)]
    pub manager: Option<Option<String>>,
    /// Sync only: what a source says about the lifecycle (`None` forgets it).
    #[serde(skip)]
    pub source_facts: Option<(String, Option<SourceFacts>)>,
    /// Sync only: photo bytes from the source (`Some(None)` removes the photo;
    /// applied after `photo_url`).
    #[serde(skip)]
    pub photo: Option<Option<PhotoBytes>>,
    /// SCIM only: as [`NewEmployee::password_unchecked`].
    #[serde(skip)]
    pub password_unchecked: bool,
    /// SCIM only: as [`NewEmployee::audit_note`].
    #[serde(skip)]
    pub audit_note: Option<String>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

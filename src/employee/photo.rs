//! Photos: the upload rules every path keeps (accepted types, size, bytes
//! that are an image of the declared type), setting and removing a profile's
//! photo, reading the stored bytes, and what a sync's photo change writes.

use tracing::instrument;

use super::{Employee, EmployeeId, Error, Photo, PhotoBytes, Roster};
use crate::store::{Actor, AuditAction, PhotoChange};

impl Roster {
    /// An upload checked against the photo rules: what the profile records of
    /// it, and the bytes to store.
    pub(super) fn uploaded_photo(
        &self,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(Photo, Vec<u8>), Error> {
        let ct = self.check_photo(content_type, &bytes)?;
        let sha256 = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        let meta = Photo::Uploaded {
            content_type: ct,
            size: bytes.len(),
            sha256: Some(sha256),
        };
        Ok((meta, bytes))
    }
    pub(super) fn check_photo_size(&self, size: usize) -> Result<(), Error> {
        if size > self.photo_max_bytes {
            return Err(Error::PhotoTooLarge {
                size,
                max: self.photo_max_bytes,
            });
        }
        Ok(())
    }
    /// Checks uploaded photo bytes against the rules every upload path keeps
    /// (the admin API's `PUT …/photo`, the console's form): an accepted content
    /// type, not empty, at most `[photos] max_bytes`, and bytes that are an
    /// image of the declared type by their first bytes. Returns the content type
    /// as stored (lowercase, without parameters).
    pub fn check_photo(&self, content_type: &str, bytes: &[u8]) -> Result<String, Error> {
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if !PHOTO_TYPES.contains(&ct.as_str()) {
            return Err(Error::invalid(
                "photo",
                format!(
                    "content type `{ct}` is not accepted; use one of {}",
                    PHOTO_TYPES.join(", ")
                ),
            ));
        }
        if bytes.is_empty() {
            return Err(Error::invalid("photo", "is empty"));
        }
        if bytes.len() > self.photo_max_bytes {
            return Err(Error::PhotoTooLarge {
                size: bytes.len(),
                max: self.photo_max_bytes,
            });
        }
        match sniff_photo(bytes) {
            Some(real) if real == ct => Ok(ct),
            Some(real) => Err(Error::invalid(
                "photo",
                format!("the bytes are {real}, not {ct}; send them as {real}"),
            )),
            None => Err(Error::invalid(
                "photo",
                format!("the bytes are not an image of type {ct} (checked by their first bytes)"),
            )),
        }
    }
    /// Stores uploaded photo bytes for a profile (checked by [`Roster::check_photo`]).
    #[instrument(skip_all, fields(actor = %actor, employee = %id))]
    pub async fn set_photo(
        &self,
        actor: &Actor,
        id: EmployeeId,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Employee, Error> {
        let (meta, bytes) = self.uploaded_photo(content_type, bytes)?;
        let (e, _) = self.modify(
            actor,
            id,
            AuditAction::Update,
            None,
            PhotoChange::Set(bytes),
            |e, _| {
                e.photo = Some(meta.clone());
                Ok(())
            },
        )?;
        self.store.flush().await?;
        Ok(e)
    }
    /// The uploaded photo's bytes and content type.
    pub fn photo(&self, id: EmployeeId) -> Result<(String, Vec<u8>), Error> {
        let e = self.get(id)?;
        match e.photo {
            Some(Photo::Uploaded { content_type, .. }) => match self.store.photo(id.0)? {
                Some(b) => Ok((content_type, b.to_vec())),
                None => Err(Error::NotFound(
                    "the photo is missing from the store".into(),
                )),
            },
            _ => Err(Error::NotFound(format!(
                "employee {id} has no uploaded photo"
            ))),
        }
    }
    /// Removes the photo (uploaded or linked).
    pub async fn remove_photo(&self, actor: &Actor, id: EmployeeId) -> Result<Employee, Error> {
        let (e, _) = self.modify(
            actor,
            id,
            AuditAction::Update,
            None,
            PhotoChange::Remove,
            |e, _| {
                e.photo = None;
                Ok(())
            },
        )?;
        self.store.flush().await?;
        Ok(e)
    }
}

/// Content types accepted for uploaded photos.
pub const PHOTO_TYPES: [&str; 3] = ["image/png", "image/jpeg", "image/webp"];

/// The image type of uploaded photo bytes by their magic numbers (PNG, JPEG,
/// WebP), whatever content type the upload declared.
pub fn sniff_photo(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// The photo bytes to write when a sync takes a profile's photo from `before` to
/// `after`; `bytes`: what the change brought. Same photo (same digest): nothing.
pub(super) fn photo_write(
    before: &Option<Photo>,
    after: &Option<Photo>,
    bytes: &Option<Option<PhotoBytes>>,
) -> PhotoChange {
    if before == after {
        return PhotoChange::Keep;
    }
    match (after, bytes) {
        (Some(Photo::Uploaded { .. }), Some(Some(p))) => PhotoChange::Set(p.bytes.to_vec()),
        (Some(Photo::Uploaded { .. }), _) => PhotoChange::Keep,
        _ if matches!(before, Some(Photo::Uploaded { .. })) => PhotoChange::Remove,
        _ => PhotoChange::Keep,
    }
}

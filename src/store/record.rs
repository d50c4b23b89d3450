//! The value of one record in the `employees` tree (schema version 2): a small
//! binary header, then the record's body as the domain wrote it (JSON).
//!
//! ```text
//! tag      u8       2
//! version  u64 BE   the record's version (compare-and-swap)
//! nkeys    u16 BE   then per key: len u16 BE, the index key (`<kind>\0<value>`)
//! nseqs    u8       then per seq: u64 BE, its newest audit sequence numbers
//! nmarks   u8       then per mark: len u16 BE, the owner (a sync source id),
//!                   len u16 BE, the mark: what that source knows of this version
//! body     ...      the rest
//! ```
//!
//! Keeping the version, the unique keys and the newest audit links inside the
//! record means a create writes two sled entries (the record and its audit entry)
//! instead of seven: sled 0.34 costs about the same per inserted entry whatever
//! its size (measured in README.md's incremental-runs section), which made bulk
//! imports slow. Older audit links spill to the
//! `audit_by_employee` tree once there are more than [`MAX_SEQS`].

/// First byte of a version 2 record. Version 1 records are JSON and start with `{`.
pub(crate) const TAG: u8 = 2;

/// Audit links kept in the header before they spill to `audit_by_employee`.
pub(crate) const MAX_SEQS: usize = 32;

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Header {
    pub version: u64,
    /// Raw index keys (`IndexKind::key`), so they can be dropped without decoding.
    pub keys: Vec<Vec<u8>>,
    /// Newest audit sequence numbers of this record, oldest first.
    pub seqs: Vec<u64>,
    /// (owner, mark): opaque notes that hold for this version of the record only.
    pub marks: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What is wrong with a record's header: one that cannot be written (too long
/// for its length fields; nothing is written) or one read back damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("a {name} of {len} bytes is too long to index (at most {max})")]
    KeyTooLong {
        name: String,
        len: usize,
        max: usize,
    },
    #[error("a record header has too many parts")]
    TooManyParts,
    #[error("a record mark is too long")]
    MarkTooLong,
    #[error("record header is cut short")]
    CutShort,
    #[error("record has format tag {0}, expected {TAG}")]
    Tag(u8),
    #[error("record is not in the version 2 format")]
    NotVersion2,
}

impl From<RecordError> for super::StoreError {
    /// A header that cannot be written is a write the store cannot hold; one
    /// read back damaged is a corrupt record.
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::KeyTooLong { .. }
            | RecordError::TooManyParts
            | RecordError::MarkTooLong => super::StoreError::Invalid(e.to_string()),
            RecordError::CutShort | RecordError::Tag(_) | RecordError::NotVersion2 => {
                super::StoreError::Corrupt(e.to_string())
            }
        }
    }
}

/// Fails (and nothing is written) when a part is too long for its length field.
pub(crate) fn encode(h: &Header, body: &[u8]) -> Result<Vec<u8>, RecordError> {
    let max16 = u16::MAX as usize;
    if let Some(k) = h.keys.iter().find(|k| k.len() > max16) {
        let name = String::from_utf8_lossy(k.split(|b| *b == 0).next().unwrap_or_default());
        return Err(RecordError::KeyTooLong {
            name: name.into_owned(),
            len: k.len(),
            max: max16,
        });
    }
    if h.keys.len() > max16 || h.seqs.len() > 255 || h.marks.len() > 255 {
        return Err(RecordError::TooManyParts);
    }
    if h.marks
        .iter()
        .any(|(o, m)| o.len() > max16 || m.len() > max16)
    {
        return Err(RecordError::MarkTooLong);
    }
    let keys_len: usize = h.keys.iter().map(|k| 2 + k.len()).sum();
    let marks_len: usize = h.marks.iter().map(|(o, m)| 4 + o.len() + m.len()).sum();
    let mut v = Vec::with_capacity(
        1 + 8 + 2 + keys_len + 1 + 8 * h.seqs.len() + 1 + marks_len + body.len(),
    );
    v.push(TAG);
    v.extend_from_slice(&h.version.to_be_bytes());
    v.extend_from_slice(&(h.keys.len() as u16).to_be_bytes());
    for k in &h.keys {
        v.extend_from_slice(&(k.len() as u16).to_be_bytes());
        v.extend_from_slice(k);
    }
    v.push(h.seqs.len() as u8);
    for s in &h.seqs {
        v.extend_from_slice(&s.to_be_bytes());
    }
    v.push(h.marks.len() as u8);
    for (owner, mark) in &h.marks {
        v.extend_from_slice(&(owner.len() as u16).to_be_bytes());
        v.extend_from_slice(owner);
        v.extend_from_slice(&(mark.len() as u16).to_be_bytes());
        v.extend_from_slice(mark);
    }
    v.extend_from_slice(body);
    Ok(v)
}

struct Reader<'a> {
    v: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.v.len());
        let end = end.ok_or(RecordError::CutShort)?;
        let s = &self.v[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, RecordError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
}

/// The header and the offset where the body starts.
pub(crate) fn decode(v: &[u8]) -> Result<(Header, usize), RecordError> {
    let mut r = Reader { v, at: 0 };
    let tag = r.u8()?;
    if tag != TAG {
        return Err(RecordError::Tag(tag));
    }
    let version = r.u64()?;
    let nkeys = r.u16()? as usize;
    let mut keys = Vec::with_capacity(nkeys);
    for _ in 0..nkeys {
        let len = r.u16()? as usize;
        keys.push(r.take(len)?.to_vec());
    }
    let nseqs = r.u8()? as usize;
    let mut seqs = Vec::with_capacity(nseqs);
    for _ in 0..nseqs {
        seqs.push(r.u64()?);
    }
    let nmarks = r.u8()? as usize;
    let mut marks = Vec::with_capacity(nmarks);
    for _ in 0..nmarks {
        let len = r.u16()? as usize;
        let owner = r.take(len)?.to_vec();
        let len = r.u16()? as usize;
        marks.push((owner, r.take(len)?.to_vec()));
    }
    Ok((
        Header {
            version,
            keys,
            seqs,
            marks,
        },
        r.at,
    ))
}

/// Only the version (the keys and links are skipped, not copied).
pub(crate) fn version(v: &[u8]) -> Result<u64, RecordError> {
    let mut r = Reader { v, at: 0 };
    if r.u8()? != TAG {
        return Err(RecordError::NotVersion2);
    }
    r.u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_short_input() {
        let h = Header {
            version: 7,
            keys: vec![b"email\0a@x".to_vec(), b"source:ldap\0k1".to_vec()],
            seqs: vec![3, 9],
            marks: vec![(b"ldap".to_vec(), vec![1, 2, 3])],
        };
        let v = encode(&h, b"{\"a\":1}").unwrap();
        let (back, at) = decode(&v).unwrap();
        assert_eq!(back, h);
        assert_eq!(&v[at..], b"{\"a\":1}");
        assert_eq!(version(&v).unwrap(), 7);
        for cut in 0..at {
            assert!(decode(&v[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(b"{\"a\":1}").is_err());
        let long = Header {
            keys: vec![[b"external_id\0".as_slice(), &[b'x'; 70_000]].concat()],
            ..Default::default()
        };
        let e = encode(&long, b"{}").unwrap_err();
        assert!(e.to_string().contains("external_id of 70012 bytes"), "{e}");
    }
}

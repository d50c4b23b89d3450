//! Web console sessions as rows (the console owns their format), keyed by the
//! SHA-256 digest of the session id: the id itself (the cookie's value) is
//! never handed to the store. One key-value step per operation, so a SQL
//! backend holds them as one table.

use super::{Record, SledStore, StoreError};

impl SledStore {
    pub(crate) fn session_get(&self, key: &[u8; 32]) -> Result<Option<Record>, StoreError> {
        Ok(self.sessions.get(key)?.map(Record::sled))
    }

    pub(crate) fn session_put(&self, key: &[u8; 32], row: &[u8]) -> Result<(), StoreError> {
        self.sessions.insert(key, row)?;
        Ok(())
    }

    pub(crate) fn session_remove(&self, key: &[u8; 32]) -> Result<(), StoreError> {
        self.sessions.remove(key)?;
        Ok(())
    }

    pub(crate) fn sessions_all(&self) -> Result<Vec<([u8; 32], Record)>, StoreError> {
        let mut out = Vec::new();
        for r in self.sessions.iter() {
            let (k, v) = r?;
            // A key of another length is not a digest this module wrote: skipped.
            if let Ok(k) = <[u8; 32]>::try_from(k.as_ref()) {
                out.push((k, Record::sled(v)));
            }
        }
        Ok(out)
    }
}

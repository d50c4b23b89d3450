//! The sync run history as rows (the sync engine owns their format): run
//! headers and plans by run id (a plan's pages under the run id and the page
//! number, next to the plan's own row), per-source state by source id, and the mapped
//! entries of held runs by run id. Every operation is one key-value step, or
//! one transaction where several rows go together, so a SQL backend holds them
//! as three tables.

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Record, SledStore, StoreError};

impl SledStore {
    pub(crate) fn run_put(
        &self,
        id: u64,
        header: &[u8],
        plan: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        if let Some(p) = plan {
            self.run_plans.insert(id.to_be_bytes(), p)?;
        }
        self.runs.insert(id.to_be_bytes(), header)?;
        Ok(())
    }

    pub(crate) fn run_put_plan(&self, id: u64, plan: &[u8]) -> Result<(), StoreError> {
        self.run_plans.insert(id.to_be_bytes(), plan)?;
        Ok(())
    }

    pub(crate) fn run_header(&self, id: u64) -> Result<Option<Record>, StoreError> {
        Ok(self.runs.get(id.to_be_bytes())?.map(Record::sled))
    }

    pub(crate) fn run_plan(&self, id: u64) -> Result<Option<Record>, StoreError> {
        Ok(self.run_plans.get(id.to_be_bytes())?.map(Record::sled))
    }

    pub(crate) fn run_put_plan_page(
        &self,
        id: u64,
        page: u32,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.run_plans.insert(plan_page_key(id, page), bytes)?;
        Ok(())
    }

    pub(crate) fn run_plan_page(&self, id: u64, page: u32) -> Result<Option<Record>, StoreError> {
        Ok(self
            .run_plans
            .get(plan_page_key(id, page))?
            .map(Record::sled))
    }

    pub(crate) fn run_headers(
        &self,
    ) -> Box<dyn Iterator<Item = Result<(u64, Record), StoreError>> + Send + '_> {
        Box::new(self.runs.iter().rev().map(|r| {
            let (k, v) = r?;
            Ok((run_id(&k)?, Record::sled(v)))
        }))
    }

    pub(crate) fn run_remove(&self, id: u64) -> Result<(), StoreError> {
        let k = id.to_be_bytes();
        // The plan's row and its pages (keys that start with the run id).
        let plan_keys = self
            .run_plans
            .scan_prefix(k)
            .keys()
            .collect::<Result<Vec<_>, _>>()?;
        (&self.runs, &self.run_plans, &self.run_held)
            .transaction(|(runs, plans, held)| {
                runs.remove(&k)?;
                for pk in &plan_keys {
                    plans.remove(pk)?;
                }
                held.remove(&k)?;
                Ok::<_, ConflictableTransactionError<std::convert::Infallible>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::from(e),
                TransactionError::Abort(never) => match never {},
            })
    }

    pub(crate) fn source_state(&self, source: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.run_state.get(source)?.map(Record::sled))
    }

    pub(crate) fn put_source_state(&self, source: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.run_state.insert(source, bytes)?;
        Ok(())
    }

    pub(crate) fn held_put(&self, id: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.run_held.insert(id.to_be_bytes(), bytes)?;
        Ok(())
    }

    pub(crate) fn held_take(&self, id: u64) -> Result<Option<Record>, StoreError> {
        Ok(self.run_held.remove(id.to_be_bytes())?.map(Record::sled))
    }

    pub(crate) fn held_ids(&self) -> Result<Vec<u64>, StoreError> {
        self.run_held.iter().keys().map(|k| run_id(&k?)).collect()
    }
}

/// A plan page's key: the run id, then the page number (both big-endian, so
/// the pages of a run follow its plan row in key order).
pub(super) fn plan_page_key(id: u64, page: u32) -> [u8; 12] {
    let mut k = [0; 12];
    k[..8].copy_from_slice(&id.to_be_bytes());
    k[8..].copy_from_slice(&page.to_be_bytes());
    k
}

fn run_id(k: &[u8]) -> Result<u64, StoreError> {
    k.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("a run key is not a run id".into()))
}

//! The sled backend's side of `rosterd store copy` (see [`super::copy`]):
//! every tree read out as [`StoreRow`]s, and rows written into an empty
//! store.
//!
//! An import writes in batches (a whole store in one sled transaction would
//! be held in memory). So that a copy cut short is never taken for a store,
//! it first leaves `copy_incomplete` in `meta` and removes it last; a store
//! holding it is refused at open ([`SledStore::open`]). An import that fails
//! clears what it wrote.

use std::collections::HashMap;

use uuid::Uuid;

use super::backend::{NextIds, StoreRow, Table};
use super::record::{self, Header};
use super::{Record, SledStore, StoreError, uuid_from};

/// The `meta` key an unfinished import leaves.
pub(crate) const COPY_INCOMPLETE: &str = "copy_incomplete";

/// Rows written per sled batch by an import.
const IMPORT_BATCH: usize = 5_000;

/// sled's id counter can only be advanced one id at a time: a counter this far
/// behind the copied ids is refused rather than advanced for minutes.
const MAX_ID_ADVANCE: u64 = 1 << 33;

impl SledStore {
    pub(crate) fn table_counts(&self) -> Result<Vec<(Table, u64)>, StoreError> {
        let mut keys = 0u64;
        let mut marks = 0u64;
        for r in self.employees.iter() {
            let (_, v) = r?;
            let (h, _) = record::decode(&v)?;
            keys += h.keys.len() as u64;
            marks += h.marks.len() as u64;
        }
        let mut audit = 0u64;
        for r in self.audit.iter() {
            let (k, v) = r?;
            audit += super::unpack(&k, &v)?.len() as u64;
        }
        let len = |t: &sled::Tree| t.len() as u64;
        Ok(vec![
            (Table::Employees, len(&self.employees)),
            (Table::UniqueKeys, keys),
            (Table::Marks, marks),
            (Table::Photos, len(&self.photos)),
            (Table::Positions, len(&self.positions)),
            (Table::Audit, audit),
            (Table::Outbox, len(&self.outbox)),
            (Table::Runs, len(&self.runs)),
            (Table::PlanPages, len(&self.run_plans)),
            (Table::SourceState, len(&self.run_state)),
            (Table::HeldPlans, len(&self.run_held)),
            (Table::Sessions, len(&self.sessions)),
        ])
    }

    // Long on purpose: one pass per tree, in the order of `Table::ALL`, each a
    // few lines; the audit owners gathered first are used by two of them.
    pub(crate) fn export_rows(
        &self,
        is_active: &dyn Fn(&[u8]) -> bool,
        sink: &mut dyn FnMut(StoreRow) -> Result<(), StoreError>,
    ) -> Result<NextIds, StoreError> {
        // Which employee each audit entry belongs to: the newest links are in
        // the records' headers, the older ones in `audit_by_employee`.
        let mut owner: HashMap<u64, Uuid> = HashMap::new();
        for r in self.employees.iter() {
            let (k, v) = r?;
            let id = uuid_from(&k)?;
            let (h, at) = record::decode(&v)?;
            for s in &h.seqs {
                owner.insert(*s, id);
            }
            let keys = h
                .keys
                .iter()
                .map(|k| split_index_key(k))
                .collect::<Result<Vec<_>, _>>()?;
            let marks = h
                .marks
                .into_iter()
                .map(|(o, m)| {
                    String::from_utf8(o).map(|o| (o, m)).map_err(|_| {
                        StoreError::Corrupt(format!("record {id}: a mark owner is not UTF-8"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let len = v.len() - at;
            let body = v.subslice(at, len);
            sink(StoreRow::Employee {
                id,
                version: h.version,
                active: is_active(&body),
                keys,
                marks,
                body: Record::sled(body),
            })?;
        }
        for r in self.audit_by_employee.iter() {
            let (k, _) = r?;
            let (id, seq) = k
                .get(..16)
                .zip(k.get(16..24))
                .ok_or_else(|| StoreError::Corrupt("short audit_by_employee key".into()))?;
            let seq = u64::from_be_bytes(
                seq.try_into()
                    .map_err(|_| StoreError::Corrupt("short audit_by_employee key".into()))?,
            );
            owner.insert(seq, uuid_from(id)?);
        }
        for r in self.photos.iter() {
            let (k, v) = r?;
            sink(StoreRow::Photo {
                id: uuid_from(&k)?,
                bytes: Record::sled(v),
            })?;
        }
        for r in self.positions.iter() {
            let (k, v) = r?;
            sink(StoreRow::Position {
                id: uuid_from(&k)?,
                bytes: Record::sled(v),
            })?;
        }
        for r in self.audit.iter() {
            let (k, v) = r?;
            for (seq, bytes) in super::unpack(&k, &v)? {
                sink(StoreRow::Audit {
                    seq,
                    employee: owner.get(&seq).copied(),
                    entry: Record::from(bytes.to_vec()),
                })?;
            }
        }
        for r in self.outbox.iter() {
            let (k, v) = r?;
            sink(StoreRow::Outbox {
                id: be_u64(&k, "outbox")?,
                pending: self.outbox_pending.contains_key(&k)?,
                body: Record::sled(v),
            })?;
        }
        for r in self.runs.iter() {
            let (k, v) = r?;
            sink(StoreRow::Run {
                id: be_u64(&k, "run")?,
                header: Record::sled(v),
            })?;
        }
        for r in self.run_plans.iter() {
            let (k, v) = r?;
            let (run, page) = match k.len() {
                8 => (be_u64(&k, "plan")?, None),
                12 => (
                    be_u64(&k[..8], "plan")?,
                    Some(u32::from_be_bytes(k[8..].try_into().map_err(|_| {
                        StoreError::Corrupt("a plan page key is cut short".into())
                    })?)),
                ),
                _ => return Err(StoreError::Corrupt("a plan key is not a run id".into())),
            };
            sink(StoreRow::PlanPage {
                run,
                page,
                bytes: Record::sled(v),
            })?;
        }
        for r in self.run_state.iter() {
            let (k, v) = r?;
            let source = String::from_utf8(k.to_vec())
                .map_err(|_| StoreError::Corrupt("a source id is not UTF-8".into()))?;
            sink(StoreRow::SourceState {
                source,
                bytes: Record::sled(v),
            })?;
        }
        for r in self.run_held.iter() {
            let (k, v) = r?;
            sink(StoreRow::Held {
                run: be_u64(&k, "held run")?,
                bytes: Record::sled(v),
            })?;
        }
        for (key, row) in self.sessions_all()? {
            sink(StoreRow::Session { key, row })?;
        }
        // One counter gives both ids and audit sequence numbers; drawing one
        // tells where it stands.
        let next = self.db.generate_id()?.saturating_add(1);
        Ok(NextIds {
            id: next,
            audit_seq: next,
        })
    }

    pub(crate) fn import_rows(
        &self,
        rows: &mut dyn Iterator<Item = Result<StoreRow, StoreError>>,
        next: &dyn Fn() -> NextIds,
    ) -> Result<(), StoreError> {
        let held = self.table_counts()?;
        if held.iter().any(|(_, n)| *n > 0) {
            return Err(StoreError::Invalid(
                "the target store is not empty; copy into a new store".into(),
            ));
        }
        let _writing = self
            .write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.meta.insert(COPY_INCOMPLETE, &[])?;
        self.db.flush()?;
        match self.import_locked(rows, next) {
            Ok(()) => {
                self.meta.remove(COPY_INCOMPLETE)?;
                self.db.flush()?;
                Ok(())
            }
            Err(e) => {
                // Back to empty; if even that fails, the marker stays and
                // the store is refused at open.
                if self.clear_trees().is_ok() {
                    let _ = self.meta.remove(COPY_INCOMPLETE);
                }
                let _ = self.db.flush();
                Err(e)
            }
        }
    }

    fn data_trees(&self) -> [&sled::Tree; 12] {
        [
            &self.employees,
            &self.photos,
            &self.audit,
            &self.audit_by_employee,
            &self.positions,
            &self.outbox,
            &self.outbox_pending,
            &self.runs,
            &self.run_plans,
            &self.run_state,
            &self.run_held,
            &self.sessions,
        ]
    }

    fn clear_trees(&self) -> Result<(), StoreError> {
        for t in self.data_trees() {
            t.clear()?;
        }
        Ok(())
    }

    // Long on purpose: one arm per row kind, each adding its row to its
    // tree's batch; the arms read best side by side.
    fn import_locked(
        &self,
        rows: &mut dyn Iterator<Item = Result<StoreRow, StoreError>>,
        next: &dyn Fn() -> NextIds,
    ) -> Result<(), StoreError> {
        let mut batches: [sled::Batch; 12] = Default::default();
        let mut pending = 0usize;
        for row in rows {
            let [
                emp,
                photos,
                audit,
                by_emp,
                positions,
                outbox,
                ob_pending,
                runs,
                plans,
                state,
                held,
                sessions,
            ] = &mut batches;
            match row? {
                StoreRow::Employee {
                    id,
                    version,
                    keys,
                    marks,
                    body,
                    active: _,
                } => {
                    let h = Header {
                        version,
                        keys: keys
                            .iter()
                            .map(|(kind, key)| {
                                let mut k = kind.as_bytes().to_vec();
                                k.push(0);
                                k.extend_from_slice(key.as_bytes());
                                k
                            })
                            .collect(),
                        // Every audit link goes to `audit_by_employee`.
                        seqs: vec![],
                        marks: marks
                            .into_iter()
                            .map(|(o, m)| (o.into_bytes(), m))
                            .collect(),
                    };
                    emp.insert(id.as_bytes(), record::encode(&h, &body)?);
                }
                StoreRow::Photo { id, bytes } => photos.insert(id.as_bytes(), &*bytes),
                StoreRow::Position { id, bytes } => positions.insert(id.as_bytes(), &*bytes),
                StoreRow::Audit {
                    seq,
                    employee,
                    entry,
                } => {
                    audit.insert(&seq.to_be_bytes(), &*entry);
                    if let Some(id) = employee {
                        let mut k = id.as_bytes().to_vec();
                        k.extend_from_slice(&seq.to_be_bytes());
                        by_emp.insert(k, &[]);
                    }
                }
                StoreRow::Outbox { id, pending, body } => {
                    outbox.insert(&id.to_be_bytes(), &*body);
                    if pending {
                        ob_pending.insert(&id.to_be_bytes(), &[]);
                    }
                }
                StoreRow::Run { id, header } => runs.insert(&id.to_be_bytes(), &*header),
                StoreRow::PlanPage { run, page, bytes } => match page {
                    None => plans.insert(&run.to_be_bytes(), &*bytes),
                    Some(p) => plans.insert(&super::runs::plan_page_key(run, p), &*bytes),
                },
                StoreRow::SourceState { source, bytes } => state.insert(source.as_bytes(), &*bytes),
                StoreRow::Held { run, bytes } => held.insert(&run.to_be_bytes(), &*bytes),
                StoreRow::Session { key, row } => sessions.insert(&key, &*row),
            }
            pending += 1;
            if pending >= IMPORT_BATCH {
                self.apply(&mut batches)?;
                pending = 0;
            }
        }
        self.apply(&mut batches)?;
        // New ids and sequence numbers continue after the copied ones.
        let next = next();
        let floor = next.id.max(next.audit_seq);
        let at = self.db.generate_id()?;
        if floor.saturating_sub(at) > MAX_ID_ADVANCE {
            return Err(StoreError::Invalid(format!(
                "the source's ids reach {floor}: too far for a sled store to continue from"
            )));
        }
        let mut at = at;
        while at.saturating_add(1) < floor {
            at = self.db.generate_id()?;
        }
        Ok(())
    }

    fn apply(&self, batches: &mut [sled::Batch; 12]) -> Result<(), StoreError> {
        for (tree, batch) in self.data_trees().into_iter().zip(batches.iter_mut()) {
            tree.apply_batch(std::mem::take(batch))?;
        }
        Ok(())
    }
}

/// An index key `<kind>\0<key>` as (kind, key).
fn split_index_key(k: &[u8]) -> Result<(String, String), StoreError> {
    let at = k
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| StoreError::Corrupt("an index key has no kind".into()))?;
    let text = |b: &[u8]| {
        String::from_utf8(b.to_vec())
            .map_err(|_| StoreError::Corrupt("an index key is not UTF-8".into()))
    };
    Ok((text(&k[..at])?, text(&k[at + 1..])?))
}

fn be_u64(k: &[u8], what: &str) -> Result<u64, StoreError> {
    k.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("a {what} key is not a u64")))
}

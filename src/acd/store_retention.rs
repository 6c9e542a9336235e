//! The store's half of retention: take the oldest rows of a table out in
//! bounded batches, each exported before its delete commits.

use std::path::Path;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{cdr_key, Ctx, Store, StoreError, CDRS, QUEUE_LOG};
use crate::acd::retention::{Row, SweepError, Table};

impl Store {
    /// Hands at most `max` rows of `table` whose time is before `before_ms`
    /// (oldest first) to `export`, then deletes them, all in one write
    /// transaction. `export` must have the rows on disk (fsync'd) when it
    /// returns `Ok`; if it fails nothing is deleted. A crash between the
    /// two leaves the rows in the database to be exported again: at worst
    /// a duplicate line, never a lost one. Returns how many rows left.
    pub fn expire_batch(
        &self,
        table: Table,
        before_ms: u64,
        max: usize,
        export: impl FnOnce(&[Row]) -> Result<(), SweepError>,
    ) -> Result<usize, SweepError> {
        let p = &self.path;
        let tx = self.db.begin_write().ctx("begin retention transaction", p)?;
        let rows = match table {
            Table::Cdrs => oldest(&tx, CDRS, p, before_ms, max, |v: &[u8]| v.to_vec())?,
            Table::QueueLog => oldest(&tx, QUEUE_LOG, p, before_ms, max, |v: &str| v.as_bytes().to_vec())?,
        };
        if rows.is_empty() {
            return Ok(0);
        }
        // Dropping `tx` on an error aborts it: nothing is deleted.
        export(&rows)?;
        match table {
            Table::Cdrs => delete(&tx, CDRS, p, &rows)?,
            Table::QueueLog => delete(&tx, QUEUE_LOG, p, &rows)?,
        }
        tx.commit().ctx("commit retention delete", p)?;
        Ok(rows.len())
    }
}

fn oldest<V: redb::Value + 'static>(
    tx: &WriteTransaction,
    def: TableDefinition<&'static [u8], V>,
    p: &Path,
    before_ms: u64,
    max: usize,
    bytes: impl for<'a> Fn(V::SelfType<'a>) -> Vec<u8>,
) -> Result<Vec<Row>, StoreError> {
    let t = tx.open_table(def).ctx("open table for retention", p)?;
    let end = cdr_key(before_ms, 0);
    let mut out = Vec::new();
    for row in t.range(..end.as_slice()).ctx("range scan for retention", p)?.take(max) {
        let (k, v) = row.ctx("read row for retention", p)?;
        let key = k.value().to_vec();
        let time_ms = key.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, u64::from_be_bytes);
        out.push(Row { key, time_ms, value: bytes(v.value()) });
    }
    Ok(out)
}

fn delete<V: redb::Value + 'static>(
    tx: &WriteTransaction,
    def: TableDefinition<&'static [u8], V>,
    p: &Path,
    rows: &[Row],
) -> Result<(), StoreError> {
    let mut t = tx.open_table(def).ctx("open table for retention", p)?;
    for r in rows {
        t.remove(r.key.as_slice()).ctx("delete expired row", p)?;
    }
    Ok(())
}

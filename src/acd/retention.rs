//! Retention of CDRs and the queue log: rows older than
//! `engine.retention_days` are appended to dated files in
//! `engine.export_dir` (`cdrs-YYYY-MM-DD.csv`, `queue_log-YYYY-MM-DD.log`,
//! the day being the row's own UTC day), fsync'd, and only then deleted.
//!
//! [`Sweep`] decides when and what, with time passed in; the store thread
//! calls [`Sweep::step`] between group commits, one batch of at most
//! [`BATCH_ROWS`] rows per write transaction, so a sweep of a million rows
//! delays a commit by one batch at most, never by the whole sweep.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::store::{Store, StoreError};

/// Rows per write transaction.
pub const BATCH_ROWS: usize = 1000;

const DAY_MS: u64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Cdrs,
    QueueLog,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::Cdrs, Table::QueueLog];

    /// The `table` label of the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Table::Cdrs => "cdrs",
            Table::QueueLog => "queue_log",
        }
    }

    /// `cdrs-2026-12-04.csv`, `queue_log-2026-12-04.log`.
    pub fn file_name(self, day_ms: u64) -> String {
        let (y, m, d) = civil_from_days(day_ms / DAY_MS);
        match self {
            Table::Cdrs => format!("cdrs-{y:04}-{m:02}-{d:02}.csv"),
            Table::QueueLog => format!("queue_log-{y:04}-{m:02}-{d:02}.log"),
        }
    }

    fn index(self) -> usize {
        match self {
            Table::Cdrs => 0,
            Table::QueueLog => 1,
        }
    }
}

/// One row on its way out of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: Vec<u8>,
    /// The row's time (a CDR's end, a queue log line's time), unix ms.
    pub time_ms: u64,
    /// The stored value: a CDR's JSON, a queue log line.
    pub value: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot export to {path}: {source}")]
    Export { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    pub days: u32,
    pub sweep_ms: u64,
    pub export_dir: PathBuf,
}

impl RetentionConfig {
    pub fn from_engine(e: &crate::config::EngineSection) -> RetentionConfig {
        RetentionConfig {
            days: e.retention_days,
            sweep_ms: e.retention_sweep_s.saturating_mul(1000),
            export_dir: e.export_dir.clone().unwrap_or_else(|| e.state_dir.clone()),
        }
    }
}

/// Process-wide counts for `/metrics`, by table (`Table::index`).
pub struct RetentionCounts {
    pub exported: [AtomicU64; 2],
    pub deleted: [AtomicU64; 2],
    pub errors: [AtomicU64; 2],
}

pub static COUNTS: RetentionCounts = RetentionCounts {
    exported: [AtomicU64::new(0), AtomicU64::new(0)],
    deleted: [AtomicU64::new(0), AtomicU64::new(0)],
    errors: [AtomicU64::new(0), AtomicU64::new(0)],
};

impl RetentionCounts {
    /// (exported, deleted, errors) of `table`.
    pub fn of(&self, table: Table) -> (u64, u64, u64) {
        let i = table.index();
        let get = |a: &[AtomicU64; 2]| a.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
        (get(&self.exported), get(&self.deleted), get(&self.errors))
    }

    fn add(which: &[AtomicU64; 2], table: Table, n: u64) {
        if let Some(c) = which.get(table.index()) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// What one [`Sweep::step`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Not due yet.
    Idle,
    /// Exported and deleted `rows` rows of `table`; more may follow.
    Batch { table: Table, rows: usize },
    /// The sweep found nothing more to do; the next starts `sweep_ms` later.
    Done,
    /// The export or the store failed: nothing of that batch was deleted,
    /// and the sweep stops until the next interval.
    Failed { table: Table },
}

/// The retention schedule and the progress of a running sweep. `now_ms`
/// is a monotonic clock for the schedule; `wall_ms` (unix ms) sets what
/// is old.
#[derive(Debug)]
pub struct Sweep {
    cfg: RetentionConfig,
    next_ms: u64,
    running: Option<Running>,
}

#[derive(Debug, Clone, Copy)]
struct Running {
    cutoff_ms: u64,
    table: usize,
}

impl Sweep {
    /// The first sweep runs one interval after `now_ms`.
    pub fn new(cfg: RetentionConfig, now_ms: u64) -> Sweep {
        let next_ms = now_ms.saturating_add(cfg.sweep_ms);
        Sweep { cfg, next_ms, running: None }
    }

    pub fn config(&self) -> &RetentionConfig {
        &self.cfg
    }

    /// Milliseconds until [`Sweep::step`] has work (0 while a sweep runs).
    pub fn wait_ms(&self, now_ms: u64) -> u64 {
        if self.running.is_some() {
            0
        } else {
            self.next_ms.saturating_sub(now_ms)
        }
    }

    /// Rows older than this are exported and deleted: a rolling window of
    /// `days`, so 0 days means everything that ended before `wall_ms`.
    pub fn cutoff_ms(&self, wall_ms: u64) -> u64 {
        wall_ms.saturating_sub(u64::from(self.cfg.days).saturating_mul(DAY_MS))
    }

    /// Runs one batch if a sweep is due or running.
    pub fn step(&mut self, store: &Store, now_ms: u64, wall_ms: u64) -> Step {
        self.step_with(store, now_ms, wall_ms, export)
    }

    /// [`Sweep::step`] with the export given (tests inject failures).
    pub fn step_with(
        &mut self,
        store: &Store,
        now_ms: u64,
        wall_ms: u64,
        mut export: impl FnMut(&Path, Table, &[Row]) -> Result<(), SweepError>,
    ) -> Step {
        let run = match self.running {
            Some(r) => r,
            None if now_ms >= self.next_ms => Running { cutoff_ms: self.cutoff_ms(wall_ms), table: 0 },
            None => return Step::Idle,
        };
        let Some(&table) = Table::ALL.get(run.table) else {
            return self.finish(now_ms, Step::Done);
        };
        let dir = self.cfg.export_dir.clone();
        let mut exported = 0;
        let result = store.expire_batch(table, run.cutoff_ms, BATCH_ROWS, |rows| {
            export(&dir, table, rows)?;
            exported = rows.len();
            Ok(())
        });
        RetentionCounts::add(&COUNTS.exported, table, exported as u64);
        match result {
            Ok(rows) => {
                RetentionCounts::add(&COUNTS.deleted, table, rows as u64);
                let next = if rows < BATCH_ROWS { run.table + 1 } else { run.table };
                self.running = Some(Running { table: next, ..run });
                if rows == 0 && next >= Table::ALL.len() {
                    return self.finish(now_ms, Step::Done);
                }
                Step::Batch { table, rows }
            }
            Err(e) => {
                RetentionCounts::add(&COUNTS.errors, table, 1);
                tracing::error!(table = table.name(), error = %e, "retention sweep failed; nothing of this batch was deleted, retrying at the next sweep");
                self.finish(now_ms, Step::Failed { table })
            }
        }
    }

    fn finish(&mut self, now_ms: u64, step: Step) -> Step {
        self.running = None;
        self.next_ms = now_ms.saturating_add(self.cfg.sweep_ms);
        step
    }
}

/// Appends `rows` (oldest first) to their days' files in `dir` and
/// fsyncs each file before returning.
pub fn export(dir: &Path, table: Table, rows: &[Row]) -> Result<(), SweepError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SweepError::Export { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut rest = rows;
    while let Some(first) = rest.first() {
        let day = first.time_ms / DAY_MS;
        let n = rest.iter().position(|r| r.time_ms / DAY_MS != day).unwrap_or(rest.len());
        let (same_day, after) = rest.split_at(n);
        rest = after;
        let path = dir.join(table.file_name(first.time_ms));
        let (mut file, created) = open_append(&path).map_err(io(&path))?;
        let mut text = String::new();
        if created {
            if let Table::Cdrs = table {
                text.push_str(&csv_header());
            }
        }
        for r in same_day {
            match table {
                Table::Cdrs => text.push_str(&cdr_csv_line(&r.value)),
                Table::QueueLog => {
                    text.push_str(&String::from_utf8_lossy(&r.value));
                    text.push('\n');
                }
            }
        }
        file.write_all(text.as_bytes()).map_err(io(&path))?;
        file.sync_data().map_err(io(&path))?;
        if created {
            // The new file's name must be as durable as its content.
            File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
        }
    }
    Ok(())
}

/// Opens for appending; `true` if the file is new (or empty).
fn open_append(path: &Path) -> std::io::Result<(File, bool)> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    let empty = f.metadata()?.len() == 0;
    Ok((f, empty))
}

/// The columns of `cc-engine cdrs --csv`, so one reader reads both.
fn csv_header() -> String {
    crate::mgmt::client::cdrs_csv(&[])
}

/// A CDR's JSON as one CSV line. A row that is not JSON (a damaged
/// database) is kept as `undecodable,<raw>` rather than lost.
fn cdr_csv_line(json: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(v) => {
            let csv = crate::mgmt::client::cdrs_csv(std::slice::from_ref(&v));
            csv.split_once('\n').map(|(_, line)| line.to_string()).unwrap_or_default()
        }
        Err(_) => {
            let raw = String::from_utf8_lossy(json).replace('"', "\"\"").replace(['\n', '\r'], " ");
            format!("undecodable,\"{raw}\"\n")
        }
    }
}

/// (year, month, day) of a count of days since 1970-01-01 (H. Hinnant's
/// algorithm, the inverse of `cdr::days_from_civil`).
pub fn civil_from_days(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;

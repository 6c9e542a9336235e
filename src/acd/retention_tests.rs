//! The sweep against a real redb file in a throw-away directory.

use super::*;
use crate::acd::cdr::{parse_since, Cdr, Disposition, StoreOp};
use crate::acd::facts::{CallId, RtpCounts};
use crate::acd::queue_log::{QueueEvent, QueueLogEntry};

/// 2026-12-01T00:00:00Z.
const DAY1: u64 = 1_796_083_200_000;
const HOUR: u64 = 3_600_000;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("cc-engine-retention-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cdr(n: u64, ended_ms: u64) -> Cdr {
    Cdr {
        call_id: CallId::new(1, n).to_string(),
        sip_call_id: format!("sip-{n}"),
        queue: if n.is_multiple_of(2) { "even".into() } else { "odd".into() },
        overflowed_from: None,
        caller: "\"Bob, Jr\" <sip:b@x>".into(),
        agent: Some("a".into()),
        arrived_ms: ended_ms - 2_000,
        answered_ms: Some(ended_ms - 1_000),
        ended_ms,
        wait_s: 1,
        talk_s: 1,
        disposition: Disposition::Answered,
        reason: None,
        hangup: None,
        rtp: RtpCounts::default(),
    }
}

fn qlog(n: u64, time_ms: u64) -> QueueLogEntry {
    QueueLogEntry::new(time_ms, &format!("sip-{n}"), "q", None, QueueEvent::EnterQueue).with(["", "sip:c@x", "1"])
}

/// A store with `cdrs` CDRs and `lines` queue log lines, one every
/// `step_ms` from `from_ms`.
fn filled(dir: &TempDir, cdrs: u64, lines: u64, from_ms: u64, step_ms: u64) -> Store {
    let store = Store::open(&dir.0.join("state")).unwrap();
    let mut ops: Vec<StoreOp> = (0..cdrs).map(|n| StoreOp::Cdr(cdr(n, from_ms + n * step_ms))).collect();
    ops.extend((0..lines).map(|n| StoreOp::QueueLog(qlog(n, from_ms + n * step_ms))));
    store.apply_ops(&ops).unwrap();
    store
}

fn cfg(dir: &TempDir, days: u32) -> RetentionConfig {
    RetentionConfig { days, sweep_ms: 60_000, export_dir: dir.0.join("export") }
}

/// Steps until the sweep is done or failed (bounded), returning every step.
fn run(sweep: &mut Sweep, store: &Store, now_ms: u64, wall_ms: u64) -> Vec<Step> {
    let mut out = Vec::new();
    for _ in 0..100 {
        let s = sweep.step(store, now_ms, wall_ms);
        let end = matches!(s, Step::Done | Step::Failed { .. } | Step::Idle);
        out.push(s);
        if end {
            return out;
        }
    }
    panic!("sweep did not finish in 100 steps: {out:?}");
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn dates_are_utc_days() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(parse_since("2026-12-01T00:00:00Z"), Ok(DAY1));
    assert_eq!(civil_from_days(DAY1 / DAY_MS), (2026, 12, 1));
    let leap = parse_since("2000-02-29T23:59:59Z").unwrap();
    assert_eq!(civil_from_days(leap / DAY_MS), (2000, 2, 29));
    assert_eq!(Table::Cdrs.file_name(DAY1 + 23 * HOUR), "cdrs-2026-12-01.csv");
    assert_eq!(Table::QueueLog.file_name(DAY1 + 24 * HOUR), "queue_log-2026-12-02.log");
}

#[test]
fn waits_for_its_interval() {
    let dir = TempDir::new("interval");
    let store = filled(&dir, 3, 0, DAY1, 1_000);
    let mut sweep = Sweep::new(cfg(&dir, 0), 1_000);
    assert_eq!(sweep.wait_ms(1_000), 60_000);
    assert_eq!(sweep.step(&store, 60_999, DAY1 + 10 * HOUR), Step::Idle);
    assert_eq!(store.cdrs(None).unwrap().len(), 3);
    assert_eq!(sweep.step(&store, 61_000, DAY1 + 10 * HOUR), Step::Batch { table: Table::Cdrs, rows: 3 });
    assert_eq!(sweep.wait_ms(61_000), 0, "a running sweep has work at once");
}

#[test]
fn sweeps_in_batches_exporting_to_dated_files_before_deleting() {
    let dir = TempDir::new("batches");
    // 2,500 CDRs and 1,200 lines, one a minute: they span two days.
    let store = filled(&dir, 2_500, 1_200, DAY1, 60_000);
    let mut sweep = Sweep::new(cfg(&dir, 0), 0);
    let wall = DAY1 + 3 * DAY_MS;
    let steps = run(&mut sweep, &store, 60_000, wall);
    let batch = |table, rows| Step::Batch { table, rows };
    assert_eq!(
        steps,
        vec![
            batch(Table::Cdrs, 1000),
            batch(Table::Cdrs, 1000),
            batch(Table::Cdrs, 500),
            batch(Table::QueueLog, 1000),
            batch(Table::QueueLog, 200),
            Step::Done
        ]
    );
    assert!(store.cdrs(None).unwrap().is_empty());
    assert!(store.queue_log(None, usize::MAX).unwrap().is_empty());

    let export = dir.0.join("export");
    let day1 = read(export.join("cdrs-2026-12-01.csv"));
    let day2 = read(export.join("cdrs-2026-12-02.csv"));
    let header = crate::mgmt::client::cdrs_csv(&[]);
    assert!(day1.starts_with(&header) && day2.starts_with(&header));
    assert_eq!(day1.matches(&header).count(), 1, "one header per file");
    // 1,440 minutes in the first day, the rest in the second.
    assert_eq!((day1.lines().count() - 1, day2.lines().count() - 1), (1440, 1060));
    assert!(day1.lines().nth(1).unwrap().starts_with("1-0,sip-0,even,,\"\"\"Bob, Jr\"\" <sip:b@x>\",a,"), "{day1:.400}");
    let q1 = read(export.join("queue_log-2026-12-01.log"));
    assert_eq!(q1.lines().count(), 1_200);
    assert_eq!(q1.lines().next(), Some(format!("{}|sip-0|q|NONE|ENTERQUEUE||sip:c@x|1", DAY1 / 1000).as_str()));

    // The next sweep appends to the same day's file, without a header.
    store.apply_ops(&[StoreOp::Cdr(cdr(9_999, DAY1 + HOUR))]).unwrap();
    assert_eq!(run(&mut sweep, &store, 120_000, wall).first(), Some(&batch(Table::Cdrs, 1)));
    let day1 = read(export.join("cdrs-2026-12-01.csv"));
    assert_eq!(day1.lines().count(), 1442);
    assert!(day1.ends_with("\n") && day1.lines().last().unwrap().starts_with("1-9999,"));
}

#[test]
fn keeps_what_is_younger_than_the_retention() {
    let dir = TempDir::new("younger");
    // One CDR and line an hour for three days.
    let store = filled(&dir, 72, 72, DAY1, HOUR);
    let wall = DAY1 + 3 * DAY_MS;
    let mut sweep = Sweep::new(cfg(&dir, 1), 0);
    assert_eq!(sweep.cutoff_ms(wall), DAY1 + 2 * DAY_MS);
    let steps = run(&mut sweep, &store, 60_000, wall);
    assert_eq!(steps.last(), Some(&Step::Done));
    let left = store.cdrs(None).unwrap();
    assert_eq!(left.len(), 24);
    assert!(left.iter().all(|c| c.ended_ms >= DAY1 + 2 * DAY_MS));
    assert_eq!(store.queue_log(None, usize::MAX).unwrap().len(), 24);
    assert!(!dir.0.join("export/cdrs-2026-12-03.csv").exists());
}

#[test]
fn an_export_error_deletes_nothing_and_is_counted() {
    let dir = TempDir::new("unwritable");
    let store = filled(&dir, 10, 10, DAY1, 1_000);
    // A file where the directory should be: every export fails.
    std::fs::write(dir.0.join("export"), b"in the way").unwrap();
    let errors = COUNTS.of(Table::Cdrs).2;
    let mut sweep = Sweep::new(cfg(&dir, 0), 0);
    let steps = run(&mut sweep, &store, 60_000, DAY1 + DAY_MS);
    assert_eq!(steps, vec![Step::Failed { table: Table::Cdrs }]);
    assert_eq!(store.cdrs(None).unwrap().len(), 10);
    assert_eq!(store.queue_log(None, usize::MAX).unwrap().len(), 10);
    assert!(COUNTS.of(Table::Cdrs).2 > errors);
    // It waits for the next interval rather than retrying at once.
    assert_eq!(sweep.wait_ms(60_000), 60_000);
}

#[test]
fn a_crash_between_export_and_delete_duplicates_and_never_loses() {
    let dir = TempDir::new("crash");
    let store = filled(&dir, 1_500, 0, DAY1, 1_000);
    let mut sweep = Sweep::new(cfg(&dir, 0), 0);
    let wall = DAY1 + DAY_MS;
    // The export reaches the disk, then the delete never commits (what a
    // crash at that point leaves behind).
    let crashed = sweep.step_with(&store, 60_000, wall, |d, t, rows| {
        export(d, t, rows)?;
        Err(SweepError::Export { path: d.to_path_buf(), source: std::io::Error::other("crash") })
    });
    assert_eq!(crashed, Step::Failed { table: Table::Cdrs });
    assert_eq!(store.cdrs(None).unwrap().len(), 1_500, "nothing deleted");
    // The database reopened, as after a restart; the next sweep runs.
    drop(store);
    let store = Store::open(&dir.0.join("state")).unwrap();
    let steps = run(&mut sweep, &store, 120_000, wall);
    assert_eq!(steps.last(), Some(&Step::Done));
    assert!(store.cdrs(None).unwrap().is_empty());
    let file = read(dir.0.join("export/cdrs-2026-12-01.csv"));
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for line in file.lines().skip(1) {
        *seen.entry(line.split(',').next().unwrap()).or_default() += 1;
    }
    assert_eq!(seen.len(), 1_500, "every call is in the file");
    assert!(seen.values().all(|&n| n == 1 || n == 2));
    assert_eq!(seen.values().filter(|&&n| n == 2).count(), 1_000, "the first batch twice");
}

#[test]
fn cdr_pages_are_ranges_with_a_key_cursor() {
    let dir = TempDir::new("pages");
    let store = filled(&dir, 10, 0, DAY1, 1_000);
    let all = |c: &Cdr| -> bool { let _ = c; true };
    let ids = |v: &[Cdr]| v.iter().map(|c| c.sip_call_id.clone()).collect::<Vec<_>>();
    let (p1, next) = store.cdr_page(Some(DAY1 + 2_000), Some(DAY1 + 8_000), None, 4, all).unwrap();
    assert_eq!(ids(&p1), ["sip-2", "sip-3", "sip-4", "sip-5"]);
    let next = next.expect("more follow");
    let round = crate::acd::CdrCursor::from_hex(&next.to_hex()).unwrap();
    assert_eq!(round, next);
    let (p2, next) = store.cdr_page(Some(DAY1 + 2_000), Some(DAY1 + 8_000), Some(round), 4, all).unwrap();
    assert_eq!(ids(&p2), ["sip-6", "sip-7"]);
    assert_eq!(next, None);
    // A full last page says nothing follows.
    let (p, next) = store.cdr_page(None, None, None, 10, all).unwrap();
    assert_eq!((p.len(), next), (10, None));
    // Filters apply before the page is cut.
    let (odd, next) = store.cdr_page(None, None, None, 2, |c| c.queue == "odd").unwrap();
    assert_eq!(ids(&odd), ["sip-1", "sip-3"]);
    let (odd, _) = store.cdr_page(None, None, next, 10, |c| c.queue == "odd").unwrap();
    assert_eq!(ids(&odd), ["sip-5", "sip-7", "sip-9"]);
    for bad in ["", "abc", "zz000000000000000000000000000000", "+0000000000000000000000000000000"] {
        assert_eq!(crate::acd::CdrCursor::from_hex(bad), None, "{bad}");
    }
}

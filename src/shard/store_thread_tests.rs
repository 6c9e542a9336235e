//! The store thread runs the retention sweep between commits.

use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::acd::cdr::{Cdr, Disposition};
use crate::acd::facts::{CallId, RtpCounts};
use crate::acd::retention::{RetentionConfig, Sweep};

fn cdr(n: u64, ended_ms: u64) -> Cdr {
    Cdr {
        call_id: CallId::new(1, n).to_string(),
        sip_call_id: format!("s{n}"),
        queue: "q".into(),
        overflowed_from: None,
        caller: "sip:c@x".into(),
        agent: None,
        arrived_ms: ended_ms,
        answered_ms: None,
        ended_ms,
        wait_s: 0,
        talk_s: 0,
        disposition: Disposition::Abandoned,
        reason: None,
        hangup: None,
        rtp: RtpCounts::default(),
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn commits_and_sweep_batches_take_turns() {
    let dir = TempDir(std::env::temp_dir().join(format!("cc-engine-store-thread-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let store = Store::open(&dir.0.join("state")).unwrap();
    // 5,500 old CDRs: six batches.
    let old: Vec<StoreOp> = (0..5_500).map(|n| StoreOp::Cdr(cdr(n, 1_000_000 + n))).collect();
    store.apply_ops(&old).unwrap();
    let cfg = RetentionConfig { days: 0, sweep_ms: 0, export_dir: dir.0.join("export") };
    let t = StoreThread::spawn(store, Some(Sweep::new(cfg, 0))).unwrap();
    let reader = t.reader().unwrap();
    // Hold the thread in a read while the commits and a count queue up
    // behind it.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    reader.read(Box::new(move |_| drop(go_rx.recv_timeout(Duration::from_secs(10))))).unwrap();
    // Far-future CDRs: never old enough to sweep.
    for seq in 0..3 {
        t.commit(seq, vec![StoreOp::Cdr(cdr(10_000 + seq, u64::MAX / 2 + seq))]).unwrap();
    }
    let (count_tx, count_rx) = mpsc::channel();
    reader.read(Box::new(move |s| drop(count_tx.send(s.cdrs(None).map(|c| c.len()))))).unwrap();
    go_tx.send(()).unwrap();
    for _ in 0..3 {
        let o = futures_lite::future::block_on(t.outcome()).expect("an outcome");
        assert!(o.result.is_ok(), "{:?}", o.result);
    }
    // At most one batch before the held read, one after it and one after
    // each commit: five of six, so the count sees the sweep unfinished.
    let left = count_rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
    assert!(left >= 500 + 3, "the sweep ran ahead of the queued commits: {left} rows left");
    drop(reader);
    t.finish();
    while futures_lite::future::block_on(t.outcome()).is_some() {}
    t.join();
    let store = Store::open(&dir.0.join("state")).unwrap();
    // The commits landed, whatever the sweep had reached when it stopped.
    let future = store.cdrs(None).unwrap().iter().filter(|c| c.ended_ms >= u64::MAX / 2).count();
    assert_eq!(future, 3);
}

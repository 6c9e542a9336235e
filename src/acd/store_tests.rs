//! Store tests in throw-away directories (no tempfile dependency: a tiny RAII dir).

use super::*;
use crate::acd::registrar::{RegisterRequest, Registrar, RegistrarConfig};
use crate::acd::ContactSet;
use crate::sip::auth::NonceKey;

const T0: u64 = 1_700_000_000_000;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("cc-engine-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn binding(agent: &str, contact: &str, expires_at_ms: u64) -> Binding {
    Binding {
        agent: agent.into(),
        contact_uri: contact.into(),
        target: "192.0.2.1:5060".parse().unwrap(),
        received: Some("192.0.2.1:5060".parse().unwrap()),
        expires_at_ms,
        call_id: "cid".into(),
        cseq: 3,
        user_agent: Some("ua".into()),
        registered_at_ms: T0,
        q: Some(0.5),
    }
}

fn sorted(mut v: Vec<Binding>) -> Vec<Binding> {
    v.sort_by_key(Binding::key);
    v
}

#[test]
fn apply_reopen_survives() {
    let dir = TempDir::new("reopen");
    let state = dir.0.join("nested/state"); // created on open
    let a = binding("1001", "sip:1001@192.0.2.1", T0 + 60_000);
    let b = binding("1001", "sip:1001@192.0.2.2", T0 + 60_000);
    let c = binding("1002", "sip:1002@192.0.2.3", T0 + 60_000);
    let secret = {
        let s = Store::open(&state).unwrap();
        assert!(s.path().ends_with(DB_FILE));
        s.apply(&[
            Change::Upsert(a.clone()),
            Change::Upsert(b.clone()),
            Change::Upsert(c.clone()),
        ])
        .unwrap();
        let mut b2 = b.clone();
        b2.cseq = 9;
        s.apply(&[
            Change::Upsert(b2),
            Change::Remove {
                agent: "1002".into(),
                contact: c.contact_uri.clone(),
            },
            Change::Remove {
                agent: "nobody".into(),
                contact: "sip:x".into(),
            }, // absent: no error
        ])
        .unwrap();
        s.apply(&[]).unwrap();
        s.nonce_secret().unwrap()
    };
    let s = Store::open(&state).unwrap();
    let got = sorted(s.load_bindings().unwrap());
    let mut b2 = b;
    b2.cseq = 9;
    assert_eq!(got, vec![a, b2]);
    assert_eq!(
        s.nonce_secret().unwrap(),
        secret,
        "nonce secret must survive restart"
    );
}

#[test]
fn expired_bindings_reaped_after_load() {
    let dir = TempDir::new("reap");
    let live = binding("1001", "sip:1001@192.0.2.1", T0 + 60_000);
    let dead = binding("1001", "sip:1001@192.0.2.2", T0 - 1);
    {
        let s = Store::open(&dir.0).unwrap();
        s.apply(&[Change::Upsert(live.clone()), Change::Upsert(dead.clone())])
            .unwrap();
    }
    let s = Store::open(&dir.0).unwrap();
    let mut reg = Registrar::new(
        RegistrarConfig::new("cc.test"),
        [AgentDef::new("1001", "pw")],
        NonceKey::from_secret(s.nonce_secret().unwrap()),
    );
    let removes = reg.restore(s.load_bindings().unwrap(), T0);
    assert_eq!(
        removes,
        vec![Change::Remove {
            agent: "1001".into(),
            contact: dead.contact_uri
        }]
    );
    s.apply(&removes).unwrap();
    assert_eq!(reg.bindings("1001"), std::slice::from_ref(&live));
    assert_eq!(s.load_bindings().unwrap(), vec![live.clone()]);
    // Time passes; the reaper's changes go to the store too.
    let gone = reg.reap(T0 + 60_000);
    s.apply(&gone).unwrap();
    assert!(s.load_bindings().unwrap().is_empty());
}

#[test]
fn corrupt_record_skipped() {
    let dir = TempDir::new("corrupt");
    let s = Store::open(&dir.0).unwrap();
    let good = binding("1001", "sip:1001@192.0.2.1", T0);
    s.apply(&[Change::Upsert(good.clone())]).unwrap();
    {
        let tx = s.db.begin_write().unwrap();
        tx.open_table(BINDINGS)
            .unwrap()
            .insert("1001\0sip:bad", b"{not json".as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    assert_eq!(s.load_bindings().unwrap(), vec![good]);
}

#[test]
fn schema_too_new_refused() {
    let dir = TempDir::new("schema");
    {
        let s = Store::open(&dir.0).unwrap();
        let tx = s.db.begin_write().unwrap();
        tx.open_table(META)
            .unwrap()
            .insert("schema_version", 99u32.to_le_bytes().as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    match Store::open(&dir.0) {
        Err(StoreError::SchemaTooNew { found: 99, .. }) => {}
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("opened a newer schema"),
    }
}

#[test]
fn errors_name_the_path() {
    let dir = TempDir::new("errpath");
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let e = Store::open(&file.join("sub")).err().expect("must fail");
    assert!(e.to_string().contains("not-a-dir"), "{e}");
    // A garbage database file.
    let bad = dir.0.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join(DB_FILE), vec![0xAB; 4096]).unwrap();
    let e = Store::open(&bad).err().expect("must fail");
    assert!(e.to_string().contains(DB_FILE), "{e}");
}

#[test]
fn report_while_stopped() {
    let dir = TempDir::new("report");
    let agents = [AgentDef::new("1001", "pw"), AgentDef::new("1002", "pw")];
    // No database yet: everyone unregistered.
    let r = agents_report(&dir.0, &agents, T0).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["registered"], false);
    {
        let s = Store::open(&dir.0).unwrap();
        s.apply(&[
            Change::Upsert(binding("1001", "sip:1001@192.0.2.1", T0 + 90_500)),
            Change::Upsert(binding("1002", "sip:1002@192.0.2.1", T0 - 1)), // expired
            Change::Upsert(binding("old", "sip:old@192.0.2.1", T0 + 1000)),
        ])
        .unwrap();
    }
    let r = agents_report(&dir.0, &agents, T0).unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["agent"], "1001");
    assert_eq!(r[0]["registered"], true);
    assert_eq!(r[0]["bindings"][0]["expires_in_s"], 91);
    assert_eq!(r[0]["bindings"][0]["target"], "192.0.2.1:5060");
    assert_eq!(r[1]["registered"], false);
    assert_eq!(r[2]["agent"], "old");
    assert_eq!(r[2]["configured"], false);
    assert!(
        !r.iter().any(|v| v.to_string().contains("\"pw\"")),
        "no passwords in the report"
    );
    // Each value is one JSON line.
    assert!(r.iter().all(|v| !v.to_string().contains('\n')));
}

#[test]
fn report_fails_clearly_while_engine_runs() {
    let dir = TempDir::new("locked");
    let _running = Store::open(&dir.0).unwrap();
    // redb's file lock refuses a reader beside the writer (ExclusiveWriter mode).
    let e =
        agents_report(&dir.0, &[], T0).expect_err("must refuse while the writer holds the file");
    assert!(e.to_string().contains("is the engine running"), "{e}");
}

#[test]
fn group_commit_batches() {
    let dir = TempDir::new("group");
    let s = Store::open(&dir.0).unwrap();
    let mut g = GroupCommit::new(5, 3);
    assert!(!g.due(T0) && g.deadline().is_none());
    g.push(Change::Upsert(binding("1001", "sip:a", T0 + 1000)), T0);
    assert_eq!(g.deadline(), Some(T0 + 5));
    assert!(!g.due(T0 + 4));
    assert!(g.due(T0 + 5), "time bound");
    g.extend(
        [
            Change::Upsert(binding("1001", "sip:b", T0 + 1000)),
            Change::Remove {
                agent: "1001".into(),
                contact: "sip:a".into(),
            },
        ],
        T0 + 1,
    );
    assert!(g.due(T0 + 1), "size bound");
    assert_eq!(g.flush(&s).unwrap(), 3);
    assert!(g.is_empty() && g.deadline().is_none());
    let got = s.load_bindings().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].contact_uri, "sip:b");
}

#[test]
fn registrar_to_store_end_to_end() {
    // Registration via the registrar, persisted, reloaded into a fresh registrar.
    let dir = TempDir::new("e2e");
    let s = Store::open(&dir.0).unwrap();
    let key = NonceKey::from_secret(s.nonce_secret().unwrap());
    let cfg = RegistrarConfig::new("cc.test");
    let mut reg = Registrar::new(cfg.clone(), [AgentDef::new("1001", "pw")], key.clone());
    let mut req = RegisterRequest {
        user: "1001".into(),
        contacts: ContactSet::List(vec![crate::acd::ContactParam {
            uri: "sip:1001@10.0.0.9:5060".into(),
            expires: None,
            q: None,
            ob: false,
        }]),
        expires: Some(600),
        authorizations: vec![],
        method_uri: "sip:cc.test".into(),
        call_id: "c1".into(),
        cseq: 1,
        source: "198.51.100.4:33333".parse().unwrap(),
        user_agent: None,
    };
    let nonce = key.issue("cc.test", T0);
    let mut d = crate::sip::auth::DigestResponse {
        username: "1001".into(),
        realm: "cc.test".into(),
        nonce,
        uri: "sip:cc.test".into(),
        response: String::new(),
        algorithm: crate::sip::auth::Algorithm::Sha256,
        cnonce: Some("x".into()),
        nc: Some("00000001".into()),
        qop: Some("auth".into()),
        opaque: None,
    };
    d.response = crate::sip::auth::compute_response(&d, "REGISTER", "pw");
    req.authorizations
        .push(crate::sip::auth::format_authorization(&d));
    let out = reg.handle_register(&req, T0);
    assert_eq!(out.reply.status(), 200);
    s.apply(&out.changes).unwrap();
    drop(s);

    let s = Store::open(&dir.0).unwrap();
    let mut reg2 = Registrar::new(
        cfg,
        [AgentDef::new("1001", "pw")],
        NonceKey::from_secret(s.nonce_secret().unwrap()),
    );
    assert!(reg2
        .restore(s.load_bindings().unwrap(), T0 + 1000)
        .is_empty());
    assert_eq!(reg2.bindings("1001"), reg.bindings("1001"));
    assert_eq!(
        reg2.bindings("1001")[0].target,
        "198.51.100.4:33333".parse().unwrap()
    );
}

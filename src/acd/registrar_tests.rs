//! Registrar unit tests: every reply and every policy choice in registrar.rs.

use super::*;
use crate::sip::auth::{
    compute_response, format_authorization, parse_authorization, DigestResponse,
};

const REALM: &str = "cc.test";
const T0: u64 = 1_700_000_000_000;

fn registrar() -> Registrar {
    let mut a = AgentDef::new("1001", "secret");
    a.max_calls = 2;
    Registrar::new(
        RegistrarConfig::new(REALM),
        [a, AgentDef::new("1002", "pw2")],
        NonceKey::from_secret([42; 32]),
    )
}

fn src() -> SocketAddr {
    "203.0.113.7:40000".parse().unwrap()
}

fn contact(uri: &str) -> ContactParam {
    ContactParam {
        uri: uri.into(),
        expires: None,
        q: None,
        ob: false,
    }
}

fn request(user: &str, contacts: ContactSet) -> RegisterRequest {
    RegisterRequest {
        user: user.into(),
        contacts,
        expires: None,
        authorizations: Vec::new(),
        method_uri: "sip:cc.test".into(),
        call_id: "call-1".into(),
        cseq: 1,
        source: src(),
        user_agent: Some("test-phone/1.0".into()),
    }
}

fn list(uris: &[&str]) -> ContactSet {
    ContactSet::List(uris.iter().map(|u| contact(u)).collect())
}

/// Extracts the nonce from a challenge value.
fn nonce_of(challenge: &str) -> String {
    let i = challenge.find("nonce=\"").unwrap() + 7;
    let rest = &challenge[i..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn digest(
    req: &RegisterRequest,
    nonce: &str,
    alg: Algorithm,
    username: &str,
    password: &str,
) -> String {
    let mut r = DigestResponse {
        username: username.into(),
        realm: REALM.into(),
        nonce: nonce.into(),
        uri: req.method_uri.clone(),
        response: String::new(),
        algorithm: alg,
        cnonce: Some("c0ffee".into()),
        nc: Some("00000001".into()),
        qop: Some("auth".into()),
        opaque: None,
    };
    r.response = compute_response(&r, "REGISTER", password);
    format_authorization(&r)
}

/// Sends `req` unauthenticated, answers the SHA-256 challenge with the agent's
/// password, and returns the outcome of the authenticated attempt.
fn register(reg: &mut Registrar, mut req: RegisterRequest, now: u64) -> RegisterOutcome {
    req.authorizations.clear();
    let first = reg.handle_register(&req, now);
    let RegisterReply::Challenge { www_authenticate } = first.reply else {
        panic!("expected challenge, got {:?}", first.reply);
    };
    let password = reg.agent(&req.user).unwrap().password.clone();
    req.authorizations = vec![digest(
        &req,
        &nonce_of(&www_authenticate[0]),
        Algorithm::Sha256,
        &req.user,
        &password,
    )];
    reg.handle_register(&req, now)
}

fn ok_contacts(o: &RegisterOutcome) -> Vec<(String, u32)> {
    match &o.reply {
        RegisterReply::Ok { contacts } => contacts.clone(),
        other => panic!("expected 200, got {other:?}"),
    }
}

#[test]
fn challenge_then_ok() {
    let mut reg = registrar();
    let req = request("1001", list(&["sip:1001@203.0.113.7:40000"]));
    let o = reg.handle_register(&req, T0);
    assert_eq!(o.reply.status(), 401);
    assert!(o.changes.is_empty());
    let RegisterReply::Challenge { www_authenticate } = &o.reply else {
        panic!()
    };
    assert_eq!(www_authenticate.len(), 2);
    assert!(www_authenticate[0].contains("algorithm=SHA-256"));
    assert!(www_authenticate[1].contains("algorithm=MD5"));
    assert!(www_authenticate
        .iter()
        .all(|w| w.contains("qop=\"auth\"") && !w.contains("stale")));

    let o = register(&mut reg, req, T0 + 10);
    assert_eq!(
        ok_contacts(&o),
        vec![("sip:1001@203.0.113.7:40000".to_string(), 3600)]
    );
    assert_eq!(o.changes.len(), 1);
    let Change::Upsert(b) = &o.changes[0] else {
        panic!()
    };
    assert_eq!(b.expires_at_ms, T0 + 10 + 3_600_000);
    assert_eq!(b.target, src());
    assert_eq!(b.received, None);
    assert_eq!(b.user_agent.as_deref(), Some("test-phone/1.0"));
    assert_eq!(reg.bindings("1001").len(), 1);
    assert_eq!(reg.next_expiry(), Some(T0 + 10 + 3_600_000));
}

#[test]
fn md5_also_accepted() {
    let mut reg = registrar();
    let mut req = request("1001", list(&["sip:1001@203.0.113.7:40000"]));
    let n = reg.challenge(T0, false);
    req.authorizations = vec![digest(
        &req,
        &nonce_of(&n[1]),
        Algorithm::Md5,
        "1001",
        "secret",
    )];
    assert_eq!(reg.handle_register(&req, T0).reply.status(), 200);
}

#[test]
fn unknown_user_404() {
    let mut reg = registrar();
    let o = reg.handle_register(&request("9999", list(&["sip:x@1.2.3.4"])), T0);
    assert_eq!(o.reply, RegisterReply::NotFound);
    assert_eq!(o.reply.status(), 404);
}

#[test]
fn wrong_password_and_username_403() {
    let mut reg = registrar();
    let mut req = request("1001", list(&["sip:1001@203.0.113.7:40000"]));
    let nonce = nonce_of(&reg.challenge(T0, false)[0]);
    req.authorizations = vec![digest(&req, &nonce, Algorithm::Sha256, "1001", "wrong")];
    let o = reg.handle_register(&req, T0);
    assert_eq!(o.reply.status(), 403);
    assert!(o.changes.is_empty());
    // Valid credentials of agent 1002 used to register as 1001.
    req.authorizations = vec![digest(&req, &nonce, Algorithm::Sha256, "1002", "pw2")];
    assert_eq!(reg.handle_register(&req, T0).reply.status(), 403);
    assert!(reg.bindings("1001").is_empty());
}

#[test]
fn stale_forged_and_foreign_realm() {
    let mut reg = registrar();
    let mut req = request("1001", list(&["sip:1001@203.0.113.7:40000"]));
    let old = nonce_of(&reg.challenge(T0, false)[0]);
    let later = T0 + 300_001;
    // Stale nonce + right password → 401 stale=true.
    req.authorizations = vec![digest(&req, &old, Algorithm::Sha256, "1001", "secret")];
    let RegisterReply::Challenge { www_authenticate } = reg.handle_register(&req, later).reply
    else {
        panic!()
    };
    assert!(www_authenticate.iter().all(|w| w.ends_with("stale=true")));
    // Stale nonce + wrong password → plain 401 (client must re-prompt).
    req.authorizations = vec![digest(&req, &old, Algorithm::Sha256, "1001", "nope")];
    let RegisterReply::Challenge { www_authenticate } = reg.handle_register(&req, later).reply
    else {
        panic!()
    };
    assert!(!www_authenticate[0].contains("stale"));
    // Forged nonce → 401, not 403.
    let forged = format!("{:016x}{}", T0, "0".repeat(64));
    req.authorizations = vec![digest(&req, &forged, Algorithm::Sha256, "1001", "secret")];
    assert_eq!(reg.handle_register(&req, T0).reply.status(), 401);
    // Only credentials for another realm → fresh 401 (policy: not ours = absent).
    let mut other =
        parse_authorization(&digest(&req, &old, Algorithm::Sha256, "1001", "secret")).unwrap();
    other.realm = "elsewhere".into();
    req.authorizations = vec![format_authorization(&other)];
    assert_eq!(reg.handle_register(&req, T0).reply.status(), 401);
    // ...but alongside valid ones for our realm, ours are used.
    req.authorizations
        .push(digest(&req, &old, Algorithm::Sha256, "1001", "secret"));
    assert_eq!(reg.handle_register(&req, T0).reply.status(), 200);
}

#[test]
fn malformed_no_qop_and_uri_mismatch_400() {
    let mut reg = registrar();
    let mut req = request("1001", list(&["sip:1001@203.0.113.7:40000"]));
    req.authorizations = vec!["Digest username=\"1001\", realm=\"cc.test".into()];
    assert_eq!(reg.handle_register(&req, T0).reply.status(), 400);
    let nonce = nonce_of(&reg.challenge(T0, false)[0]);
    // RFC 2069 style (no qop) to our qop challenge.
    let mut r =
        parse_authorization(&digest(&req, &nonce, Algorithm::Md5, "1001", "secret")).unwrap();
    r.qop = None;
    r.nc = None;
    r.cnonce = None;
    r.response = compute_response(&r, "REGISTER", "secret");
    req.authorizations = vec![format_authorization(&r)];
    assert_eq!(
        reg.handle_register(&req, T0).reply,
        RegisterReply::BadRequest("Digest Without qop")
    );
    // Digest computed for another Request-URI.
    req.authorizations = vec![digest(&req, &nonce, Algorithm::Sha256, "1001", "secret")];
    req.method_uri = "sip:other.test".into();
    assert_eq!(
        reg.handle_register(&req, T0).reply,
        RegisterReply::BadRequest("Digest URI Mismatch")
    );
}

#[test]
fn expires_rules() {
    let mut reg = registrar();
    // Too brief → 423, nothing stored.
    let mut req = request("1001", list(&["sip:1001@203.0.113.7:40000"]));
    req.expires = Some(30);
    let o = register(&mut reg, req.clone(), T0);
    assert_eq!(o.reply, RegisterReply::IntervalTooBrief { min_expires: 60 });
    assert_eq!(o.reply.status(), 423);
    assert!(reg.bindings("1001").is_empty());
    // Too long → clamped to max_expires.
    req.expires = Some(86_400);
    assert_eq!(ok_contacts(&register(&mut reg, req.clone(), T0))[0].1, 7200);
    // Per-contact expires overrides the header; different contacts, different expiries.
    let mut c1 = contact("sip:1001@203.0.113.7:40001");
    c1.expires = Some(120);
    req.contacts = ContactSet::List(vec![c1]);
    req.expires = Some(30); // would be too brief, but the contact param wins
    req.cseq = 2;
    let got = ok_contacts(&register(&mut reg, req.clone(), T0));
    assert!(got.contains(&("sip:1001@203.0.113.7:40001".to_string(), 120)));
    assert!(got.contains(&("sip:1001@203.0.113.7:40000".to_string(), 7200)));
}

#[test]
fn refresh_keeps_registered_at() {
    let mut reg = registrar();
    let mut req = request("1001", list(&["sip:1001@203.0.113.7:40000"]));
    register(&mut reg, req.clone(), T0);
    req.cseq = 2;
    let o = register(&mut reg, req, T0 + 1_000_000);
    assert_eq!(ok_contacts(&o).len(), 1);
    let b = &reg.bindings("1001")[0];
    assert_eq!(b.registered_at_ms, T0);
    assert_eq!(b.expires_at_ms, T0 + 1_000_000 + 3_600_000);
    assert_eq!(b.cseq, 2);
    // The old expiry is gone from the reaper queue.
    assert_eq!(reg.next_expiry(), Some(b.expires_at_ms));
    assert!(reg.reap(T0 + 3_600_000).is_empty());
}

#[test]
fn cseq_ordering() {
    let mut reg = registrar();
    let mut req = request("1001", list(&["sip:1001@203.0.113.7:40000"]));
    req.cseq = 5;
    register(&mut reg, req.clone(), T0);
    // Same Call-ID, same or lower CSeq → 500, unchanged.
    for cseq in [5, 4] {
        req.cseq = cseq;
        req.expires = Some(0);
        let o = register(&mut reg, req.clone(), T0 + 1);
        assert_eq!(o.reply, RegisterReply::OutOfOrder);
        assert_eq!(o.reply.status(), 500);
        assert_eq!(reg.bindings("1001").len(), 1);
    }
    // Another Call-ID (UA rebooted) may update with any CSeq.
    req.call_id = "call-2".into();
    req.cseq = 1;
    req.expires = None;
    assert_eq!(register(&mut reg, req.clone(), T0 + 2).reply.status(), 200);
    assert_eq!(reg.bindings("1001")[0].call_id, "call-2");
    // Contact * with an old CSeq for that Call-ID is out of order too.
    req.contacts = ContactSet::Star;
    req.expires = Some(0);
    assert_eq!(
        register(&mut reg, req, T0 + 3).reply,
        RegisterReply::OutOfOrder
    );
}

#[test]
fn expires_zero_removes_one() {
    let mut reg = registrar();
    let mut req = request(
        "1001",
        list(&["sip:1001@203.0.113.7:40000", "sip:1001@203.0.113.7:40001"]),
    );
    register(&mut reg, req.clone(), T0);
    let mut c = contact("sip:1001@203.0.113.7:40000");
    c.expires = Some(0);
    req.contacts = ContactSet::List(vec![c]);
    req.cseq = 2;
    let o = register(&mut reg, req, T0 + 5);
    assert_eq!(
        ok_contacts(&o),
        vec![("sip:1001@203.0.113.7:40001".to_string(), 3600)]
    );
    assert_eq!(
        o.changes,
        vec![Change::Remove {
            agent: "1001".into(),
            contact: "sip:1001@203.0.113.7:40000".into()
        }]
    );
    // Expires header 0 with a bare contact removes that one too.
    let mut req = request("1001", list(&["sip:1001@203.0.113.7:40001"]));
    req.expires = Some(0);
    req.cseq = 3;
    let o = register(&mut reg, req, T0 + 6);
    assert_eq!(ok_contacts(&o), vec![]);
    assert_eq!(reg.next_expiry(), None);
}

#[test]
fn star_unregisters_all() {
    let mut reg = registrar();
    let mut req = request(
        "1001",
        list(&["sip:1001@203.0.113.7:40000", "sip:1001@203.0.113.7:40001"]),
    );
    register(&mut reg, req.clone(), T0);
    req.contacts = ContactSet::Star;
    req.cseq = 2;
    req.expires = Some(3600);
    assert_eq!(register(&mut reg, req.clone(), T0).reply.status(), 400);
    req.expires = None;
    assert_eq!(register(&mut reg, req.clone(), T0).reply.status(), 400);
    assert_eq!(reg.bindings("1001").len(), 2);
    req.expires = Some(0);
    let o = register(&mut reg, req, T0);
    assert_eq!(ok_contacts(&o), vec![]);
    assert_eq!(o.changes.len(), 2);
    assert!(o.changes.iter().all(|c| matches!(c, Change::Remove { .. })));
    assert!(reg.bindings("1001").is_empty());
    assert_eq!(reg.next_expiry(), None);
}

#[test]
fn query_lists_bindings() {
    let mut reg = registrar();
    let req = request("1001", list(&["sip:1001@203.0.113.7:40000"]));
    register(&mut reg, req.clone(), T0);
    let mut q = req;
    q.contacts = ContactSet::None;
    q.cseq = 2;
    let o = register(&mut reg, q, T0 + 600_000);
    assert_eq!(
        ok_contacts(&o),
        vec![("sip:1001@203.0.113.7:40000".to_string(), 3000)]
    );
    assert!(o.changes.is_empty());
}

#[test]
fn max_contacts_replace_oldest() {
    let mut reg = registrar(); // max_contacts = 3
    let mut req = request("1001", list(&[]));
    for (i, port) in [40001, 40002, 40003].into_iter().enumerate() {
        req.contacts = list(&[&format!("sip:1001@203.0.113.7:{port}")]);
        req.cseq = i as u32 + 1;
        register(&mut reg, req.clone(), T0 + i as u64 * 1000);
    }
    req.contacts = list(&["sip:1001@203.0.113.7:40004"]);
    req.cseq = 10;
    let o = register(&mut reg, req.clone(), T0 + 5000);
    let uris: Vec<String> = ok_contacts(&o).into_iter().map(|c| c.0).collect();
    assert_eq!(uris.len(), 3);
    assert!(
        !uris.contains(&"sip:1001@203.0.113.7:40001".to_string()),
        "oldest dropped"
    );
    assert!(o.changes.contains(&Change::Remove {
        agent: "1001".into(),
        contact: "sip:1001@203.0.113.7:40001".into()
    }));
    // One request listing more than max on its own is refused.
    req.contacts = list(&[
        "sip:a@1.1.1.1",
        "sip:b@1.1.1.1",
        "sip:c@1.1.1.1",
        "sip:d@1.1.1.1",
    ]);
    req.cseq = 11;
    let o = register(&mut reg, req, T0 + 6000);
    assert_eq!(o.reply, RegisterReply::TooManyContacts { max: 3 });
    assert_eq!(reg.bindings("1001").len(), 3);
}

#[test]
fn max_contacts_reject_policy() {
    let mut cfg = RegistrarConfig::new(REALM);
    cfg.max_contacts = 1;
    cfg.overflow = OverflowPolicy::Reject;
    let mut reg = Registrar::new(
        cfg,
        [AgentDef::new("1001", "secret")],
        NonceKey::from_secret([1; 32]),
    );
    let mut req = request("1001", list(&["sip:1001@203.0.113.7:40000"]));
    register(&mut reg, req.clone(), T0);
    req.cseq = 2;
    req.contacts = list(&["sip:1001@203.0.113.7:40001"]);
    let o = register(&mut reg, req.clone(), T0);
    assert_eq!(o.reply.status(), 503);
    assert_eq!(o.reply.reason(), "Too Many Registered Contacts");
    // Refreshing the existing one is fine.
    req.contacts = list(&["sip:1001@203.0.113.7:40000"]);
    assert_eq!(register(&mut reg, req, T0).reply.status(), 200);
}

#[test]
fn reaper_uses_time_passed_in() {
    let mut reg = registrar();
    let mut req = request("1001", list(&[]));
    let mut a = contact("sip:1001@203.0.113.7:40001");
    a.expires = Some(60);
    let mut b = contact("sip:1001@203.0.113.7:40002");
    b.expires = Some(120);
    req.contacts = ContactSet::List(vec![a, b]);
    register(&mut reg, req, T0);
    assert_eq!(reg.next_expiry(), Some(T0 + 60_000));
    assert!(reg.reap(T0 + 59_999).is_empty());
    assert_eq!(
        reg.reap(T0 + 60_000),
        vec![Change::Remove {
            agent: "1001".into(),
            contact: "sip:1001@203.0.113.7:40001".into()
        }]
    );
    assert_eq!(reg.next_expiry(), Some(T0 + 120_000));
    assert_eq!(reg.reap(T0 + 999_999).len(), 1);
    assert_eq!(reg.next_expiry(), None);
    assert!(reg.bindings("1001").is_empty());
}

#[test]
fn expired_binding_is_purged_on_next_register() {
    let mut reg = registrar();
    let mut req = request("1001", list(&["sip:1001@203.0.113.7:40000"]));
    req.expires = Some(60);
    register(&mut reg, req.clone(), T0);
    // No reap ran; a query after expiry must not list it, and the store hears of it.
    req.contacts = ContactSet::None;
    req.cseq = 2;
    let o = register(&mut reg, req, T0 + 61_000);
    assert_eq!(ok_contacts(&o), vec![]);
    assert_eq!(o.changes.len(), 1);
    assert_eq!(reg.next_expiry(), None);
}

#[test]
fn nat_source_recorded() {
    let mut reg = registrar();
    let mut req = request("1001", list(&["sip:1001@192.168.1.20:5060;transport=udp"]));
    let o = register(&mut reg, req.clone(), T0);
    let Change::Upsert(b) = &o.changes[0] else {
        panic!()
    };
    assert_eq!((b.target, b.received), (src(), Some(src())));
    // ;ob flag on a public contact also pins the flow.
    let mut c = contact("sip:1001@198.51.100.9:5060");
    c.ob = true;
    req.contacts = ContactSet::List(vec![c]);
    req.cseq = 2;
    register(&mut reg, req, T0);
    let b = reg
        .bindings("1001")
        .iter()
        .find(|b| b.contact_uri.contains("198.51"))
        .unwrap();
    assert_eq!(b.target, src());
}

#[test]
fn bad_contact_uri_400_and_atomic() {
    let mut reg = registrar();
    let req = request("1001", list(&["sip:1001@203.0.113.7:40000", "tel:+123"]));
    let o = register(&mut reg, req, T0);
    assert_eq!(o.reply.status(), 400);
    assert!(o.changes.is_empty());
    assert!(reg.bindings("1001").is_empty());
}

#[test]
fn restore_drops_expired_and_unknown() {
    let mut reg = registrar();
    let o = register(
        &mut reg,
        request("1001", list(&["sip:1001@203.0.113.7:40000"])),
        T0,
    );
    let Change::Upsert(live) = o.changes[0].clone() else {
        panic!()
    };
    let mut expired = live.clone();
    expired.contact_uri = "sip:1001@203.0.113.7:1".into();
    expired.expires_at_ms = T0 + 1;
    let mut stranger = live.clone();
    stranger.agent = "gone".into();

    let mut fresh = registrar();
    let changes = fresh.restore(vec![live.clone(), expired, stranger], T0 + 2);
    assert_eq!(changes.len(), 2);
    assert_eq!(fresh.bindings("1001"), std::slice::from_ref(&live));
    assert_eq!(fresh.next_expiry(), Some(live.expires_at_ms));
    // Nonces issued before the restart still validate (same secret).
    let mut req = request("1001", list(&["sip:1001@203.0.113.7:40000"]));
    req.cseq = 2;
    let nonce = nonce_of(&reg.challenge(T0, false)[0]);
    req.authorizations = vec![digest(&req, &nonce, Algorithm::Sha256, "1001", "secret")];
    assert_eq!(fresh.handle_register(&req, T0 + 3).reply.status(), 200);
}

#[test]
fn garbage_never_panics() {
    let mut reg = registrar();
    let nonce = nonce_of(&reg.challenge(T0, false)[0]);
    let mut req = request(
        "1001",
        list(&["sip:", "sip:@", "sip:[", "sip:a@b:c", "\u{0}"]),
    );
    for h in [
        "",
        "Digest",
        "Digest ,,,",
        "Digest a=\"\\",
        &format!("Digest nonce=\"{nonce}\""),
    ] {
        req.authorizations = vec![h.to_string()];
        let _ = reg.handle_register(&req, T0);
    }
    req.user = String::new();
    assert_eq!(reg.handle_register(&req, T0).reply.status(), 404);
    let _ = reg.handle_register(&req, u64::MAX);
}

#[test]
fn live_bindings_order_and_expiry() {
    let mut reg = registrar();
    let mut req = request("1001", list(&[]));
    let mut a = contact("sip:1001@203.0.113.7:40001");
    a.q = Some(0.5);
    a.expires = Some(60);
    let b = contact("sip:1001@203.0.113.7:40002"); // q absent = 1.0
    let mut c = contact("sip:1001@203.0.113.7:40003");
    c.q = Some(0.9);
    req.contacts = ContactSet::List(vec![a, b, c]);
    register(&mut reg, req, T0);
    let order: Vec<&str> = reg
        .live_bindings("1001", T0)
        .iter()
        .map(|b| b.contact_uri.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "sip:1001@203.0.113.7:40002",
            "sip:1001@203.0.113.7:40003",
            "sip:1001@203.0.113.7:40001"
        ]
    );
    // Expired but not yet reaped: not offered to the call layer.
    assert_eq!(reg.live_bindings("1001", T0 + 60_000).len(), 2);
    assert!(reg.live_bindings("nobody", T0).is_empty());
}

#[test]
fn q_sanitized() {
    let mut reg = registrar();
    let mut a = contact("sip:1001@203.0.113.7:40001");
    a.q = Some(f32::NAN);
    let mut b = contact("sip:1001@203.0.113.7:40002");
    b.q = Some(7.0);
    register(&mut reg, request("1001", ContactSet::List(vec![a, b])), T0);
    let qs: Vec<Option<f32>> = reg.bindings("1001").iter().map(|b| b.q).collect();
    assert_eq!(qs, vec![None, Some(1.0)]);
}

#[test]
fn config_reload_drops_removed_agents() {
    let mut reg = registrar();
    register(
        &mut reg,
        request("1002", list(&["sip:1002@203.0.113.7:40000"])),
        T0,
    );
    register(
        &mut reg,
        request("1001", list(&["sip:1001@203.0.113.7:40000"])),
        T0,
    );
    let changes = reg.set_agents([AgentDef::new("1001", "secret")]);
    assert_eq!(
        changes,
        vec![Change::Remove {
            agent: "1002".into(),
            contact: "sip:1002@203.0.113.7:40000".into()
        }]
    );
    assert!(reg.bindings("1002").is_empty());
    assert_eq!(reg.bindings("1001").len(), 1);
    assert_eq!(
        reg.handle_register(&request("1002", ContactSet::None), T0)
            .reply
            .status(),
        404
    );
    assert_eq!(reg.next_expiry(), Some(T0 + 3_600_000));
}

#[test]
fn huge_contact_list_refused() {
    let mut reg = registrar();
    let uris: Vec<String> = (0..40)
        .map(|i| format!("sip:1001@203.0.113.7:{}", 40000 + i))
        .collect();
    let refs: Vec<&str> = uris.iter().map(String::as_str).collect();
    let o = register(&mut reg, request("1001", list(&refs)), T0);
    assert_eq!(o.reply.status(), 503);
    assert!(reg.bindings("1001").is_empty());
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn contact_strategy() -> impl Strategy<Value = ContactParam> {
        (
            ".{0,40}",
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<f32>()),
            any::<bool>(),
        )
            .prop_map(|(u, expires, q, ob)| ContactParam {
                uri: format!("sip:{u}"),
                expires,
                q,
                ob,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Arbitrary authenticated REGISTERs never panic, and the registrar's
        /// indexes stay consistent: every binding is in the reaper queue once.
        #[test]
        fn authenticated_garbage_never_panics(
            contacts in proptest::collection::vec(contact_strategy(), 0..6),
            expires in proptest::option::of(any::<u32>()),
            star in any::<bool>(),
            cseq in any::<u32>(),
            call_id in "[a-c]{1}",
            port in any::<u16>(),
            now in 0u64..u64::MAX / 2,
            auth_garbage in ".{0,80}",
        ) {
            let mut reg = registrar();
            let mut req = request("1001", if star { ContactSet::Star } else { ContactSet::List(contacts) });
            req.expires = expires;
            req.cseq = cseq;
            req.call_id = call_id;
            req.source = SocketAddr::new("198.51.100.1".parse().unwrap(), port);
            req.authorizations = vec![format!("Digest {auth_garbage}")];
            let _ = reg.handle_register(&req, now);
            let _ = register(&mut reg, req.clone(), now);
            req.cseq = req.cseq.wrapping_add(1);
            let _ = register(&mut reg, req, now.saturating_add(1000));
            let n: usize = reg.all_bindings().count();
            prop_assert_eq!(n, reg.expiries.len());
            prop_assert!(reg.bindings("1001").len() <= reg.config().max_contacts);
            let _ = reg.reap(u64::MAX);
            prop_assert_eq!(reg.all_bindings().count(), 0);
        }
    }
}

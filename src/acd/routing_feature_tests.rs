//! The routing shard's side of feature codes (digest challenge, each code,
//! the reason map, refusals, metrics) and of the `unreachable` status as
//! liveness probes drive it.

use std::path::Path;

use super::*;
use crate::acd::binding::{ContactParam, ContactSet};
use crate::acd::feature::{FeatureReply, FeatureRequest};
use crate::acd::queue_log::QueueEvent;
use crate::acd::registrar::RegisterRequest;
use crate::acd::router::AgentStatus;
use crate::sip::auth::{compute_response, format_authorization, DigestResponse};

const T0: u64 = 1_700_000_000_000;

fn config() -> Config {
    let text = r#"
[engine]
group_commit_ms = 1000

[sip]
listen = "127.0.0.1:5060"
domain = "cc.test"
realm = "cc.test"

[registrar]
keepalive_s = 10
keepalive_failures = 2

[features.pause_reasons]
3 = "lunch"

[[agent]]
id = "a"
password = "pw"
queues = ["q"]

[[agent]]
id = "b"
password = "pw-b"
queues = ["q"]

[[queue]]
name = "q"
"#;
    Config::parse(text, Path::new("test.toml")).unwrap()
}

fn routing() -> Routing {
    let loaded = Loaded { nonce_secret: [7; 32], ..Loaded::default() };
    let mut r = Routing::new(&config(), loaded, T0);
    effects(&mut r);
    r
}

fn effects(r: &mut Routing) -> Vec<Effect> {
    std::iter::from_fn(|| r.poll_effect()).collect()
}

fn src() -> std::net::SocketAddr {
    "127.0.0.1:5070".parse().unwrap()
}

/// The Authorization answering `challenge` as `user` with `password`, for
/// `method` at `uri`.
fn digest(challenge: &str, user: &str, password: &str, method: &str, uri: &str) -> String {
    let i = challenge.find("nonce=\"").unwrap() + 7;
    let nonce = &challenge[i..i + challenge[i..].find('"').unwrap()];
    let alg = if challenge.contains("SHA-256") { Algorithm::Sha256 } else { Algorithm::Md5 };
    let mut d = DigestResponse {
        username: user.into(),
        realm: "cc.test".into(),
        nonce: nonce.into(),
        uri: uri.into(),
        response: String::new(),
        algorithm: alg,
        cnonce: Some("c0ffee".into()),
        nc: Some("00000001".into()),
        qop: Some("auth".into()),
        opaque: None,
    };
    d.response = compute_response(&d, method, password);
    format_authorization(&d)
}

/// Sends one feature request and returns the reply to shard 0.
fn dial(r: &mut Routing, user: &str, code: &str, auth: Option<String>, now: u64) -> FeatureReply {
    let req = FeatureRequest {
        user: user.into(),
        code: code.into(),
        request_uri: format!("sip:{code}@cc.test"),
        authorizations: auth.into_iter().collect(),
        source: src(),
    };
    r.handle(Input::Shard(ToRouting::Feature { shard: 0, tx: 9, req }), now);
    let mut replies: Vec<FeatureReply> = effects(r)
        .into_iter()
        .filter_map(|e| match e {
            Effect::ToShard(0, FromRouting::FeatureReply { tx: 9, reply }) => Some(reply),
            _ => None,
        })
        .collect();
    assert_eq!(replies.len(), 1, "{replies:?}");
    replies.remove(0)
}

/// Dials `code` as `user`: first without credentials (401), then with the
/// answer to that challenge using `password`.
fn dial_authed(r: &mut Routing, user: &str, password: &str, code: &str, now: u64) -> FeatureReply {
    let FeatureReply::Challenge { www_authenticate } = dial(r, user, code, None, now) else {
        panic!("no challenge");
    };
    let auth = digest(&www_authenticate[0], user, password, "INVITE", &format!("sip:{code}@cc.test"));
    dial(r, user, code, Some(auth), now + 1)
}

fn status(r: &Routing, agent: &str, now: u64) -> (AgentStatus, Option<String>) {
    let snap = r.snapshot(now);
    let a = snap.agents.iter().find(|a| a.id == agent).unwrap();
    let v = serde_json::to_value(a).unwrap();
    (a.status, v["paused_reason"].as_str().map(str::to_owned))
}

fn pending_qlog(r: &mut Routing, now: u64) -> Vec<(QueueEvent, String)> {
    r.handle(Input::Shutdown, now);
    effects(r)
        .into_iter()
        .flat_map(|e| match e {
            Effect::Commit { ops, .. } => ops,
            _ => Vec::new(),
        })
        .filter_map(|o| match o {
            StoreOp::QueueLog(l) => Some((l.event, l.data.join("|"))),
            _ => None,
        })
        .collect()
}

#[test]
fn a_feature_code_without_credentials_is_challenged_like_register() {
    let mut r = routing();
    let FeatureReply::Challenge { www_authenticate } = dial(&mut r, "a", "*55", None, T0) else { panic!() };
    assert!(www_authenticate.iter().all(|c| c.contains("realm=\"cc.test\"") && c.contains("qop=\"auth\"")));
    // Nothing about the code before the digest: an unknown code is challenged too.
    assert!(matches!(dial(&mut r, "a", "*99", None, T0), FeatureReply::Challenge { .. }));
    assert_eq!(status(&r, "a", T0).0, AgentStatus::Offline);
}

#[test]
fn pause_with_a_mapped_reason_then_unpause() {
    let mut r = routing();
    assert_eq!(dial_authed(&mut r, "a", "pw", "*55*3", T0), FeatureReply::Done { action: "pause" });
    assert_eq!(status(&r, "a", T0 + 1), (AgentStatus::Paused, Some("lunch".into())));
    assert_eq!(dial_authed(&mut r, "a", "pw", "*56", T0 + 2), FeatureReply::Done { action: "unpause" });
    assert_eq!(status(&r, "a", T0 + 3).0, AgentStatus::Offline, "not registered: offline, not paused");
    // An unmapped reason code is recorded as dialled.
    assert_eq!(dial_authed(&mut r, "a", "pw", "*55*7", T0 + 4), FeatureReply::Done { action: "pause" });
    assert_eq!(status(&r, "a", T0 + 5).1.as_deref(), Some("7"));
    let log = pending_qlog(&mut r, T0 + 6);
    assert_eq!(
        log,
        vec![(QueueEvent::Pause, "lunch".into()), (QueueEvent::Unpause, "lunch".into()), (QueueEvent::Pause, "7".into())]
    );
}

#[test]
fn logout_and_login_by_code_and_refusals_when_already_there() {
    let mut r = routing();
    assert_eq!(dial_authed(&mut r, "a", "pw", "*56", T0), FeatureReply::Refused("Not Paused".into()));
    assert_eq!(dial_authed(&mut r, "a", "pw", "*57", T0), FeatureReply::Refused("Already Logged In".into()));
    assert_eq!(dial_authed(&mut r, "a", "pw", "*58", T0), FeatureReply::Done { action: "logout" });
    assert_eq!(status(&r, "a", T0 + 2).0, AgentStatus::LoggedOut);
    assert_eq!(dial_authed(&mut r, "a", "pw", "*58*2", T0 + 2), FeatureReply::Refused("Already Logged Out".into()));
    assert_eq!(dial_authed(&mut r, "a", "pw", "*57", T0 + 3), FeatureReply::Done { action: "login" });
    let log = pending_qlog(&mut r, T0 + 5);
    let events: Vec<QueueEvent> = log.into_iter().map(|(e, _)| e).collect();
    assert_eq!(events, vec![QueueEvent::AgentLogoff, QueueEvent::AgentLogin]);
}

#[test]
fn wrong_password_other_agents_digest_and_unknown_codes_are_refused() {
    let mut r = routing();
    assert_eq!(dial_authed(&mut r, "a", "nope", "*55", T0), FeatureReply::Forbidden("wrong credentials"));
    // b's valid credentials do not pause a.
    let FeatureReply::Challenge { www_authenticate } = dial(&mut r, "a", "*55", None, T0) else { panic!() };
    let auth = digest(&www_authenticate[0], "b", "pw-b", "INVITE", "sip:*55@cc.test");
    assert!(matches!(dial(&mut r, "a", "*55", Some(auth), T0), FeatureReply::Forbidden(_)));
    // A digest computed for REGISTER does not pass for the INVITE.
    let auth = digest(&www_authenticate[0], "a", "pw", "REGISTER", "sip:*55@cc.test");
    assert!(matches!(dial(&mut r, "a", "*55", Some(auth), T0), FeatureReply::Forbidden(_)));
    assert!(matches!(dial(&mut r, "nobody", "*55", None, T0), FeatureReply::Forbidden(_)));
    assert_eq!(dial_authed(&mut r, "a", "pw", "*99", T0), FeatureReply::UnknownCode);
    assert!(matches!(dial_authed(&mut r, "a", "pw", "*55*", T0), FeatureReply::BadRequest(_)));
    assert_ne!(status(&r, "a", T0).0, AgentStatus::Paused);
    let (samples, _) = r.samples(T0);
    let n = |labels: &str| {
        samples.iter().find(|s| s.name == "cc_feature_codes_total" && s.labels == labels).map(|s| s.value)
    };
    assert_eq!(n("action=\"unknown\",result=\"forbidden\""), Some(4));
    assert_eq!(n("action=\"unknown\",result=\"unknown\""), Some(1));
    assert!(n("action=\"unknown\",result=\"challenged\"").is_some_and(|c| c >= 3));
}

#[test]
fn codes_follow_a_reload() {
    let mut r = routing();
    let mut cfg = config();
    cfg.features.pause = "#21".into();
    let reload = crate::config::Reload { config: cfg, needs_restart: Vec::new() };
    r.handle(Input::Command { id: 1, cmd: Command::Reload(crate::acd::command::NewConfig(std::sync::Arc::new(reload))) }, T0);
    effects(&mut r);
    assert_eq!(dial_authed(&mut r, "a", "pw", "*55", T0), FeatureReply::UnknownCode);
    assert_eq!(dial_authed(&mut r, "a", "pw", "#21*3", T0), FeatureReply::Done { action: "pause" });
}

fn register_a(r: &mut Routing, now: u64) {
    let req = |auth: Option<String>| RegisterRequest {
        user: "a".into(),
        contacts: ContactSet::List(vec![ContactParam { uri: "sip:a@127.0.0.1:5070".into(), expires: None, q: None, ob: false }]),
        expires: Some(600),
        authorizations: auth.into_iter().collect(),
        method_uri: "sip:cc.test".into(),
        call_id: "reg-1".into(),
        cseq: now as u32,
        source: src(),
        user_agent: None,
    };
    r.handle(Input::Shard(ToRouting::Register { shard: 0, tx: 1, req: req(None) }), now);
    let challenge = effects(r)
        .into_iter()
        .find_map(|e| match e {
            Effect::ToShard(_, FromRouting::RegisterReply { reply: RegisterReply::Challenge { www_authenticate }, .. }) => {
                Some(www_authenticate[0].clone())
            }
            _ => None,
        })
        .unwrap();
    let auth = digest(&challenge, "a", "pw", "REGISTER", "sip:cc.test");
    r.handle(Input::Shard(ToRouting::Register { shard: 0, tx: 2, req: req(Some(auth)) }), now);
    assert!(effects(r).iter().any(|e| matches!(e,
        Effect::ToShard(_, FromRouting::RegisterReply { reply: RegisterReply::Ok { .. }, .. }))));
}

/// Runs one liveness round at `now` and answers every probe with `ok`.
fn probe_round(r: &mut Routing, now: u64, ok: bool) -> usize {
    r.handle(Input::Timer, now);
    let probes: Vec<u64> = effects(r)
        .into_iter()
        .filter_map(|e| match e {
            Effect::ToShard(_, FromRouting::Probe { probe, .. }) => Some(probe),
            _ => None,
        })
        .collect();
    for &probe in &probes {
        r.handle(Input::Shard(ToRouting::ProbeResult { probe, ok }), now);
    }
    probes.len()
}

#[test]
fn a_contact_that_stops_answering_makes_the_agent_unreachable_until_it_answers() {
    let mut r = routing();
    r.keep_events();
    register_a(&mut r, T0);
    assert_eq!(status(&r, "a", T0).0, AgentStatus::Available);
    let mut t = T0;
    for _ in 0..2 {
        t += 10_000;
        assert_eq!(probe_round(&mut r, t, false), 1);
    }
    assert_eq!(status(&r, "a", t).0, AgentStatus::Unreachable);
    assert_eq!(r.agents_lines()[0]["reachable"], serde_json::json!(false));
    t += 10_000;
    probe_round(&mut r, t, true);
    assert_eq!(status(&r, "a", t).0, AgentStatus::Available);
    let flips: Vec<bool> = std::iter::from_fn(|| r.poll_event())
        .filter_map(|e| match e {
            RouterEvent::AgentReachability { reachable, .. } => Some(reachable),
            _ => None,
        })
        .collect();
    assert_eq!(flips, vec![false, true]);
    // Unreachable again, then a fresh REGISTER brings it back too.
    for _ in 0..2 {
        t += 10_000;
        probe_round(&mut r, t, false);
    }
    assert_eq!(status(&r, "a", t).0, AgentStatus::Unreachable);
    register_a(&mut r, t + 1);
    assert_eq!(status(&r, "a", t + 1).0, AgentStatus::Available);
}

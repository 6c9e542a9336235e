//! End-to-end: shard affinity with `--shards 2`. The kernel spreads source
//! addresses over the shards (SO_REUSEPORT); our To-tags name their owner
//! (`cc<shard>-<hex>`), so an in-dialog request that lands on the wrong shard
//! must be forwarded over the mesh to the owner, which answers. Here no such
//! dialog exists, so every BYE must get exactly one 481, whichever shard the
//! kernel picked, and cc_sip_forwarded_total must rise.

mod common;
use common::*;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const N: usize = 200;

#[test]
fn in_dialog_byes_reach_the_owning_shard_and_get_481() {
    let e = Engine::start_with(EngineOpts {
        shards: Some(2),
        ..Default::default()
    });
    let fwd_before = e.metrics().sum("cc_sip_forwarded_total");

    // Fire all BYEs first (each from its own fresh source port), then collect.
    let mut socks = Vec::with_capacity(N);
    for i in 0..N {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tag = format!("cc{}-{:08x}", i % 2, 0xa5a5_0000u32 + i as u32);
        let req = Req::new("BYE", "sip:alice@127.0.0.1")
            .to("alice")
            .with_to_tag(&tag)
            .cseq(2)
            .call_id(&format!("affinity-{i}-{}@e2e", token()));
        let id = req.call_id.clone();
        sock.send_to(req.build(&sock).as_bytes(), e.sip_addr())
            .unwrap();
        socks.push((sock, id, tag));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut missing = vec![];
    let mut wrong = vec![];
    for (sock, id, tag) in &socks {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(300));
        // one retransmission per RFC timer E spirit if the first got lost
        let mut r = recv_final(sock, left.min(Duration::from_secs(2)));
        if r.is_none() {
            let req = Req::new("BYE", "sip:alice@127.0.0.1")
                .to("alice")
                .with_to_tag(tag)
                .cseq(2)
                .call_id(id);
            sock.send_to(req.build(sock).as_bytes(), e.sip_addr())
                .unwrap();
            r = recv_final(sock, Duration::from_secs(2));
        }
        match r {
            None => missing.push(tag.clone()),
            Some(m) => {
                if m.status() != Some(481) || m.call_id().as_deref() != Some(id.as_str()) {
                    wrong.push(format!("{tag}: {}", m.first_line()));
                }
                // exactly one answer: nothing else may follow
                let extra = recv_all(sock, Duration::from_millis(5));
                if extra.iter().any(|d| {
                    Msg::parse(d)
                        .and_then(|m| m.status())
                        .map(|s| s >= 200)
                        .unwrap_or(false)
                }) {
                    wrong.push(format!("{tag}: more than one final answer"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {N} BYEs got no answer, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        wrong.is_empty(),
        "{} wrong answers: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );

    let fwd = poll(Duration::from_secs(3), || {
        let v = e.metrics().sum("cc_sip_forwarded_total");
        (v > fwd_before).then_some(v)
    });
    let m = e.metrics();
    assert!(
        fwd.is_some(),
        "cc_sip_forwarded_total did not rise over {N} BYEs from {N} source ports to 2 shards:\n{}",
        m.0.lines()
            .filter(|l| l.contains("forwarded"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (r481, _) = e.wait_metric("cc_sip_responses_total", &[("code", "481")], N as f64);
    let r481 = r481.unwrap_or(0.0);
    assert!(
        r481 >= N as f64,
        "cc_sip_responses_total{{code=\"481\"}} = {r481}, expected >= {N}"
    );
    eprintln!("forwarded between shards: {}", fwd.unwrap() - fwd_before);
}

/// 50 OPTIONS from fresh ports: all answered, and the To-tags of the answers
/// (`cc<shard>-<hex>`) show that both shards answered some (the kernel's
/// SO_REUSEPORT hash spreads source ports; all 50 on one shard has odds 2^-49).
#[test]
fn two_shards_both_answer_options_from_many_ports() {
    let e = Engine::start_with(EngineOpts {
        shards: Some(2),
        ..Default::default()
    });
    let mut fails = 0;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..50 {
        match e.request(Req::new(
            "OPTIONS",
            &format!("sip:127.0.0.1:{}", e.sip_port),
        )) {
            Some(m) if m.status() == Some(200) => {
                let to = m.header("To").unwrap_or_default();
                let tag = to
                    .split(";tag=")
                    .nth(1)
                    .unwrap_or("")
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .to_string();
                let (shard, hex) = tag
                    .strip_prefix("cc")
                    .and_then(|t| t.split_once('-'))
                    .unwrap_or(("?", ""));
                assert!(
                    shard.parse::<u32>().is_ok()
                        && !hex.is_empty()
                        && hex.chars().all(|c| c.is_ascii_hexdigit()),
                    "To-tag should look like cc<shard>-<hex>: {tag:?}"
                );
                *seen.entry(shard.to_string()).or_insert(0) += 1;
            }
            _ => fails += 1,
        }
    }
    assert_eq!(
        fails, 0,
        "{fails} of 50 OPTIONS from fresh ports unanswered"
    );
    assert!(
        seen.contains_key("0") && seen.contains_key("1"),
        "answers by shard: {seen:?}"
    );
}

//! End-to-end call with a real softphone as the agent:
//! baresip registers as alice and auto-answers (account `answermode=auto`),
//! speaking a generated WAV (aufile source) with no sound device; a SIPp
//! customer calls `support` and plays PCMA RTP (sipp/customer_rtp.xml,
//! /usr/share/sip-tester/g711a.pcap) for a few seconds. The call must be
//! answered by baresip and RTP must cross the relay both ways: the CDR's
//! `rtp.caller_to_agent` and `rtp.agent_to_caller` are both > 0.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// 8 kHz mono 16-bit PCM WAV with a 440 Hz tone, `secs` long.
fn tone_wav(path: &std::path::Path, secs: u32) {
    let n = 8000 * secs;
    let mut b = Vec::with_capacity(44 + 2 * n as usize);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&8000u32.to_le_bytes());
    b.extend_from_slice(&16000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(2 * n).to_le_bytes());
    for i in 0..n {
        let v = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin()) as i16;
        b.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn baresip_agent_answers_and_rtp_flows_both_ways() {
    require_tool("baresip");
    require_tool("sipp");
    assert!(
        std::path::Path::new("/usr/share/sip-tester/g711a.pcap").is_file(),
        "sipp/customer_rtp.xml plays /usr/share/sip-tester/g711a.pcap (Debian sip-tester)"
    );
    let (mut e, _cfgdir) = start_calls_engine(
        r#"
[[queue]]
name = "support"
ring_timeout_s = 10
wrap_up_s = 0

[[agent]]
id = "alice"
password = "alice-pass"
queues = ["support"]
"#,
    );

    // baresip as alice
    let dir = TempDir::new("baresip");
    let fx = repo().join("tests/fixtures/baresip");
    let wav = dir.path().join("agent.wav");
    tone_wav(&wav, 30);
    let rtp = free_udp_ports(1)[0].max(1024) & !1;
    // baresip listens on TCP too: the port must be free on both.
    let bport = free_port();
    let conf = std::fs::read_to_string(fx.join("config_call.template"))
        .unwrap()
        .replace("@SIP_LISTEN@", &format!("127.0.0.1:{bport}"))
        .replace("@WAV_IN@", &wav.to_string_lossy())
        .replace("@RTP_MIN@", &rtp.to_string())
        .replace("@RTP_MAX@", &(rtp + 9).to_string());
    let acc = std::fs::read_to_string(fx.join("accounts_call.template"))
        .unwrap()
        .replace("@USER@", "alice")
        .replace("@PASS@", "alice-pass")
        .replace("@ENGINE_PORT@", &e.sip_port.to_string())
        .replace("@REGINT@", "600");
    std::fs::write(dir.path().join("config"), conf).unwrap();
    std::fs::write(dir.path().join("accounts"), acc).unwrap();
    let log = dir.path().join("baresip.log");
    let logf = std::fs::File::create(&log).unwrap();
    // -t: baresip quits by itself after 60 s whatever happens; -s: SIP trace.
    let child = Command::new("baresip")
        .arg("-f")
        .arg(dir.path())
        .args(["-s", "-v", "-t", "60"])
        .stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .expect("spawn baresip");
    let _guard = Guard(Some(child));
    let blog = || {
        let t = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
        format!("--- baresip log (tail) ---\n{}", tail(&t, 6000))
    };

    let registered = poll(Duration::from_secs(10), || {
        (!bindings_of(&e.agents(), "alice").is_empty()).then_some(())
    });
    assert!(registered.is_some(), "baresip did not register as alice\n{}\n{}", blog(), e.log_tail(3000));

    // The customer plays ~10 s of PCMA (the pcap) and hangs up after 5 s.
    let run = sipp_on(
        &e,
        "customer_rtp.xml",
        free_udp_port(),
        &["-s", "support", "-m", "1", "-d", "5000"],
        Duration::from_secs(30),
    );
    assert!(run.ok(), "customer call failed\n{}\n{}\n{}", run.describe(), blog(), e.log_tail(4000));
    if let Err(q) = e.wait_no_calls(Duration::from_secs(10)) {
        panic!("call still live after the customer hung up: {q}\n{}\n{}", blog(), e.log_tail(4000));
    }
    let cdrs = e.stop_and_cdrs();
    let ctx = || format!("{}\n{}\n{}\n{}", show_cdrs(&cdrs), run.describe(), blog(), e.log_tail(4000));
    assert_eq!(cdrs.len(), 1, "{}", ctx());
    let c = &cdrs[0];
    assert_eq!(c["disposition"], "answered", "{}", ctx());
    assert_eq!(c["agent"], "alice", "{}", ctx());
    assert_eq!(c["hangup"], "caller", "{}", ctx());
    let c2a = c["rtp"]["caller_to_agent"].as_u64().unwrap_or(0);
    let a2c = c["rtp"]["agent_to_caller"].as_u64().unwrap_or(0);
    assert!(c2a > 0, "no RTP relayed customer -> baresip\n{}", ctx());
    assert!(a2c > 0, "no RTP relayed baresip -> customer\n{}", ctx());
    eprintln!("rtp: caller_to_agent {c2a}, agent_to_caller {a2c}");
}

//! Hold audio: G.711 against the formula, WAV loading, playout cadence and
//! continuity (sans-IO over a simulated 10-minute call), and playout through
//! the real relay.

mod media_common;
use media_common::*;

use std::time::{Duration, Instant};

use cc_engine::media::g711::{self, Law};
use cc_engine::media::playout::{HoldAudio, Playout, PTIME};
use cc_engine::media::{wav, RelayLegConfig};

/// µ-law from the G.711 definition: |x| (14-bit) + 33 bias, segment =
/// position of the leading one above bit 5, 4 mantissa bits below it, code
/// inverted, sign bit set for positive.
fn ulaw_ref(x: i16) -> u8 {
    let v = (x as i32) >> 2;
    let (sign, mag) = if v < 0 { (0x80u8, -v) } else { (0x00u8, v) };
    let biased = mag.min(8159) + 33; // 33..8192
    if biased >= 8192 {
        return !(sign | 0x7F); // top of segment 7: the largest code
    }
    let seg = ((31 - (biased as u32).leading_zeros()) as i32 - 5).clamp(0, 7); // floor(log2) - 5
    let mant = (biased >> (seg + 1)) & 0xF;
    !(sign | ((seg as u8) << 4) | mant as u8)
}

/// A-law from the definition: 13-bit magnitude, segment 0 and 1 linear with
/// step 2, then log segments; even bits inverted (XOR 0x55), sign bit set
/// for positive.
fn alaw_ref(x: i16) -> u8 {
    let v = (x as i32) >> 3;
    let (sign, mag) = if v >= 0 { (0x80u8, v) } else { (0x00u8, -v - 1) };
    let code = if mag < 32 {
        (mag >> 1) as u8
    } else {
        let seg = ((31 - (mag as u32).leading_zeros()) as i32 - 4).min(7);
        if mag > 0xFFF {
            0x7F
        } else {
            ((seg as u8) << 4) | ((mag >> seg) & 0xF) as u8
        }
    };
    (sign | code) ^ 0x55
}

/// Decoded value from the formula: µ-law y = ((2m + 33) · 2^e − 33) · 4.
fn ulaw_decode_ref(c: u8) -> i32 {
    let c = !c;
    let e = ((c >> 4) & 7) as i32;
    let m = (c & 0xF) as i32;
    let y = (((2 * m + 33) << e) - 33) * 4;
    if c & 0x80 != 0 {
        -y
    } else {
        y
    }
}

/// A-law: y = (2m + 1) · 8 for e = 0, (2m + 33) · 2^(e−1) · 8 otherwise.
fn alaw_decode_ref(c: u8) -> i32 {
    let c = c ^ 0x55;
    let e = ((c >> 4) & 7) as i32;
    let m = (c & 0xF) as i32;
    let y = if e == 0 { (2 * m + 1) * 8 } else { ((2 * m + 33) << (e - 1)) * 8 };
    if c & 0x80 != 0 {
        y
    } else {
        -y
    }
}

#[test]
fn ulaw_matches_formula_for_every_sample() {
    for x in i16::MIN..=i16::MAX {
        assert_eq!(g711::linear_to_ulaw(x), ulaw_ref(x), "x={x}");
    }
    for c in 0..=255u8 {
        assert_eq!(g711::ulaw_to_linear(c) as i32, ulaw_decode_ref(c), "code {c:#x}");
    }
    // well-known points
    assert_eq!(g711::linear_to_ulaw(0), 0xFF);
    assert_eq!(g711::linear_to_ulaw(i16::MAX), 0x80);
    assert_eq!(g711::linear_to_ulaw(i16::MIN), 0x00);
    assert_eq!(g711::ulaw_to_linear(0x80), 32124);
    // quantisation error within half a step of the segment
    for x in (-32000i32..32000).step_by(7) {
        let y = g711::ulaw_to_linear(g711::linear_to_ulaw(x as i16)) as i32;
        let step = 8 << (((!g711::linear_to_ulaw(x as i16)) >> 4) & 7);
        assert!((y - x).abs() <= step, "x={x} y={y} step={step}");
    }
}

#[test]
fn alaw_matches_formula_for_every_sample() {
    for x in i16::MIN..=i16::MAX {
        assert_eq!(g711::linear_to_alaw(x), alaw_ref(x), "x={x}");
    }
    for c in 0..=255u8 {
        assert_eq!(g711::alaw_to_linear(c) as i32, alaw_decode_ref(c), "code {c:#x}");
    }
    assert_eq!(g711::linear_to_alaw(0), 0xD5);
    assert_eq!(g711::linear_to_alaw(-1), 0x55);
    assert_eq!(g711::alaw_to_linear(0xD5), 8);
    for c in 0..=255u8 {
        // decode → encode is the identity on codes
        assert_eq!(g711::linear_to_alaw(g711::alaw_to_linear(c)), c);
    }
}

#[test]
fn wav_loading_and_clear_errors() {
    let pcm = wav::default_hold_pcm();
    assert_eq!(pcm.len(), 32000);
    let bytes = wav::to_wav_bytes(&pcm);
    assert_eq!(wav::parse(&bytes, "x.wav").unwrap(), pcm);
    // wrong rate
    let mut b = bytes.clone();
    b[24..28].copy_from_slice(&16000u32.to_le_bytes());
    let e = wav::parse(&b, "music.wav").unwrap_err().to_string();
    assert!(e.contains("music.wav") && e.contains("16000 Hz") && e.contains("need 8000 Hz mono 16-bit PCM"), "{e}");
    // stereo
    let mut b = bytes.clone();
    b[22..24].copy_from_slice(&2u16.to_le_bytes());
    assert!(wav::parse(&b, "s.wav").unwrap_err().to_string().contains("2 channel(s)"));
    // 8-bit
    let mut b = bytes.clone();
    b[34..36].copy_from_slice(&8u16.to_le_bytes());
    assert!(wav::parse(&b, "s.wav").unwrap_err().to_string().contains("8 bits"));
    // not a WAV at all, truncated, missing file
    assert!(wav::parse(b"ID3\x03 mp3 data", "a.mp3").unwrap_err().to_string().contains("not a RIFF/WAVE"));
    for n in 0..60 {
        let _ = wav::parse(&bytes[..n.min(bytes.len())], "t.wav"); // never panics
    }
    assert!(wav::load(std::path::Path::new("/nonexistent/hold.wav")).unwrap_err().to_string().contains("/nonexistent/hold.wav"));
}

/// The shipped default file is generated by the project (this helper) and
/// must match the generator.
#[test]
fn default_hold_file_is_generated() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/media/assets/hold-default.wav");
    let want = wav::to_wav_bytes(&wav::default_hold_pcm());
    if std::fs::read(&path).ok().as_deref() != Some(&want[..]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
    }
    let pcm = wav::load(&path).unwrap();
    assert_eq!(pcm, wav::default_hold_pcm());
    // soft: peak well below full scale
    assert!(pcm.iter().map(|s| s.unsigned_abs()).max().unwrap() < 8000);
}

#[test]
fn playout_ten_minutes_no_drift() {
    let audio = HoldAudio::new(Law::Ulaw, &wav::default_hold_pcm());
    let t0 = Instant::now();
    let mut p = Playout::new(audio.clone(), 0, 0x1234, 65000, u32::MAX - 1000, t0);
    let mut buf = [0u8; 200];
    let mut now = t0;
    let mut last: Option<(u16, u32)> = None;
    let mut packets = 0u64;
    let mut jitter = 1u64;
    // poll at irregular moments (0.3–13 ms apart) for 10 minutes
    let end = t0 + Duration::from_secs(600);
    while now < end {
        while let Some(n) = p.poll(now, &mut buf) {
            assert_eq!(n, 172);
            let seq = u16::from_be_bytes([buf[2], buf[3]]);
            let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
            assert_eq!(buf[0], 0x80);
            assert_eq!(buf[1] & 0x7f, 0);
            assert_eq!(buf[1] & 0x80 != 0, last.is_none(), "marker only on the first packet");
            assert_eq!(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]), 0x1234);
            if let Some((ls, lt)) = last {
                assert_eq!(seq, ls.wrapping_add(1), "sequence continuous (wraps)");
                assert_eq!(ts, lt.wrapping_add(160), "timestamp continuous (wraps)");
            }
            // payload is the encoded file, in order
            let off = (packets as usize * 160) % audio.samples.len();
            assert_eq!(buf[12], audio.samples[off]);
            last = Some((seq, ts));
            packets += 1;
        }
        jitter = jitter.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        now += Duration::from_micros(300 + (jitter >> 33) % 12_700);
    }
    // frame n is due at t0 + n·20 ms: exactly 30,000 frames in 600 s (+1 for frame 0)
    let expected = (now - t0).as_nanos() / PTIME.as_nanos() + 1;
    assert!(packets as u128 == expected || packets as u128 + 1 == expected, "{packets} vs {expected}");
    assert!(packets >= 30_000);
    assert_eq!(p.skipped, 0);
}

#[test]
fn playout_cadence_and_stall_catch_up() {
    let audio = HoldAudio::new(Law::Alaw, &[0i16; 160]);
    let t0 = Instant::now();
    let mut p = Playout::new(audio, 8, 1, 0, 0, t0);
    let mut buf = [0u8; 172];
    assert!(p.poll(t0, &mut buf).is_some(), "first frame immediately");
    assert_eq!(buf[1], 0x80 | 8);
    assert_eq!(buf[12], 0xD5, "A-law silence");
    assert!(p.poll(t0 + Duration::from_millis(19), &mut buf).is_none(), "not before 20 ms");
    assert!(p.poll(t0 + Duration::from_millis(20), &mut buf).is_some());
    assert!(p.poll(t0 + Duration::from_millis(20), &mut buf).is_none());
    // a 1 s stall: at most MAX_CATCH_UP + 1 frames back to back, seq continuous,
    // timestamp follows wall-clock time
    let late = t0 + Duration::from_millis(1040);
    let mut burst = 0;
    let mut last_ts = 160;
    let mut last_seq = 1u16;
    while p.poll(late, &mut buf).is_some() {
        burst += 1;
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        assert_eq!(seq, last_seq + 1);
        last_seq = seq;
        last_ts = ts;
    }
    assert!(burst <= 6, "{burst}");
    assert_eq!(last_ts, 52 * 160, "timestamp of the frame due at 1040 ms");
    assert_eq!(buf[1] & 0x80, 0, "no marker after the start");
}

#[test]
fn hold_through_relay_cadence_and_continuity() {
    let mut h = relay(28200, 4);
    let a = client();
    let la = h.open_leg(RelayLegConfig::peer(addr(&a)), Instant::now()).unwrap();
    h.start_hold(la.id, HoldAudio::new(Law::Alaw, &wav::default_hold_pcm()), 8);
    let mut first: Option<Instant> = None;
    let mut last: Option<(u16, u32)> = None;
    let n = 40;
    for i in 0..n {
        let (p, from) = recv(&a).expect("hold packet");
        assert_eq!(from, la.rtp, "from the leg's relay port");
        assert_eq!(p.len(), 172);
        assert_eq!(p[1] & 0x7f, 8, "PCMA");
        assert_eq!(p[1] & 0x80 != 0, i == 0, "marker on start only");
        let seq = u16::from_be_bytes([p[2], p[3]]);
        let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        if let Some((ls, lt)) = last {
            assert_eq!(seq, ls.wrapping_add(1));
            // a stall on a busy machine may skip frames: ts advances by whole frames
            let d = ts.wrapping_sub(lt);
            assert!(d % 160 == 0 && d >= 160, "ts step {d}");
        }
        last = Some((seq, ts));
        first.get_or_insert_with(Instant::now);
    }
    // timer-driven, not a burst: 39 intervals of 20 ms, minus at most a catch-up
    let elapsed = first.unwrap().elapsed();
    assert!(elapsed >= Duration::from_millis(20 * (n as u64 - 1 - 6)), "{elapsed:?}");
    // stop → silence; restart → marker again, sequence continues
    h.stop_hold(la.id);
    barrier(&h);
    a.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    while recv(&a).is_some() {}
    h.start_hold(la.id, HoldAudio::new(Law::Ulaw, &wav::default_hold_pcm()), 0);
    a.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let (p, _) = recv(&a).expect("restarted");
    assert_eq!(p[1], 0x80, "PCMU with marker");
    let (_, _) = (last.unwrap(), ());
    let (s, _, _) = stats(&h, la.id);
    assert!(s.tx_packets >= n as u64 + 1);
    h.shutdown();
}

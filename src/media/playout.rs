//! Hold-audio playout scheduler, sans-IO (time passed in).
//!
//! Frame `n` is due at `start + n × 20 ms`, computed from the start, never
//! from the previous frame, so there is no drift over any call length. Each
//! frame carries the next sequence number and a timestamp 160 higher; the
//! first packet of a playout has the marker bit. If the caller of `poll` fell
//! far behind (a stall of more than [`MAX_CATCH_UP`] frames), the missed
//! frames are skipped: the timestamp jumps with wall-clock time (as a
//! receiver expects), sequence numbers stay continuous.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frame duration.
pub const PTIME: Duration = Duration::from_millis(20);
/// Samples per frame at 8 kHz.
pub const SAMPLES: usize = 160;
/// RTP header length we write.
pub const HEADER: usize = 12;
/// Most frames sent back-to-back to catch up after a stall.
pub const MAX_CATCH_UP: u64 = 5;

/// Encoded hold audio (one G.711 law), shared by every playout.
#[derive(Debug, Clone)]
pub struct HoldAudio {
    pub law: super::g711::Law,
    pub samples: Arc<[u8]>,
}

impl HoldAudio {
    /// Encode PCM for `law` (done once at load).
    pub fn new(law: super::g711::Law, pcm: &[i16]) -> Self {
        let mut enc = super::g711::encode_all(law, pcm);
        if enc.is_empty() {
            enc.push(law.encode(0));
        }
        HoldAudio { law, samples: enc.into() }
    }
}

/// One leg's playout state.
#[derive(Debug, Clone)]
pub struct Playout {
    audio: HoldAudio,
    pt: u8,
    pos: usize,
    start: Instant,
    frame: u64,
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
    first: bool,
    /// Frames skipped after stalls.
    pub skipped: u64,
}

impl Playout {
    /// Start at `now`: the first frame is due immediately, with marker bit.
    pub fn new(audio: HoldAudio, pt: u8, ssrc: u32, seq: u16, ts: u32, now: Instant) -> Self {
        Playout { audio, pt, pos: 0, start: now, frame: 0, ssrc, seq, ts, first: true, skipped: 0 }
    }

    /// When the next frame is due.
    pub fn next_due(&self) -> Instant {
        self.start + Duration::from_nanos(self.frame.saturating_mul(PTIME.as_nanos() as u64))
    }

    /// If a frame is due at `now`, write it (header + 160 bytes) into `out`
    /// and return its length. `out` must hold at least 172 bytes.
    pub fn poll(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        if out.len() < HEADER + SAMPLES || now < self.next_due() {
            return None;
        }
        // stall: skip to the frame due now minus MAX_CATCH_UP
        let behind = (now.saturating_duration_since(self.next_due()).as_nanos() / PTIME.as_nanos()) as u64;
        if behind > MAX_CATCH_UP {
            let skip = behind - MAX_CATCH_UP;
            self.frame += skip;
            self.skipped += skip;
            self.ts = self.ts.wrapping_add((skip as u32).wrapping_mul(SAMPLES as u32));
            self.pos = (self.pos + (skip as usize % self.audio.samples.len().max(1)) * SAMPLES) % self.audio.samples.len().max(1);
        }
        out[0] = 0x80;
        out[1] = self.pt & 0x7f | if self.first { 0x80 } else { 0 };
        out[2..4].copy_from_slice(&self.seq.to_be_bytes());
        out[4..8].copy_from_slice(&self.ts.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let src = &self.audio.samples;
        let n = src.len();
        for (i, b) in out[HEADER..HEADER + SAMPLES].iter_mut().enumerate() {
            *b = src.get((self.pos + i) % n).copied().unwrap_or(0xFF);
        }
        self.pos = (self.pos + SAMPLES) % n;
        self.first = false;
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(SAMPLES as u32);
        self.frame += 1;
        Some(HEADER + SAMPLES)
    }
}

impl HoldAudio {
    /// Hold audio for a queue: the WAV file named in its config (8 kHz mono
    /// 16-bit PCM, converted to `law` once, here), or the generated default
    /// (`src/media/assets/hold-default.wav` holds the same samples).
    pub fn load(path: Option<&std::path::Path>, law: super::g711::Law) -> Result<HoldAudio, super::wav::WavError> {
        let pcm = match path {
            Some(p) => super::wav::load(p)?,
            None => super::wav::default_hold_pcm(),
        };
        Ok(HoldAudio::new(law, &pcm))
    }
}

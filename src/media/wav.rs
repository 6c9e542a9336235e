//! WAV loading for hold audio: 8 kHz mono 16-bit PCM only, with a clear
//! error for anything else; and the generator of the default hold tone.

use std::path::Path;

/// Why a WAV file cannot be used as hold audio.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("cannot read hold audio {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("hold audio {path}: not a RIFF/WAVE file")]
    NotWav { path: String },
    #[error("hold audio {path}: missing {chunk} chunk")]
    MissingChunk { path: String, chunk: &'static str },
    #[error("hold audio {path}: unsupported format (format tag {format_tag}, {channels} channel(s), {rate} Hz, {bits} bits); need 8000 Hz mono 16-bit PCM (e.g. `sox in.wav -r 8000 -c 1 -b 16 -e signed out.wav`)")]
    Unsupported { path: String, format_tag: u16, channels: u16, rate: u32, bits: u16 },
    #[error("hold audio {path}: no audio samples")]
    Empty { path: String },
}

/// Parse WAV bytes; `path` only names the file in errors.
pub fn parse(bytes: &[u8], path: &str) -> Result<Vec<i16>, WavError> {
    let p = || path.to_string();
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWav { path: p() });
    }
    let mut off = 12usize;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    let mut data: Option<&[u8]> = None;
    while off + 8 <= bytes.len() {
        let id = &bytes[off..off + 4];
        let len = u32::from_le_bytes([bytes[off + 4], bytes[off + 5], bytes[off + 6], bytes[off + 7]]) as usize;
        let body_start = off + 8;
        let body_end = body_start.saturating_add(len).min(bytes.len());
        let body = &bytes[body_start..body_end];
        if id == b"fmt " {
            if body.len() < 16 {
                return Err(WavError::NotWav { path: p() });
            }
            let tag = u16::from_le_bytes([body[0], body[1]]);
            let ch = u16::from_le_bytes([body[2], body[3]]);
            let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            let bits = u16::from_le_bytes([body[14], body[15]]);
            fmt = Some((tag, ch, rate, bits));
        } else if id == b"data" {
            data = Some(body);
        }
        off = body_start.saturating_add(len).saturating_add(len & 1);
    }
    let (tag, ch, rate, bits) = fmt.ok_or(WavError::MissingChunk { path: p(), chunk: "fmt" })?;
    if tag != 1 || ch != 1 || rate != 8000 || bits != 16 {
        return Err(WavError::Unsupported { path: p(), format_tag: tag, channels: ch, rate, bits });
    }
    let data = data.ok_or(WavError::MissingChunk { path: p(), chunk: "data" })?;
    let pcm: Vec<i16> = data.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
    if pcm.is_empty() {
        return Err(WavError::Empty { path: p() });
    }
    Ok(pcm)
}

/// Load an 8 kHz mono 16-bit PCM WAV file.
pub fn load(path: &Path) -> Result<Vec<i16>, WavError> {
    let bytes = std::fs::read(path).map_err(|e| WavError::Io { path: path.display().to_string(), source: e })?;
    parse(&bytes, &path.display().to_string())
}

/// Serialise 8 kHz mono 16-bit PCM as a WAV file.
pub fn to_wav_bytes(pcm: &[i16]) -> Vec<u8> {
    let data_len = (pcm.len() * 2) as u32;
    let mut v = Vec::with_capacity(44 + pcm.len() * 2);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // PCM
    v.extend_from_slice(&1u16.to_le_bytes()); // mono
    v.extend_from_slice(&8000u32.to_le_bytes());
    v.extend_from_slice(&16000u32.to_le_bytes()); // byte rate
    v.extend_from_slice(&2u16.to_le_bytes()); // block align
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    for s in pcm {
        v.extend_from_slice(&s.to_le_bytes());
    }
    v
}

/// The confirmation a feature-code call hears: two short rising beeps
/// (880 Hz then 1320 Hz, 150 ms each), then silence to one second.
pub fn confirm_tone_pcm() -> Vec<i16> {
    let rate = 8000.0f64;
    let mut out = vec![0i16; 8000];
    for (start, freq) in [(0.05f64, 880.0f64), (0.30, 1320.0)] {
        let s0 = (start * rate) as usize;
        let len = (0.15 * rate) as usize;
        for i in 0..len {
            let t = i as f64 / rate;
            let env = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / len as f64).cos();
            let v = 6000.0 * env * (2.0 * std::f64::consts::PI * freq * t).sin();
            if let Some(o) = out.get_mut(s0 + i) {
                *o = v.round() as i16;
            }
        }
    }
    out
}

/// The default hold audio: a soft 4-second pattern (two gentle chimes,
/// 523 Hz then 659 Hz, each 0.6 s with a raised-cosine envelope, at about
/// −18 dBFS, then silence), generated here rather than downloaded.
pub fn default_hold_pcm() -> Vec<i16> {
    let rate = 8000.0f64;
    let n = 4 * 8000;
    let mut out = vec![0i16; n];
    for (start, freq) in [(0.0f64, 523.25f64), (1.0, 659.25)] {
        let s0 = (start * rate) as usize;
        let len = (0.6 * rate) as usize;
        for i in 0..len {
            let t = i as f64 / rate;
            let env = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / len as f64).cos();
            let v = 4000.0 * env * (2.0 * std::f64::consts::PI * freq * t).sin();
            if let Some(o) = out.get_mut(s0 + i) {
                *o = v.round() as i16;
            }
        }
    }
    out
}

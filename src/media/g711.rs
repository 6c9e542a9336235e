//! G.711 µ-law and A-law (ITU-T G.711, as in the classic Sun reference code).

/// Which G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// PCMU, payload type 0.
    Ulaw,
    /// PCMA, payload type 8.
    Alaw,
}

impl Law {
    /// Static RTP payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Ulaw => 0,
            Law::Alaw => 8,
        }
    }
    /// The law for an SDP encoding name (`PCMU`/`PCMA`).
    pub fn from_name(name: &str) -> Option<Law> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Law::Ulaw)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Law::Alaw)
        } else {
            None
        }
    }
    pub fn encode(self, s: i16) -> u8 {
        match self {
            Law::Ulaw => linear_to_ulaw(s),
            Law::Alaw => linear_to_alaw(s),
        }
    }
    pub fn decode(self, c: u8) -> i16 {
        match self {
            Law::Ulaw => ulaw_to_linear(c),
            Law::Alaw => alaw_to_linear(c),
        }
    }
}

const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const SEG_AEND: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

fn seg(v: i32, table: &[i32; 8]) -> usize {
    table.iter().position(|&e| v <= e).unwrap_or(8)
}

/// 16-bit linear → µ-law.
pub fn linear_to_ulaw(pcm: i16) -> u8 {
    let mut v = (pcm as i32) >> 2;
    let mask: u8 = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    v = v.min(8159) + 33;
    let s = seg(v, &SEG_UEND);
    if s >= 8 {
        return 0x7F ^ mask;
    }
    let u = ((s as i32) << 4) | ((v >> (s + 1)) & 0xF);
    (u as u8) ^ mask
}

/// µ-law → 16-bit linear.
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let mut t = (((u & 0x0F) as i32) << 3) + 0x84;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

/// 16-bit linear → A-law.
pub fn linear_to_alaw(pcm: i16) -> u8 {
    let mut v = (pcm as i32) >> 3;
    let mask: u8 = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let s = seg(v, &SEG_AEND);
    if s >= 8 {
        return 0x7F ^ mask;
    }
    let mut a = (s as i32) << 4;
    a |= if s < 2 { (v >> 1) & 0xF } else { (v >> s) & 0xF };
    (a as u8) ^ mask
}

/// A-law → 16-bit linear.
pub fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let s = (a & 0x70) >> 4;
    match s {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= s - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// Encode a whole buffer.
pub fn encode_all(law: Law, pcm: &[i16]) -> Vec<u8> {
    pcm.iter().map(|&s| law.encode(s)).collect()
}

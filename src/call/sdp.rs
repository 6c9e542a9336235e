//! SDP glue for the B2BUA on top of `media::sdp`.
//!
//! The relay does not transcode, so a call uses ONE audio codec end to end
//! (plus telephone-event): the customer's answer keeps only the first audio
//! codec in common, and the agent is offered exactly that.

use std::net::IpAddr;

use crate::media::sdp::{self, Chosen, Codec, Direction, Negotiated, SdpError, SessionDescription};

fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::Malformed {
        line_no: 1,
        line: String::new(),
        reason: "not UTF-8",
    })?;
    SessionDescription::parse(text)
}

/// Keep the first audio codec and telephone-event, in the answer as well.
fn restrict(n: &mut Negotiated) {
    let audio = n.chosen.iter().find(|c| !c.codec.is_dtmf()).cloned();
    let dtmf = n.chosen.iter().find(|c| c.codec.is_dtmf()).cloned();
    n.chosen = audio.into_iter().chain(dtmf).collect();
    let keep: Vec<u8> = n.chosen.iter().map(|c| c.pt).collect();
    if let Some(i) = n.answer.audio_index() {
        if let Some(m) = n.answer.media.get_mut(i) {
            m.formats.retain(|pt| keep.contains(pt));
            m.rtpmaps.retain(|r| keep.contains(&r.pt));
            m.fmtps.retain(|(pt, _)| keep.contains(pt));
        }
    }
}

/// Answer an offer with the relay leg at `relay:port`, restricted to one
/// audio codec. `version` is the o= session version of this answer.
pub fn answer(
    body: &[u8],
    ours: &[Codec],
    relay: IpAddr,
    port: u16,
    id: u64,
    version: u64,
) -> Result<Negotiated, SdpError> {
    let offer = parse(body)?;
    let mut n = sdp::answer(&offer, ours, relay, port, id)?;
    n.answer.session_version = version;
    restrict(&mut n);
    Ok(n)
}

/// The agreed codecs as a codec list (to answer a re-INVITE with them only).
pub fn codecs_of(chosen: &[Chosen]) -> Vec<Codec> {
    chosen.iter().map(|c| c.codec.clone()).collect()
}

/// Our offer on a relay leg with the agreed codecs.
pub fn offer(chosen: &[Chosen], relay: IpAddr, port: u16, dir: Direction, ptime: u32, id: u64, version: u64) -> String {
    let mut d = sdp::offer(chosen, relay, port, dir, ptime, id);
    d.session_version = version;
    d.build()
}

/// Where a leg's answer (to our offer) wants media, and its direction.
pub struct Answered {
    pub rtp: Option<std::net::SocketAddr>,
    pub rtcp: Option<std::net::SocketAddr>,
}

/// Reads a peer's answer to our offer: it must keep an audio codec we offered.
pub fn read_answer(body: &[u8], offered: &[Chosen]) -> Result<Answered, SdpError> {
    let d = parse(body)?;
    let i = d.audio_index().ok_or(SdpError::NoAudio)?;
    let ours = codecs_of(offered);
    let m = d.media.get(i).ok_or(SdpError::NoAudio)?;
    if !sdp::intersect(m, &ours).iter().any(|c| !c.codec.is_dtmf()) {
        return Err(SdpError::NoCommonCodec { offered: String::new() });
    }
    Ok(Answered {
        rtp: d.rtp_target(i),
        rtcp: d.rtcp_target(i),
    })
}

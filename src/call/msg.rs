//! Small helpers over header values the call layer reads (through
//! `sip::View`): URIs out of name-addrs, users, display names, priority.

use crate::config::SkillReq;

/// The URI of a name-addr or addr-spec (`"A" <sip:a@h>;tag=x` → `sip:a@h`).
pub fn uri_of(value: &str) -> String {
    crate::sip::view::uri_of(value).to_owned()
}

/// User part of a SIP URI (`sip:alice@h` → `alice`).
pub fn user_of(uri: &str) -> &str {
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    match rest.split_once('@') {
        Some((u, _)) => u.split(':').next().unwrap_or(u),
        None => "",
    }
}

/// Display name of a name-addr, if quoted or bare before `<`.
pub fn display_of(value: &str) -> Option<String> {
    let (disp, _) = value.split_once('<')?;
    let d = disp.trim().trim_matches('"').trim();
    (!d.is_empty()).then(|| d.to_owned())
}

/// `emergency` +3, `urgent` +2, `normal` 0, `non-urgent` -1 (RFC 3261 §20.26).
pub fn priority_bonus(v: Option<&str>) -> i32 {
    match v.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("emergency") => 3,
        Some("urgent") => 2,
        Some("non-urgent") => -1,
        _ => 0,
    }
}

/// Largest `X-CC-Priority` believed either way; a trusted peer still
/// should not be able to overflow the router's arithmetic.
const MAX_PRIORITY_BONUS: i32 = 100;
/// Skills read from one `X-CC-Skills`; the rest are ignored.
const MAX_CALL_SKILLS: usize = 16;

/// What a caller asks of the router beyond the queue: a priority bonus
/// (`X-CC-Priority: N` if present and a number, else from `Priority:`) and
/// its own skill requirement (`X-CC-Skills: english>=50, billing`; entries
/// that do not parse are skipped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerAsks {
    pub priority_bonus: i32,
    pub skills: Vec<SkillReq>,
}

impl CallerAsks {
    pub fn read(priority: Option<&str>, cc_priority: Option<&str>, cc_skills: Option<&str>) -> CallerAsks {
        let priority_bonus = cc_priority
            .and_then(|v| v.trim().parse::<i32>().ok())
            .map(|p| p.clamp(-MAX_PRIORITY_BONUS, MAX_PRIORITY_BONUS))
            .unwrap_or_else(|| priority_bonus(priority));
        let skills = cc_skills
            .into_iter()
            .flat_map(|v| v.split(','))
            .filter(|s| !s.trim().is_empty())
            .filter_map(|s| SkillReq::parse(s).ok())
            .take(MAX_CALL_SKILLS)
            .collect();
        CallerAsks { priority_bonus, skills }
    }

    /// Whether these headers would ask for anything (what an untrusted
    /// source is counted for), without parsing the skills.
    pub fn asked(priority: Option<&str>, cc_priority: Option<&str>, cc_skills: Option<&str>) -> bool {
        priority_bonus(priority) != 0 || cc_priority.is_some() || cc_skills.is_some_and(|s| !s.trim().is_empty())
    }
}

/// A quoted-string-safe display name.
pub fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(uri_of("\"A\" <sip:a@h;transport=udp>;tag=x"), "sip:a@h;transport=udp");
        assert_eq!(uri_of("sip:a@h;tag=x"), "sip:a@h");
        assert_eq!(user_of("sip:alice@h:5060"), "alice");
        assert_eq!(user_of("sip:h"), "");
        assert_eq!(display_of("\"Bob B\" <sip:b@h>").as_deref(), Some("Bob B"));
        assert_eq!(
            crate::sip::view::ListItems::new("<sip:a;lr>, <sip:b,c;lr>,").collect::<Vec<_>>(),
            vec!["<sip:a;lr>", "<sip:b,c;lr>"]
        );
        assert_eq!(priority_bonus(Some("Emergency")), 3);
        assert_eq!(priority_bonus(Some("non-urgent")), -1);
        assert_eq!(priority_bonus(None), 0);
        let asks = CallerAsks::read(Some("urgent"), None, Some("english>=50, billing,bad skill,"));
        assert_eq!(asks.priority_bonus, 2);
        assert_eq!(asks.skills.len(), 2);
        assert_eq!(asks.skills[0].to_string(), "english>=50");
        assert_eq!(asks.skills[1].to_string(), "billing");
        assert_eq!(CallerAsks::read(Some("urgent"), Some(" 5 "), None).priority_bonus, 5);
        assert_eq!(CallerAsks::read(Some("urgent"), Some("x"), None).priority_bonus, 2);
        assert_eq!(CallerAsks::read(None, Some("99999"), None).priority_bonus, 100);
        assert_eq!(CallerAsks::read(Some("normal"), None, None), CallerAsks::default());
        assert!(!CallerAsks::asked(Some("normal"), None, Some(" ")));
        assert!(CallerAsks::asked(Some("emergency"), None, None));
        assert!(CallerAsks::asked(None, None, Some("english")));
    }
}

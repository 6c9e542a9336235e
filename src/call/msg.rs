//! Small helpers over header values the call layer reads (through
//! `sip::View`): URIs out of name-addrs, users, display names, priority.

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
    }
}

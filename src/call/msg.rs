//! Small helpers over parsed SIP messages: header lookup by name (compact
//! forms included), URIs out of name-addrs, tags, and requests built as
//! text then handed to rsip (so the endpoint sees its typed Via/Call-ID/CSeq).

use crate::sip::message::{addr_params, param};

/// Header (name, value) pairs of a parsed message, names lower-cased and
/// compact forms expanded.
#[derive(Debug, Clone, Default)]
pub struct Hdrs(Vec<(String, String)>);

fn full_name(n: &str) -> String {
    let n = n.trim().to_ascii_lowercase();
    match n.as_str() {
        "i" => "call-id".into(),
        "f" => "from".into(),
        "t" => "to".into(),
        "m" => "contact".into(),
        "v" => "via".into(),
        "l" => "content-length".into(),
        "c" => "content-type".into(),
        "k" => "supported".into(),
        _ => n,
    }
}

impl Hdrs {
    pub fn of(headers: &rsip::Headers) -> Hdrs {
        Hdrs(
            headers
                .iter()
                .filter_map(|h| {
                    let s = h.to_string();
                    let (n, v) = s.split_once(':')?;
                    Some((full_name(n), v.trim().to_owned()))
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, comma-separated lists split (for Record-Route).
    pub fn all_split(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| split_list(v))
            .collect()
    }

    pub fn tag(&self, name: &str) -> Option<String> {
        self.get(name)
            .and_then(|v| param(addr_params(v), "tag"))
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    }

    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.get("cseq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        Some((n, it.next()?.to_ascii_uppercase()))
    }
}

/// Splits a header list on commas outside `<…>` and quotes.
fn split_list(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    for (i, ch) in v.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                out.push(v[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = v[start..].trim();
    if !last.is_empty() {
        out.push(last.to_owned());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The URI of a name-addr or addr-spec (`"A" <sip:a@h>;tag=x` → `sip:a@h`).
pub fn uri_of(value: &str) -> String {
    let v = value.trim();
    if let Some((_, rest)) = v.split_once('<') {
        if let Some((uri, _)) = rest.split_once('>') {
            return uri.trim().to_owned();
        }
    }
    v.split(';').next().unwrap_or("").trim().to_owned()
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

/// Parses request text we built. Our own text always parses; `None` is a bug
/// the caller treats as a failed send.
pub fn request(text: &str) -> Option<rsip::Request> {
    let parsed = std::panic::catch_unwind(|| rsip::Request::try_from(text.as_bytes())).ok()?;
    match parsed {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "call layer built an unparsable request");
            None
        }
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
            split_list("<sip:a;lr>, <sip:b,c;lr>,"),
            vec!["<sip:a;lr>", "<sip:b,c;lr>"]
        );
        assert_eq!(priority_bonus(Some("Emergency")), 3);
        assert_eq!(priority_bonus(Some("non-urgent")), -1);
        assert_eq!(priority_bonus(None), 0);
    }
}

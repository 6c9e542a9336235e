//! Digest authentication (RFC 3261 §22, RFC 7616, RFC 2617), sans-IO.
//!
//! Nonces are stateless: `hex(issue_ms) ‖ hex(HMAC-SHA256(secret, issue_ms ‖ realm))`.
//! Any shard, or the engine after a restart (the secret lives in redb), can
//! validate a nonce without a shared table, which keeps locks off the hot path.
//!
//! Nonce-count replay is deliberately NOT tracked: that would need per-nonce
//! state shared by every shard. Replay is bounded instead by the nonce lifetime,
//! and a replayed REGISTER can only re-install the very binding the real agent
//! asked for (Call-ID/CSeq ordering rejects older requests once a newer one
//! has been seen).

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest as _, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Longest Authorization value we parse; real ones are ~300 bytes. Bounds the
/// work an attacker can make us do per header.
const MAX_HEADER_LEN: usize = 4096;

/// Digest algorithms we verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// Token used in headers (RFC 7616 §6.1 registry spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Case-insensitive, as clients vary (`md5`, `MD5`).
    pub fn parse(s: &str) -> Option<Algorithm> {
        [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Lowercase hex digest of `data`.
    fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&Md5::digest(data)),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(data)),
        }
    }
}

/// A parsed `Authorization: Digest ...` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestResponse {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub cnonce: Option<String>,
    pub nc: Option<String>,
    /// `Some("auth")` or `None` (RFC 2069 form); `auth-int` is refused at parse.
    pub qop: Option<String>,
    pub opaque: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Authorization header is {len} bytes, limit {MAX_HEADER_LEN}")]
    TooLong { len: usize },
    #[error("Authorization scheme is not Digest")]
    NotDigest,
    #[error("malformed Authorization header at byte {at}: {what}")]
    Malformed { at: usize, what: &'static str },
    #[error("Authorization parameter {0:?} given twice")]
    Duplicate(String),
    #[error("Authorization parameter {0} missing")]
    Missing(&'static str),
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("unsupported qop {0:?} (only auth)")]
    UnsupportedQop(String),
    #[error("nc {0:?} is not 8 hex digits")]
    BadNonceCount(String),
}

/// Outcome of validating a nonce we (supposedly) issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceStatus {
    Valid,
    /// Ours, but too old (or from a clock that has since gone backwards):
    /// answer with `stale=true` so the client retries without re-prompting.
    Stale,
    /// Not well-formed, or not made with our secret for this realm.
    Invalid,
}

/// Server secret that signs nonces. Persist it (store meta table) so nonces
/// survive a restart; share it across shards and node pairs.
#[derive(Clone)]
pub struct NonceKey {
    secret: [u8; 32],
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(..)") // never log the secret
    }
}

/// How far in the future a nonce timestamp may be before we call it stale;
/// covers small wall-clock steps between nodes or across an NTP correction.
const FUTURE_SKEW_MS: u64 = 5_000;

impl NonceKey {
    pub fn from_secret(secret: [u8; 32]) -> Self {
        NonceKey { secret }
    }

    fn mac(&self, issued_ms: u64, realm: &str) -> HmacSha256 {
        // HMAC accepts keys of any length and the secret is ours, not network
        // input, so this cannot fail.
        let mut m =
            <HmacSha256 as Mac>::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        m.update(&issued_ms.to_be_bytes());
        m.update(realm.as_bytes());
        m
    }

    /// A fresh nonce for `realm`, issued at `now_ms` (unix milliseconds).
    pub fn issue(&self, realm: &str, now_ms: u64) -> String {
        let tag = self.mac(now_ms, realm).finalize().into_bytes();
        format!("{:016x}{}", now_ms, hex(&tag))
    }

    /// Validates `nonce` against our secret and `realm`; `lifetime_ms` bounds replay.
    pub fn check(&self, nonce: &str, realm: &str, now_ms: u64, lifetime_ms: u64) -> NonceStatus {
        if nonce.len() != 16 + 64 || !nonce.is_ascii() {
            return NonceStatus::Invalid;
        }
        let (ts_hex, mac_hex) = nonce.split_at(16);
        let Ok(issued) = u64::from_str_radix(ts_hex, 16) else {
            return NonceStatus::Invalid;
        };
        let Some(tag) = unhex(mac_hex) else {
            return NonceStatus::Invalid;
        };
        // verify_slice is constant time.
        if self.mac(issued, realm).verify_slice(&tag).is_err() {
            return NonceStatus::Invalid;
        }
        if issued > now_ms.saturating_add(FUTURE_SKEW_MS) {
            return NonceStatus::Stale;
        }
        if now_ms.saturating_sub(issued) > lifetime_ms {
            return NonceStatus::Stale;
        }
        NonceStatus::Valid
    }
}

/// A `WWW-Authenticate` value. We always offer `qop="auth"`.
pub fn challenge_header(realm: &str, alg: Algorithm, nonce: &str, stale: bool) -> String {
    let mut s = format!(
        "Digest realm=\"{}\", nonce=\"{}\", algorithm={}, qop=\"auth\"",
        quote_escape(realm),
        quote_escape(nonce),
        alg.as_str()
    );
    if stale {
        s.push_str(", stale=true");
    }
    s
}

/// Computes the expected digest and compares it with `resp.response` in
/// constant time. `realm` is ours: a response for another realm is false.
/// Whether qop was required and whether `resp.uri` matches the Request-URI
/// is policy for the caller (the registrar checks both).
pub fn verify(resp: &DigestResponse, method: &str, password: &str, realm: &str) -> bool {
    if resp.realm != realm {
        return false;
    }
    let expected = compute_response(resp, method, password);
    ct_eq(
        expected.as_bytes(),
        resp.response.to_ascii_lowercase().as_bytes(),
    )
}

/// The hex digest a client with `password` would send in `resp.response`
/// (every other field of `resp` is used as is). Public for UAC use (cc-bench).
pub fn compute_response(resp: &DigestResponse, method: &str, password: &str) -> String {
    let alg = resp.algorithm;
    let mut ha1 = alg.hash_hex(format!("{}:{}:{}", resp.username, resp.realm, password).as_bytes());
    let cnonce = resp.cnonce.as_deref().unwrap_or("");
    if alg.is_sess() {
        ha1 = alg.hash_hex(format!("{}:{}:{}", ha1, resp.nonce, cnonce).as_bytes());
    }
    let ha2 = alg.hash_hex(format!("{}:{}", method, resp.uri).as_bytes());
    match &resp.qop {
        Some(qop) => {
            let nc = resp.nc.as_deref().unwrap_or("");
            alg.hash_hex(format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", resp.nonce).as_bytes())
        }
        None => alg.hash_hex(format!("{ha1}:{}:{ha2}", resp.nonce).as_bytes()),
    }
}

/// Formats `resp` as an `Authorization` value (UAC side, and tests).
pub fn format_authorization(resp: &DigestResponse) -> String {
    let mut s = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
        quote_escape(&resp.username),
        quote_escape(&resp.realm),
        quote_escape(&resp.nonce),
        quote_escape(&resp.uri),
        quote_escape(&resp.response),
        resp.algorithm.as_str()
    );
    if let Some(q) = &resp.qop {
        s.push_str(&format!(", qop={q}"));
    }
    if let Some(nc) = &resp.nc {
        s.push_str(&format!(", nc={nc}"));
    }
    if let Some(c) = &resp.cnonce {
        s.push_str(&format!(", cnonce=\"{}\"", quote_escape(c)));
    }
    if let Some(o) = &resp.opaque {
        s.push_str(&format!(", opaque=\"{}\"", quote_escape(o)));
    }
    s
}

/// Parses an `Authorization` (or `Proxy-Authorization`) value:
/// `Digest k=v, k="quoted \" v", ...`; names case-insensitive, any order,
/// unknown parameters ignored, whitespace tolerated.
pub fn parse_authorization(value: &str) -> Result<DigestResponse, AuthError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(AuthError::TooLong { len: value.len() });
    }
    let v = value.trim_start();
    let offset = value.len() - v.len();
    let scheme_end = v.find(|c: char| c.is_ascii_whitespace()).unwrap_or(v.len());
    let (scheme, rest) = v.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(AuthError::NotDigest);
    }
    let params = parse_params(rest, offset + scheme_end)?;

    let mut out = Fields::default();
    for (name, val) in params {
        let slot = match name.as_str() {
            "username" => &mut out.username,
            "realm" => &mut out.realm,
            "nonce" => &mut out.nonce,
            "uri" => &mut out.uri,
            "response" => &mut out.response,
            "algorithm" => &mut out.algorithm,
            "cnonce" => &mut out.cnonce,
            "nc" => &mut out.nc,
            "qop" => &mut out.qop,
            "opaque" => &mut out.opaque,
            _ => continue,
        };
        if slot.is_some() {
            return Err(AuthError::Duplicate(name));
        }
        *slot = Some(val);
    }

    let algorithm = match out.algorithm {
        None => Algorithm::Md5, // RFC 2617 §3.2.1 default
        Some(a) => Algorithm::parse(&a).ok_or(AuthError::UnsupportedAlgorithm(a))?,
    };
    if let Some(q) = &out.qop {
        if !q.eq_ignore_ascii_case("auth") {
            return Err(AuthError::UnsupportedQop(q.clone()));
        }
    }
    let qop = out.qop.map(|q| q.to_ascii_lowercase());
    if qop.is_some() {
        // RFC 7616 §3.4: with qop, cnonce and nc are mandatory.
        if out.cnonce.is_none() {
            return Err(AuthError::Missing("cnonce"));
        }
        match &out.nc {
            None => return Err(AuthError::Missing("nc")),
            Some(nc) if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) => {
                return Err(AuthError::BadNonceCount(nc.clone()))
            }
            _ => {}
        }
    }
    if algorithm.is_sess() && out.cnonce.is_none() {
        return Err(AuthError::Missing("cnonce"));
    }
    Ok(DigestResponse {
        username: out.username.ok_or(AuthError::Missing("username"))?,
        realm: out.realm.ok_or(AuthError::Missing("realm"))?,
        nonce: out.nonce.ok_or(AuthError::Missing("nonce"))?,
        uri: out.uri.ok_or(AuthError::Missing("uri"))?,
        response: out.response.ok_or(AuthError::Missing("response"))?,
        algorithm,
        cnonce: out.cnonce,
        nc: out.nc,
        qop,
        opaque: out.opaque,
    })
}

#[derive(Default)]
struct Fields {
    username: Option<String>,
    realm: Option<String>,
    nonce: Option<String>,
    uri: Option<String>,
    response: Option<String>,
    algorithm: Option<String>,
    cnonce: Option<String>,
    nc: Option<String>,
    qop: Option<String>,
    opaque: Option<String>,
}

/// `name = value` pairs separated by commas; names lowercased. `base` is the
/// byte offset of `s` in the header, for error positions.
fn parse_params(s: &str, base: usize) -> Result<Vec<(String, String)>, AuthError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let err = |at: usize, what| AuthError::Malformed {
        at: base + at,
        what,
    };
    let skip_ws = |i: &mut usize| {
        while b.get(*i).is_some_and(|c| c.is_ascii_whitespace()) {
            *i += 1;
        }
    };
    loop {
        // Tolerate empty list elements (`a=1,,b=2`, leading/trailing commas).
        skip_ws(&mut i);
        while b.get(i) == Some(&b',') {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while b.get(i).is_some_and(|c| is_token_byte(*c)) {
            i += 1;
        }
        if i == start {
            return Err(err(i, "expected parameter name"));
        }
        let name = s
            .get(start..i)
            .ok_or(err(start, "bad name"))?
            .to_ascii_lowercase();
        skip_ws(&mut i);
        if b.get(i) != Some(&b'=') {
            return Err(err(i, "expected '='"));
        }
        i += 1;
        skip_ws(&mut i);
        let value = if b.get(i) == Some(&b'"') {
            i += 1;
            let mut v = Vec::new();
            loop {
                match b.get(i) {
                    None => return Err(err(i, "unterminated quoted string")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        // quoted-pair: the next byte is taken literally.
                        let Some(c) = b.get(i + 1) else {
                            return Err(err(i, "dangling backslash"));
                        };
                        v.push(*c);
                        i += 2;
                    }
                    Some(c) => {
                        v.push(*c);
                        i += 1;
                    }
                }
            }
            String::from_utf8(v).map_err(|_| err(i, "quoted string is not UTF-8"))?
        } else {
            let vs = i;
            while b.get(i).is_some_and(|c| is_token_byte(*c)) {
                i += 1;
            }
            if i == vs {
                return Err(err(i, "expected value"));
            }
            s.get(vs..i).ok_or(err(vs, "bad value"))?.to_string()
        };
        out.push((name, value));
        skip_ws(&mut i);
        match b.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return Err(err(i, "expected ','")),
        }
    }
    Ok(out)
}

/// RFC 3261 token characters (plus `/` which some UAs leave unquoted in uri).
fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~/:@".contains(&c)
}

fn quote_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[usize::from(b >> 4)] as char);
        s.push(D[usize::from(b & 15)] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

/// Constant-time equality for equal lengths; the length itself is public
/// (it only depends on the algorithm).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC2617: &str = r#"Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41""#;

    const RFC7616_SHA256: &str = r#"Digest username="Mufasa",
       realm="http-auth@example.org",
       uri="/dir/index.html",
       algorithm=SHA-256,
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       nc=00000001,
       cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
       qop=auth,
       response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    #[test]
    fn rfc2617_md5_vector() {
        let r = parse_authorization(RFC2617).unwrap();
        assert_eq!(r.algorithm, Algorithm::Md5);
        assert_eq!(r.qop.as_deref(), Some("auth"));
        assert!(verify(&r, "GET", "Circle Of Life", "testrealm@host.com"));
    }

    #[test]
    fn rfc7616_sha256_vector() {
        let r = parse_authorization(RFC7616_SHA256).unwrap();
        assert_eq!(r.algorithm, Algorithm::Sha256);
        assert!(verify(&r, "GET", "Circle of Life", "http-auth@example.org"));
    }

    #[test]
    fn wrong_password_realm_uri_method() {
        let r = parse_authorization(RFC2617).unwrap();
        assert!(!verify(&r, "GET", "Circle of Life", "testrealm@host.com"));
        assert!(!verify(&r, "GET", "Circle Of Life", "other.realm"));
        assert!(!verify(&r, "POST", "Circle Of Life", "testrealm@host.com"));
        let mut u = r.clone();
        u.uri = "/dir/other.html".into();
        assert!(!verify(&u, "GET", "Circle Of Life", "testrealm@host.com"));
        // Uppercase hex from a client is still accepted.
        let mut up = r.clone();
        up.response = up.response.to_ascii_uppercase();
        assert!(verify(&up, "GET", "Circle Of Life", "testrealm@host.com"));
    }

    #[test]
    fn rfc2069_form_and_sess() {
        // Build responses ourselves and check they round-trip through verify.
        let mut r = DigestResponse {
            username: "1001".into(),
            realm: "cc".into(),
            nonce: "abc".into(),
            uri: "sip:cc".into(),
            response: String::new(),
            algorithm: Algorithm::Md5,
            cnonce: None,
            nc: None,
            qop: None,
            opaque: None,
        };
        r.response = compute_response(&r, "REGISTER", "pw");
        assert!(verify(&r, "REGISTER", "pw", "cc"));
        r.algorithm = Algorithm::Sha256Sess;
        r.cnonce = Some("xyz".into());
        r.nc = Some("00000001".into());
        r.qop = Some("auth".into());
        r.response = compute_response(&r, "REGISTER", "pw");
        assert_eq!(r.response.len(), 64);
        assert!(verify(&r, "REGISTER", "pw", "cc"));
        assert!(!verify(&r, "REGISTER", "pw2", "cc"));
        // format -> parse round trip
        assert_eq!(parse_authorization(&format_authorization(&r)).unwrap(), r);
    }

    #[test]
    fn parser_tolerance() {
        let r = parse_authorization(
            r#"  digest  REALM = "a \"q\" b" ,USERNAME=bob,, nonce="n",uri="sip:x@y;transport=udp", response="00", ALGORITHM=md5, x-unknown="z",  "#,
        )
        .unwrap();
        assert_eq!(r.realm, r#"a "q" b"#);
        assert_eq!(r.username, "bob");
        assert_eq!(r.uri, "sip:x@y;transport=udp");
        assert_eq!(r.algorithm, Algorithm::Md5);
        assert_eq!(r.qop, None);
    }

    #[test]
    fn malformed_headers() {
        let cases = [
            "",
            "Basic dXNlcjpwYXNz",
            "Digest",
            r#"Digest username="a"#,
            r#"Digest username="a\"#,
            r#"Digest username"#,
            r#"Digest username=,realm="r""#,
            r#"Digest =x"#,
            r#"Digest username="a" realm="r""#,
            r#"Digest username="a", username="b", realm="r", nonce="n", uri="u", response="r""#,
            r#"Digest realm="r", nonce="n", uri="u", response="r""#,
            r#"Digest username="a", realm="r", nonce="n", uri="u", response="r", algorithm=SHA-512"#,
            r#"Digest username="a", realm="r", nonce="n", uri="u", response="r", qop=auth-int, nc=00000001, cnonce="c""#,
            r#"Digest username="a", realm="r", nonce="n", uri="u", response="r", qop=auth, cnonce="c""#,
            r#"Digest username="a", realm="r", nonce="n", uri="u", response="r", qop=auth, nc=1, cnonce="c""#,
            r#"Digest username="a", realm="r", nonce="n", uri="u", response="r", qop=auth, nc=00000001"#,
            "Digest username=\"\u{e9}\u{0}\", realm=\"\u{ff}",
        ];
        for c in cases {
            assert!(parse_authorization(c).is_err(), "{c:?} should fail");
        }
        let long = format!("Digest username=\"{}\"", "a".repeat(5000));
        assert_eq!(
            parse_authorization(&long),
            Err(AuthError::TooLong { len: long.len() })
        );
    }

    #[test]
    fn parser_never_panics_on_garbage() {
        // Cheap fuzz: every prefix and every single-byte corruption of a valid header.
        let base = RFC7616_SHA256;
        for i in 0..=base.len() {
            if let Some(p) = base.get(..i) {
                let _ = parse_authorization(p);
            }
        }
        for i in 0..base.len() {
            for c in ['"', '\\', ',', '=', ' ', 'é'] {
                let mut s = String::from(base.get(..i).unwrap_or(""));
                s.push(c);
                s.push_str(base.get(i + 1..).unwrap_or(""));
                let _ = parse_authorization(&s);
            }
        }
    }

    #[test]
    fn nonce_lifecycle() {
        let k = NonceKey::from_secret([7; 32]);
        let n = k.issue("cc.example", 1_000_000);
        assert_eq!(
            k.check(&n, "cc.example", 1_000_000, 300_000),
            NonceStatus::Valid
        );
        assert_eq!(
            k.check(&n, "cc.example", 1_300_000, 300_000),
            NonceStatus::Valid
        );
        assert_eq!(
            k.check(&n, "cc.example", 1_300_001, 300_000),
            NonceStatus::Stale
        );
        // Issued "in the future" (clock stepped back): stale, not forged.
        assert_eq!(
            k.check(&n, "cc.example", 900_000, 300_000),
            NonceStatus::Stale
        );
        // Other realm, other secret, tampered timestamp, garbage: invalid.
        assert_eq!(
            k.check(&n, "other", 1_000_000, 300_000),
            NonceStatus::Invalid
        );
        let k2 = NonceKey::from_secret([8; 32]);
        assert_eq!(
            k2.check(&n, "cc.example", 1_000_000, 300_000),
            NonceStatus::Invalid
        );
        let forged = format!("{:016x}{}", 1_200_000u64, &n[16..]);
        assert_eq!(
            k.check(&forged, "cc.example", 1_200_000, 300_000),
            NonceStatus::Invalid
        );
        for bad in ["", "zz", &n[..79], &format!("{n}0"), &"é".repeat(40)] {
            assert_eq!(
                k.check(bad, "cc.example", 1_000_000, 300_000),
                NonceStatus::Invalid
            );
        }
    }

    #[test]
    fn challenge_format() {
        assert_eq!(
            challenge_header("cc", Algorithm::Sha256, "abc", false),
            r#"Digest realm="cc", nonce="abc", algorithm=SHA-256, qop="auth""#
        );
        assert_eq!(
            challenge_header("c\"c", Algorithm::Md5, "abc", true),
            r#"Digest realm="c\"c", nonce="abc", algorithm=MD5, qop="auth", stale=true"#
        );
    }
}

//! `[features]`: the star codes an agent dials from its phone to change its
//! own status, and the pure parser that reads them off a Request-URI user
//! (`*55` pause, `*55*3` pause with reason code 3, `*56` unpause, `*57` log
//! in, `*58` log out).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The first character of every feature code: an INVITE whose Request-URI
/// user starts with one of these is a feature request, never a queue.
pub const SIGILS: [char; 2] = ['*', '#'];

/// Longest reason code accepted after a star code.
const MAX_REASON: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeaturesSection {
    /// Off: a star code INVITE is treated like any other Request-URI (404).
    pub enabled: bool,
    pub pause: String,
    pub unpause: String,
    pub login: String,
    pub logout: String,
    /// Reason code dialled after the pause code → the reason recorded
    /// (`3 = "lunch"`). A code not listed is recorded as dialled.
    pub pause_reasons: BTreeMap<String, String>,
    /// How long the confirmation tone plays before the engine hangs up.
    pub tone_ms: u32,
}

impl Default for FeaturesSection {
    fn default() -> Self {
        FeaturesSection {
            enabled: true,
            pause: "*55".into(),
            unpause: "*56".into(),
            login: "*57".into(),
            logout: "*58".into(),
            pause_reasons: BTreeMap::new(),
            tone_ms: 1000,
        }
    }
}

/// What a dialled feature code asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureAction {
    Pause { reason: Option<String> },
    Unpause,
    Login,
    Logout,
}

impl FeatureAction {
    /// Its name in metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            FeatureAction::Pause { .. } => "pause",
            FeatureAction::Unpause => "unpause",
            FeatureAction::Login => "login",
            FeatureAction::Logout => "logout",
        }
    }
}

/// Why a dialled string is not a feature request we serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeatureError {
    #[error("feature codes are disabled")]
    Disabled,
    #[error("no feature code \"{0}\" is configured")]
    UnknownCode(String),
    #[error("reason code \"{0}\" is not 1 to 32 letters or digits")]
    BadReason(String),
}

/// Whether a Request-URI user is a feature request (starts with `*` or `#`,
/// plain or percent-encoded). Cheap: the call layer asks it of every new
/// INVITE.
pub fn is_feature_user(user: &str) -> bool {
    user.starts_with(SIGILS) || {
        let b = user.as_bytes();
        matches!(b, [b'%', b'2', b'A' | b'a' | b'3', ..])
    }
}

/// `%2A` → `*` and `%23` → `#`; anything else is kept as written (a user
/// part may percent-encode the star, RFC 3261 §25.1).
fn decode(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    let mut rest = user;
    while let Some(c) = rest.chars().next() {
        let (ch, len) = match rest.get(..3) {
            Some(p) if p.eq_ignore_ascii_case("%2a") => ('*', 3),
            Some("%23") => ('#', 3),
            _ => (c, c.len_utf8()),
        };
        out.push(ch);
        rest = rest.get(len..).unwrap_or("");
    }
    out
}

impl FeaturesSection {
    /// Reads a Request-URI user: the code is the sigil and the digits up to
    /// the next `*`; what follows that `*` is the reason code. The reason
    /// is mapped through `pause_reasons` for a pause and ignored otherwise.
    pub fn parse(&self, user: &str) -> Result<FeatureAction, FeatureError> {
        if !self.enabled {
            return Err(FeatureError::Disabled);
        }
        let user = decode(user);
        let Some(sigil) = user.chars().next().filter(|c| SIGILS.contains(c)) else {
            return Err(FeatureError::UnknownCode(user));
        };
        let body = user.get(sigil.len_utf8()..).unwrap_or("");
        let (digits, reason) = match body.split_once('*') {
            Some((d, r)) => (d, Some(r)),
            None => (body, None),
        };
        let code = format!("{sigil}{digits}");
        let reason = match reason {
            None => None,
            Some(r) if !r.is_empty() && r.len() <= MAX_REASON && r.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Some(r.to_string())
            }
            Some(r) => return Err(FeatureError::BadReason(r.to_string())),
        };
        if code == self.pause {
            let reason = reason.map(|r| self.pause_reasons.get(&r).cloned().unwrap_or(r));
            Ok(FeatureAction::Pause { reason })
        } else if code == self.unpause {
            Ok(FeatureAction::Unpause)
        } else if code == self.login {
            Ok(FeatureAction::Login)
        } else if code == self.logout {
            Ok(FeatureAction::Logout)
        } else {
            Err(FeatureError::UnknownCode(user))
        }
    }

    /// The key and reason of the first invalid setting.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let codes = [("pause", &self.pause), ("unpause", &self.unpause), ("login", &self.login), ("logout", &self.logout)];
        for (i, (name, code)) in codes.iter().enumerate() {
            let key = format!("features.{name}");
            let mut chars = code.chars();
            let good = chars.next().is_some_and(|c| SIGILS.contains(&c))
                && code.len() >= 2
                && code.len() <= 16
                && chars.all(|c| c.is_ascii_digit());
            if !good {
                return Err((key, format!("\"{code}\" is not `*` or `#` followed by 1 to 15 digits")));
            }
            if let Some((other, _)) = codes.iter().take(i).find(|(_, c)| c == code) {
                return Err((key, format!("\"{code}\" is also features.{other}")));
            }
        }
        for (k, v) in &self.pause_reasons {
            let key = format!("features.pause_reasons.{k}");
            if k.is_empty() || k.len() > MAX_REASON || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err((key, "a reason code is 1 to 32 letters or digits".into()));
            }
            if v.trim().is_empty() || v.len() > 64 || v.contains(['|', '\n', '\r']) {
                return Err((key, "the reason is 1 to 64 characters, without `|` or line breaks".into()));
            }
        }
        if !(100..=10_000).contains(&self.tone_ms) {
            return Err(("features.tone_ms".into(), format!("{} is outside 100..=10000", self.tone_ms)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f() -> FeaturesSection {
        let mut f = FeaturesSection::default();
        f.pause_reasons.insert("3".into(), "lunch".into());
        f
    }

    #[test]
    fn each_default_code_parses() {
        let f = f();
        assert_eq!(f.parse("*55"), Ok(FeatureAction::Pause { reason: None }));
        assert_eq!(f.parse("*56"), Ok(FeatureAction::Unpause));
        assert_eq!(f.parse("*57"), Ok(FeatureAction::Login));
        assert_eq!(f.parse("*58"), Ok(FeatureAction::Logout));
    }

    #[test]
    fn a_reason_code_is_mapped_or_kept_as_dialled() {
        let f = f();
        assert_eq!(f.parse("*55*3"), Ok(FeatureAction::Pause { reason: Some("lunch".into()) }));
        assert_eq!(f.parse("*55*7"), Ok(FeatureAction::Pause { reason: Some("7".into()) }));
        assert_eq!(f.parse("*58*9"), Ok(FeatureAction::Logout));
        assert_eq!(f.parse("*55*"), Err(FeatureError::BadReason(String::new())));
        assert_eq!(f.parse("*55*3*4"), Err(FeatureError::BadReason("3*4".into())));
        assert!(matches!(f.parse(&format!("*55*{}", "1".repeat(33))), Err(FeatureError::BadReason(_))));
    }

    #[test]
    fn percent_encoded_stars_are_read() {
        let f = f();
        assert!(is_feature_user("%2A55"));
        assert!(is_feature_user("%2a55"));
        assert!(is_feature_user("*55"));
        assert!(is_feature_user("#1"));
        assert!(!is_feature_user("support"));
        assert!(!is_feature_user(""));
        assert!(!is_feature_user("%"));
        assert_eq!(f.parse("%2A55%2A3"), Ok(FeatureAction::Pause { reason: Some("lunch".into()) }));
    }

    #[test]
    fn unknown_codes_and_disabled_are_refused() {
        let mut f = f();
        assert_eq!(f.parse("*99"), Err(FeatureError::UnknownCode("*99".into())));
        assert_eq!(f.parse("*5"), Err(FeatureError::UnknownCode("*5".into())));
        assert_eq!(f.parse("*555"), Err(FeatureError::UnknownCode("*555".into())));
        assert!(matches!(f.parse("support"), Err(FeatureError::UnknownCode(_))));
        assert!(matches!(f.parse(""), Err(FeatureError::UnknownCode(_))));
        f.enabled = false;
        assert_eq!(f.parse("*55"), Err(FeatureError::Disabled));
    }

    #[test]
    fn other_codes_can_be_configured() {
        let f = FeaturesSection { pause: "#21".into(), ..f() };
        assert_eq!(f.parse("#21*3"), Ok(FeatureAction::Pause { reason: Some("lunch".into()) }));
        assert!(f.parse("*55").is_err());
    }

    #[test]
    fn validation_names_the_key() {
        let key = |f: FeaturesSection| f.validate().unwrap_err().0;
        assert!(f().validate().is_ok());
        assert_eq!(key(FeaturesSection { pause: "55".into(), ..f() }), "features.pause");
        assert_eq!(key(FeaturesSection { login: "*".into(), ..f() }), "features.login");
        assert_eq!(key(FeaturesSection { logout: "*5*5".into(), ..f() }), "features.logout");
        assert_eq!(key(FeaturesSection { unpause: "*55".into(), ..f() }), "features.unpause");
        assert_eq!(key(FeaturesSection { tone_ms: 5, ..f() }), "features.tone_ms");
        let mut bad = f();
        bad.pause_reasons.insert("x y".into(), "z".into());
        assert_eq!(key(bad), "features.pause_reasons.x y");
        let mut bad = f();
        bad.pause_reasons.insert("4".into(), "a|b".into());
        assert_eq!(key(bad), "features.pause_reasons.4");
    }
}

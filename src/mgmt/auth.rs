//! Bearer tokens and roles of the management API.
//!
//! Tokens are kept as SHA-256 digests and a presented token is hashed and
//! compared with every one of them in constant time, so neither the
//! content nor the length of a configured token leaks through timing.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{MgmtRole, MgmtToken};

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header, or not a Bearer one.
    Missing,
    /// A Bearer token that matches none of the configured ones.
    Invalid,
}

impl AuthError {
    /// The `reason` label of `cc_mgmt_auth_failures_total`.
    pub fn label(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Invalid => "invalid",
        }
    }
}

/// The configured tokens.
#[derive(Clone, Default)]
pub struct Tokens(Vec<([u8; 32], MgmtRole)>);

impl Tokens {
    /// Tokens without a value (a token file not loaded) are skipped: they
    /// can never match, rather than matching an empty header.
    pub fn new(tokens: &[MgmtToken]) -> Tokens {
        Tokens(
            tokens
                .iter()
                .filter_map(|t| t.token.as_deref().filter(|s| !s.is_empty()).map(|s| (digest(s.as_bytes()), t.role)))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The role of the caller presenting this `Authorization` header value.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<MgmtRole, AuthError> {
        let token = authorization.and_then(bearer).ok_or(AuthError::Missing)?;
        self.check_token(token)
    }

    /// The role of a bare token (the event stream's `?token=`).
    pub fn check_token(&self, token: &[u8]) -> Result<MgmtRole, AuthError> {
        let token = token.trim_ascii();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let d = digest(token);
        let mut role = None;
        // Every entry is compared: the time taken does not say which matched.
        for (want, r) in &self.0 {
            if bool::from(want.ct_eq(&d)) {
                role = Some(*r);
            }
        }
        role.ok_or(AuthError::Invalid)
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 7235).
fn bearer(h: &[u8]) -> Option<&[u8]> {
    let scheme = h.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let t = h.get(7..)?.trim_ascii();
    (!t.is_empty()).then_some(t)
}

/// Whether `role` may do what `needed` asks.
pub fn allows(role: MgmtRole, needed: MgmtRole) -> bool {
    matches!((role, needed), (MgmtRole::Admin, _) | (MgmtRole::Viewer, MgmtRole::Viewer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(t: &str, role: MgmtRole) -> MgmtToken {
        MgmtToken { token: Some(t.into()), token_file: None, role }
    }

    #[test]
    fn roles_by_token() {
        let t = Tokens::new(&[
            tok("admin-token-0123456789", MgmtRole::Admin),
            tok("viewer-token-0123456789", MgmtRole::Viewer),
        ]);
        assert_eq!(t.check(Some(b"Bearer admin-token-0123456789")), Ok(MgmtRole::Admin));
        assert_eq!(t.check(Some(b"bearer viewer-token-0123456789 ")), Ok(MgmtRole::Viewer));
        assert_eq!(t.check(Some(b"Bearer admin-token-012345678")), Err(AuthError::Invalid));
        assert_eq!(t.check(Some(b"Bearer admin-token-01234567890")), Err(AuthError::Invalid));
        assert_eq!(t.check(Some(b"Basic YWRtaW46eA==")), Err(AuthError::Missing));
        assert_eq!(t.check(Some(b"Bearer ")), Err(AuthError::Missing));
        assert_eq!(t.check(None), Err(AuthError::Missing));
        assert_eq!(t.check_token(b"viewer-token-0123456789"), Ok(MgmtRole::Viewer));
        assert_eq!(t.check_token(b"viewer-token-012345678"), Err(AuthError::Invalid));
        assert_eq!(t.check_token(b""), Err(AuthError::Missing));
    }

    #[test]
    fn no_tokens_admit_nobody() {
        let t = Tokens::new(&[MgmtToken { token: None, token_file: None, role: MgmtRole::Admin }]);
        assert!(t.is_empty());
        assert_eq!(t.check(Some(b"Bearer x")), Err(AuthError::Invalid));
    }

    #[test]
    fn viewer_reads_admin_acts() {
        assert!(allows(MgmtRole::Admin, MgmtRole::Admin));
        assert!(allows(MgmtRole::Admin, MgmtRole::Viewer));
        assert!(allows(MgmtRole::Viewer, MgmtRole::Viewer));
        assert!(!allows(MgmtRole::Viewer, MgmtRole::Admin));
    }
}

//! JWT verification (HS256 with a shared secret; RS256 or ES256 with a PEM public key)
//! through `jsonwebtoken`.
//!
//! Invariants: only the algorithms the configured keys can verify are accepted (a token
//! claiming `none` or HS256-signed-with-the-public-key is refused); `exp` is required and
//! checked, `nbf` is checked when present; `iss`/`aud` when configured. Errors returned
//! to callers are a [`JwtError`] kind only, never the token or key bytes.

use std::path::Path;

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::load_error::LoadError;

const KEY_FLAG: &str = "--jwt-public-key";

/// Why a token was refused (for logs; clients only ever see `Authentication failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Past its `exp`.
    Expired,
    /// Not yet valid (`nbf`).
    NotYetValid,
    /// Signature, algorithm or shape wrong.
    Invalid,
    /// `iss`/`aud`/required claim mismatch.
    Claims,
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JwtError::Expired => "token expired",
            JwtError::NotYetValid => "token not yet valid",
            JwtError::Invalid => "token invalid (signature, algorithm or format)",
            JwtError::Claims => "token claims do not match (iss, aud, exp)",
        })
    }
}

/// A configured verifier: one or two keys, each with its algorithm.
pub struct JwtVerifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of Debug output on purpose.
        let algs: Vec<_> = self.keys.iter().map(|(a, _)| a).collect();
        f.debug_struct("JwtVerifier")
            .field("algorithms", &algs)
            .finish_non_exhaustive()
    }
}

/// Whether `s` has the shape of a compact JWS (`xxx.yyy.zzz`, base64url).
pub fn looks_like_jwt(s: &str) -> bool {
    s.split('.').count() == 3
        && s.len() > 10
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

impl JwtVerifier {
    /// Builds from the configured secret and/or public key file. Errors name the file
    /// but never include key bytes.
    pub fn new(
        secret: Option<&str>,
        public_key: Option<&Path>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Option<JwtVerifier>, LoadError> {
        let mut keys = Vec::new();
        if let Some(s) = secret {
            keys.push((Algorithm::HS256, DecodingKey::from_secret(s.as_bytes())));
        }
        if let Some(path) = public_key {
            let pem = std::fs::read(path).map_err(|error| LoadError::Read {
                flag: KEY_FLAG,
                path: path.into(),
                error,
            })?;
            let text = String::from_utf8_lossy(&pem);
            if text.contains("PRIVATE KEY") {
                return Err(LoadError::content(
                    KEY_FLAG,
                    path,
                    "this is a private key; give the public key",
                ));
            }
            // A SubjectPublicKeyInfo PEM does not say RSA or EC in its label; try both.
            if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                keys.push((Algorithm::RS256, k));
            } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                keys.push((Algorithm::ES256, k));
            } else {
                return Err(LoadError::content(
                    KEY_FLAG,
                    path,
                    "not an RSA or EC P-256 public key in PEM",
                ));
            }
        }
        if keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(JwtVerifier {
            keys,
            issuer,
            audience,
        }))
    }

    /// Verifies `token`; returns its claims.
    pub fn verify(&self, token: &str) -> Result<Map<String, Value>, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Invalid)?;
        let Some((alg, key)) = self.keys.iter().find(|(a, _)| *a == header.alg) else {
            return Err(JwtError::Invalid);
        };
        let mut v = Validation::new(*alg);
        v.leeway = 5;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp"]);
        match &self.audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        if let Some(i) = &self.issuer {
            v.set_issuer(&[i]);
        }
        match jsonwebtoken::decode::<Map<String, Value>>(token, key, &v) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => JwtError::Expired,
                ErrorKind::ImmatureSignature => JwtError::NotYetValid,
                ErrorKind::InvalidIssuer
                | ErrorKind::InvalidAudience
                | ErrorKind::MissingRequiredClaim(_) => JwtError::Claims,
                _ => JwtError::Invalid,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn hs(claims: Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn hs256_valid_expired_wrong_secret() {
        let v = JwtVerifier::new(Some("s3cret"), None, None, None)
            .unwrap()
            .unwrap();
        let ok = hs(json!({"sub": "alice", "exp": now() + 60}), "s3cret");
        assert_eq!(v.verify(&ok).unwrap()["sub"], "alice");
        let old = hs(json!({"sub": "alice", "exp": now() - 600}), "s3cret");
        assert_eq!(v.verify(&old), Err(JwtError::Expired));
        let bad = hs(json!({"sub": "alice", "exp": now() + 60}), "other");
        assert_eq!(v.verify(&bad), Err(JwtError::Invalid));
        let no_exp = hs(json!({"sub": "alice"}), "s3cret");
        assert_eq!(v.verify(&no_exp), Err(JwtError::Claims));
        assert_eq!(v.verify("garbage"), Err(JwtError::Invalid));
    }

    #[test]
    fn issuer_and_audience_when_configured() {
        let v = JwtVerifier::new(Some("k"), None, Some("me".into()), Some("relay".into()))
            .unwrap()
            .unwrap();
        let t = hs(
            json!({"sub": "a", "exp": now() + 60, "iss": "me", "aud": "relay"}),
            "k",
        );
        assert!(v.verify(&t).is_ok());
        let t = hs(
            json!({"sub": "a", "exp": now() + 60, "iss": "you", "aud": "relay"}),
            "k",
        );
        assert_eq!(v.verify(&t), Err(JwtError::Claims));
    }

    #[test]
    fn shape() {
        assert!(looks_like_jwt(
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.sig_-x"
        ));
        assert!(!looks_like_jwt("guest"));
        assert!(!looks_like_jwt("a.b"));
    }
}

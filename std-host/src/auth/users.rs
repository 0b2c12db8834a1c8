//! The static users file: user names with argon2 password hashes (PHC strings) and
//! optional claims for authorization rules.
//!
//! ```toml
//! [users.alice]
//! password = "$argon2id$v=19$m=19456,t=2,p=1$...$..."
//! rooms = ["general", "ops"]      # any other key is a claim
//! ```
//!
//! Invariants: plain-text passwords are never accepted in the file (a `password` that is
//! not an argon2 PHC string is a load error); verification of an unknown user still runs
//! one argon2 verification so response time does not reveal which names exist.

use std::collections::HashMap;
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::load_error::LoadError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: HashMap<String, UserEntry>,
}

#[derive(Deserialize)]
struct UserEntry {
    password: String,
    #[serde(flatten)]
    claims: toml::Table,
}

struct User {
    hash: String,
    claims: Map<String, Value>,
}

/// The loaded users.
pub struct Users {
    users: HashMap<String, User>,
    /// Hash verified for unknown names (see the module doc).
    decoy: String,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("count", &self.users.len())
            .finish_non_exhaustive()
    }
}

const FLAG: &str = "--users-file";

/// A hash of a random-looking password, only ever verified for unknown users.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c3RvbXAtcmVsYXktZGVjb3k$Gt3BOvDMMPcJvx7UXOTsRc2kBB6kG6M9kIXpx3hhJwk";

impl Users {
    /// Loads and checks the file; errors name the file and the user at fault.
    pub fn load(path: &Path) -> Result<Users, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|error| LoadError::Read {
            flag: FLAG,
            path: path.into(),
            error,
        })?;
        let file: UsersFile = toml::from_str(&text).map_err(|e| {
            LoadError::content(FLAG, path, e.message().lines().next().unwrap_or("invalid"))
        })?;
        let mut users = HashMap::new();
        for (name, entry) in file.users {
            if PasswordHash::new(&entry.password).is_err() || !entry.password.starts_with("$argon2")
            {
                return Err(LoadError::content(
                    FLAG,
                    path,
                    format_args!("user `{name}`: `password` must be an argon2 hash ($argon2id$...), not a plain password"),
                ));
            }
            let mut claims: Map<String, Value> = serde_json::to_value(&entry.claims)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            claims.insert("sub".into(), Value::String(name.clone()));
            users.insert(
                name,
                User {
                    hash: entry.password,
                    claims,
                },
            );
        }
        Ok(Users {
            users,
            decoy: DECOY.to_string(),
        })
    }

    /// Verifies `login`/`passcode`; the user's claims (with `sub`) when right.
    /// Costs one argon2 verification: call it off the async runtime's worker threads.
    pub fn verify(&self, login: &str, passcode: &str) -> Option<Map<String, Value>> {
        let (hash, user) = match self.users.get(login) {
            Some(u) => (u.hash.as_str(), Some(u)),
            None => (self.decoy.as_str(), None),
        };
        let parsed = PasswordHash::new(hash).ok()?;
        let ok = Argon2::default()
            .verify_password(passcode.as_bytes(), &parsed)
            .is_ok();
        match (ok, user) {
            (true, Some(u)) => Some(u.claims.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    pub(crate) fn hash(pw: &str) -> String {
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
        Argon2::default()
            .hash_password(pw.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("users-{}-{name}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn verifies_hashes_and_claims() {
        let p = write(
            "ok",
            &format!(
                "[users.alice]\npassword = \"{}\"\nrooms = [\"a\"]\n",
                hash("pw1")
            ),
        );
        let u = Users::load(&p).unwrap();
        let c = u.verify("alice", "pw1").unwrap();
        assert_eq!(c["sub"], "alice");
        assert_eq!(c["rooms"][0], "a");
        assert!(u.verify("alice", "wrong").is_none());
        assert!(u.verify("bob", "pw1").is_none());
    }

    #[test]
    fn plain_passwords_are_refused() {
        let p = write("plain", "[users.bob]\npassword = \"hunter2\"\n");
        let e = Users::load(&p).unwrap_err().to_string();
        assert!(e.contains("bob") && e.contains("argon2"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn decoy_is_a_valid_hash() {
        assert!(PasswordHash::new(DECOY).is_ok());
    }
}

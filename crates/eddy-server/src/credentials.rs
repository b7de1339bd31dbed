//! HTTP Basic users: a credentials file (`principal_file`) whose passwords are Argon2 hashes
//! (`eddy-server hash-password` makes one). A password checked once is remembered by a digest, so a
//! client sending the same credentials with every request pays Argon2's cost once.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use argon2::password_hash::SaltString;
use argon2::password_hash::rand_core::OsRng;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};

use crate::access_error::AccessError;
use crate::principal_file::{self, Entry};

/// The setting that names the file.
pub const KEY: &str = "eddy.authentication.credentials.file";

/// Most remembered checks; the memory is emptied when it is full.
const MAX_REMEMBERED: usize = 4096;

/// The users of a credentials file.
#[derive(Debug)]
pub struct Credentials {
    /// Each user's Argon2 hash and roles.
    users: HashMap<String, (String, Vec<String>)>,
    /// Digests of name and password pairs found good.
    good: Mutex<HashSet<[u8; 32]>>,
}

impl Credentials {
    /// Reads the file; every password must be an Argon2 hash.
    pub fn read(path: &Path) -> Result<Self, AccessError> {
        Self::from_entries(principal_file::read(KEY, path)?, path)
    }

    /// The users of a file's entries.
    fn from_entries(entries: Vec<Entry>, path: &Path) -> Result<Self, AccessError> {
        let mut users = HashMap::new();
        for entry in entries {
            if !is_argon2(&entry.hash) {
                return Err(AccessError::Setting {
                    key: KEY,
                    reason: format!(
                        "the password of '{}' in {} is not an Argon2 hash (plain, OBF:, MD5: and CRYPT: passwords are not taken): make one with `eddy-server hash-password`",
                        entry.name,
                        path.display()
                    ),
                });
            }
            users.insert(entry.name, (entry.hash, entry.roles));
        }
        Ok(Credentials {
            users,
            good: Mutex::default(),
        })
    }

    /// The user's roles when the password is theirs.
    pub fn check(&self, name: &str, password: &str) -> Option<&[String]> {
        let (hash, roles) = self.users.get(name)?;
        let digest: [u8; 32] = Sha256::new()
            .chain_update(name.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        let mut good = self.good.lock().unwrap_or_else(|p| p.into_inner());
        if good.contains(&digest) {
            return Some(roles);
        }
        drop(good);
        let parsed = PasswordHash::new(hash).ok()?;
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .ok()?;
        good = self.good.lock().unwrap_or_else(|p| p.into_inner());
        if good.len() >= MAX_REMEMBERED {
            good.clear();
        }
        good.insert(digest);
        Some(roles)
    }
}

fn is_argon2(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"))
}

/// An Argon2id hash of a password with a fresh salt, for a credentials file.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(text: &str) -> Result<Credentials, AccessError> {
        Credentials::from_entries(principal_file::parse(text).unwrap(), Path::new("users"))
    }

    #[test]
    fn a_password_is_checked_against_its_hash() {
        let hash = hash_password("s3cret").unwrap();
        let users = users(&format!("fred: {hash}, admin\n")).unwrap();
        assert_eq!(users.check("fred", "s3cret").unwrap(), ["admin"]);
        // Remembered the second time, and still only for the right password.
        assert_eq!(users.check("fred", "s3cret").unwrap(), ["admin"]);
        assert!(users.check("fred", "s3cret ").is_none());
        assert!(users.check("barney", "s3cret").is_none());
    }

    #[test]
    fn a_password_that_is_not_hashed_is_refused_at_start() {
        let e = users("fred: OBF:1v2j1uum1xtv1zej1zer1xtn1uvk1v1v, admin\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'fred'") && e.contains("hash-password"), "{e}");
    }
}

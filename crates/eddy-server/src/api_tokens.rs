//! Static API tokens for `Authorization: Bearer`: a file (`principal_file`) naming each token's
//! holder with the SHA-256 of the token (`sha256:<hex>`, from `eddy-server hash-token`) and its
//! roles. Tokens are long random strings, so a plain digest is enough to keep them out of the file.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::access_error::AccessError;
use crate::principal_file::{self, Entry};

/// The setting that names the file.
pub const KEY: &str = "eddy.authentication.tokens.file";

/// Shortest token `hash-token` takes: 128 bits as hex.
pub const MIN_TOKEN_CHARS: usize = 32;

/// The tokens of a tokens file, by digest.
#[derive(Debug)]
pub struct ApiTokens {
    tokens: HashMap<[u8; 32], (String, Vec<String>)>,
}

impl ApiTokens {
    /// Reads the file.
    pub fn read(path: &Path) -> Result<Self, AccessError> {
        Self::from_entries(principal_file::read(KEY, path)?, path)
    }

    fn from_entries(entries: Vec<Entry>, path: &Path) -> Result<Self, AccessError> {
        let mut tokens = HashMap::new();
        for entry in entries {
            let digest = entry
                .hash
                .strip_prefix("sha256:")
                .and_then(from_hex)
                .ok_or_else(|| AccessError::Setting {
                    key: KEY,
                    reason: format!(
                        "the token of '{}' in {} is not `sha256:` and 64 hex digits: make it with `eddy-server hash-token`",
                        entry.name,
                        path.display()
                    ),
                })?;
            tokens.insert(digest, (entry.name, entry.roles));
        }
        Ok(ApiTokens { tokens })
    }

    /// The holder's name and roles when the token is known.
    pub fn check(&self, token: &str) -> Option<(&str, &[String])> {
        let (name, roles) = self.tokens.get(&digest(token))?;
        Some((name, roles))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn from_hex(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// The line of a tokens file's hash for a token: `sha256:<hex>`.
pub fn hash_token(token: &str) -> Result<String, String> {
    if token.chars().count() < MIN_TOKEN_CHARS {
        return Err(format!(
            "a token must have at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)"
        ));
    }
    let hex: String = digest(token).iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_is_known_by_its_digest() {
        let line = format!("ci: {}, admin\n", hash_token(TOKEN).unwrap());
        let tokens =
            ApiTokens::from_entries(principal_file::parse(&line).unwrap(), Path::new("t")).unwrap();
        assert_eq!(
            tokens.check(TOKEN),
            Some(("ci", &["admin".to_string()][..]))
        );
        assert!(tokens.check(&TOKEN[1..]).is_none());
    }

    #[test]
    fn short_tokens_and_bad_digests_are_refused() {
        assert!(hash_token("short").is_err());
        let bad = principal_file::parse("ci: sha256:12, admin\n").unwrap();
        let e = ApiTokens::from_entries(bad, Path::new("t"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hash-token"), "{e}");
    }
}

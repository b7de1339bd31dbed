//! JSON Web Tokens for `Authorization: Bearer`: the signature checked against a configured key (an
//! HMAC secret, or an RSA, EC or Ed25519 public key in PEM), the expiry, and the issuer and
//! audience when they are configured; the holder is the `sub` claim and the roles are a configured
//! claim's (an array, or a string of names separated by spaces or commas).

use std::path::Path;
use std::str::FromStr;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::access_error::AccessError;

/// The settings that configure the check.
pub const KEY_LOCATION: &str = "eddy.authentication.jwt.key.location";
pub const ALGORITHM: &str = "eddy.authentication.jwt.algorithm";
pub const ISSUER: &str = "eddy.authentication.jwt.issuer";
pub const AUDIENCE: &str = "eddy.authentication.jwt.audience";
pub const ROLES_CLAIM: &str = "eddy.authentication.jwt.roles.claim";

/// Shortest HMAC secret taken.
const MIN_SECRET_BYTES: usize = 32;

/// How JWTs are checked.
pub struct JwtCheck {
    key: DecodingKey,
    validation: Validation,
    roles_claim: String,
}

impl std::fmt::Debug for JwtCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtCheck")
            .field("algorithms", &self.validation.algorithms)
            .field("roles_claim", &self.roles_claim)
            .finish_non_exhaustive()
    }
}

/// What the settings give.
#[derive(Debug, Default)]
pub struct JwtSettings<'a> {
    pub algorithm: Option<&'a str>,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub roles_claim: Option<&'a str>,
}

impl JwtCheck {
    /// Reads the key at `path` and makes the check the settings describe.
    pub fn read(path: &Path, settings: &JwtSettings) -> Result<Self, AccessError> {
        let bytes = std::fs::read(path).map_err(|source| AccessError::Read {
            key: KEY_LOCATION,
            path: path.to_path_buf(),
            source,
        })?;
        Self::new(&bytes, settings)
    }

    fn new(key: &[u8], settings: &JwtSettings) -> Result<Self, AccessError> {
        let setting = |key: &'static str, reason: String| AccessError::Setting { key, reason };
        let pem = key.starts_with(b"-----BEGIN");
        let algorithm = match settings.algorithm {
            Some(name) => Algorithm::from_str(name.trim()).map_err(|_| {
                setting(
                    ALGORITHM,
                    format!("'{name}' is not a JWT algorithm (HS256, RS256, ES256, EdDSA, ...)"),
                )
            })?,
            None if !pem => Algorithm::HS256,
            None if DecodingKey::from_rsa_pem(key).is_ok() => Algorithm::RS256,
            None if DecodingKey::from_ec_pem(key).is_ok() => Algorithm::ES256,
            None => Algorithm::EdDSA,
        };
        let decoding = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = key.trim_ascii();
                if pem || secret.len() < MIN_SECRET_BYTES {
                    return Err(setting(
                        KEY_LOCATION,
                        format!("an {algorithm:?} secret is a file of at least {MIN_SECRET_BYTES} bytes, not a PEM key"),
                    ));
                }
                Ok(DecodingKey::from_secret(secret))
            }
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(key),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(key),
            _ => DecodingKey::from_rsa_pem(key),
        }
        .map_err(|e| setting(KEY_LOCATION, format!("not a {algorithm:?} public key in PEM: {e}")))?;
        let mut validation = Validation::new(algorithm);
        validation.leeway = 30;
        if let Some(issuer) = settings.issuer {
            validation.set_issuer(&[issuer.trim()]);
        }
        match settings.audience {
            Some(audience) => validation.set_audience(&[audience.trim()]),
            None => validation.validate_aud = false,
        }
        Ok(JwtCheck {
            key: decoding,
            validation,
            roles_claim: settings.roles_claim.unwrap_or("roles").trim().to_string(),
        })
    }

    /// The holder's name and roles when the token is good; why it is not otherwise.
    pub fn check(&self, token: &str) -> Result<(String, Vec<String>), String> {
        let data = jsonwebtoken::decode::<Value>(token, &self.key, &self.validation)
            .map_err(|e| e.to_string())?;
        let claims = data.claims;
        let name = claims["sub"].as_str().unwrap_or("jwt").to_string();
        let roles = match &claims[&self.roles_claim] {
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Value::String(s) => s
                .split([' ', ','])
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        Ok((name, roles))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"a secret of at least thirty-two bytes";

    fn token(claims: Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn a_signed_token_names_its_holder_and_roles() {
        let check = JwtCheck::new(
            SECRET,
            &JwtSettings {
                issuer: Some("idp"),
                roles_claim: Some("groups"),
                ..Default::default()
            },
        )
        .unwrap();
        let good =
            token(json!({"sub": "wilma", "iss": "idp", "exp": now() + 600, "groups": ["admin"]}));
        assert_eq!(
            check.check(&good).unwrap(),
            ("wilma".into(), vec!["admin".into()])
        );
        let spaced = token(json!({"sub": "w", "iss": "idp", "exp": now() + 600, "groups": "a b"}));
        assert_eq!(check.check(&spaced).unwrap().1, ["a", "b"]);
        let expired = token(json!({"sub": "w", "iss": "idp", "exp": now() - 600}));
        assert!(check.check(&expired).is_err());
        let stranger = token(json!({"sub": "w", "iss": "other", "exp": now() + 600}));
        assert!(check.check(&stranger).is_err());
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "w", "iss": "idp", "exp": now() + 600}),
            &EncodingKey::from_secret(b"another secret of thirty-two bytes!!"),
        )
        .unwrap();
        assert!(check.check(&forged).is_err());
    }

    #[test]
    fn weak_secrets_and_unknown_algorithms_are_refused() {
        assert!(JwtCheck::new(b"short", &JwtSettings::default()).is_err());
        let e = JwtCheck::new(
            SECRET,
            &JwtSettings {
                algorithm: Some("HS999"),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains(ALGORITHM), "{e}");
    }
}

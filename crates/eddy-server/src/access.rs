//! Who may use the REST API, and for what. With authentication on (`authentication.method=BASIC`,
//! a tokens file or a JWT key), every request but the health checks names its caller — HTTP Basic
//! against the credentials file, or a bearer token (a static API token or a JWT) — and the caller's
//! roles decide: a role of `eddy.authentication.admin.roles` may do everything, any other allowed
//! role may read (queries, `SHOW`, `DESCRIBE`, `PRINT`, metrics). Servers of one service id call each
//! other's `/internal/*` with a shared secret.

use std::path::Path;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use axum::http::{HeaderMap, Method, header};
use sha2::{Digest, Sha256};

use crate::access_error::AccessError;
use crate::api_tokens::{self, ApiTokens};
use crate::credentials::{self, Credentials};
use crate::jwt::{self, JwtCheck, JwtSettings};

/// ksqlDB's settings.
pub const METHOD: &str = "authentication.method";
pub const REALM: &str = "authentication.realm";
pub const ROLES: &str = "authentication.roles";
pub const SKIP_PATHS: &str = "authentication.skip.paths";
/// Eddy's: the roles that may change things.
pub const ADMIN_ROLES: &str = "eddy.authentication.admin.roles";
/// Eddy's: the secret servers of a service id call each other with.
pub const PEER_SECRET: &str = "eddy.internal.secret";

/// Every setting `Access::from_settings` reads.
pub const KEYS: &[&str] = &[
    METHOD,
    REALM,
    ROLES,
    SKIP_PATHS,
    ADMIN_ROLES,
    PEER_SECRET,
    credentials::KEY,
    api_tokens::KEY,
    jwt::KEY_LOCATION,
    jwt::ALGORITHM,
    jwt::ISSUER,
    jwt::AUDIENCE,
    jwt::ROLES_CLAIM,
];

/// The header a server sends the peers' secret in.
pub const PEER_HEADER: &str = "x-eddy-peer";

/// Paths that never ask for credentials: the health checks probes call.
const OPEN_PATHS: &[&str] = &["/healthcheck", "/chc/live", "/chc/ready"];

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rights {
    /// Everything (also every caller when authentication is off).
    Admin,
    /// Queries and statements that change nothing.
    ReadOnly,
    /// Another server of the service id: `/internal/*` only.
    Peer,
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub rights: Rights,
}

/// Why a request is turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No credentials, or wrong ones: 401.
    Unauthenticated(String),
    /// Known, but not allowed to: 403.
    Forbidden(String),
}

/// The REST API's authentication and roles.
#[derive(Debug)]
pub struct Access {
    on: bool,
    basic: Option<Credentials>,
    tokens: Option<ApiTokens>,
    jwt: Option<JwtCheck>,
    /// The roles that may use the server at all; `None`: any (`*`).
    allowed_roles: Option<Vec<String>>,
    admin_roles: Vec<String>,
    realm: String,
    skip_paths: Vec<String>,
    peer_secret: String,
}

impl Access {
    /// Authentication off: every caller may do everything.
    pub fn open() -> Self {
        Access {
            on: false,
            basic: None,
            tokens: None,
            jwt: None,
            allowed_roles: None,
            admin_roles: Vec::new(),
            realm: String::new(),
            skip_paths: Vec::new(),
            peer_secret: String::new(),
        }
    }

    /// The access the settings (`KEYS`, looked up by `setting`) describe.
    pub fn from_settings<'a>(
        setting: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Self, AccessError> {
        let list = |key: &str| -> Vec<String> {
            setting(key)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let basic = match setting(METHOD).map(str::trim) {
            None | Some("") => false,
            Some(m) if m.eq_ignore_ascii_case("NONE") => false,
            Some(m) if m.eq_ignore_ascii_case("BASIC") => true,
            Some(m) => {
                return Err(AccessError::Setting {
                    key: METHOD,
                    reason: format!(
                        "'{m}' is not NONE or BASIC (bearer tokens are on when {} or {} is set)",
                        api_tokens::KEY,
                        jwt::KEY_LOCATION
                    ),
                });
            }
        };
        let basic = match (basic, setting(credentials::KEY)) {
            (true, Some(path)) => Some(Credentials::read(Path::new(path.trim()))?),
            (true, None) => {
                return Err(AccessError::Setting {
                    key: METHOD,
                    reason: format!("BASIC needs the users' file: set {}", credentials::KEY),
                });
            }
            (false, Some(_)) => {
                return Err(AccessError::Setting {
                    key: credentials::KEY,
                    reason: format!("the users' file is read with {METHOD}=BASIC only"),
                });
            }
            (false, None) => None,
        };
        let tokens = setting(api_tokens::KEY)
            .map(|path| ApiTokens::read(Path::new(path.trim())))
            .transpose()?;
        let jwt = setting(jwt::KEY_LOCATION)
            .map(|path| {
                JwtCheck::read(
                    Path::new(path.trim()),
                    &JwtSettings {
                        algorithm: setting(jwt::ALGORITHM),
                        issuer: setting(jwt::ISSUER),
                        audience: setting(jwt::AUDIENCE),
                        roles_claim: setting(jwt::ROLES_CLAIM),
                    },
                )
            })
            .transpose()?;
        let allowed = list(ROLES);
        let admin_roles = match list(ADMIN_ROLES) {
            roles if roles.is_empty() => vec!["admin".to_string()],
            roles => roles,
        };
        let peer_secret = match setting(PEER_SECRET).map(str::trim) {
            Some(s) if s.len() < api_tokens::MIN_TOKEN_CHARS => {
                return Err(AccessError::Setting {
                    key: PEER_SECRET,
                    reason: format!(
                        "a secret of at least {} characters (e.g. `openssl rand -hex 32`)",
                        api_tokens::MIN_TOKEN_CHARS
                    ),
                });
            }
            Some(s) => s.to_string(),
            // Nobody else knows it: other servers cannot call this one (they are told why).
            None => {
                let mut bytes = [0u8; 32];
                OsRng.fill_bytes(&mut bytes);
                bytes.iter().map(|b| format!("{b:02x}")).collect()
            }
        };
        Ok(Access {
            on: basic.is_some() || tokens.is_some() || jwt.is_some(),
            basic,
            tokens,
            jwt,
            allowed_roles: (!allowed.is_empty() && !allowed.iter().any(|r| r == "*"))
                .then_some(allowed),
            admin_roles,
            realm: setting(REALM).unwrap_or("Eddy").trim().to_string(),
            skip_paths: list(SKIP_PATHS),
            peer_secret,
        })
    }

    /// Whether requests must name their caller.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// How callers are authenticated, for the log.
    pub fn describe(&self) -> String {
        let mut ways = Vec::new();
        if self.basic.is_some() {
            ways.push("HTTP Basic".to_string());
        }
        if self.tokens.is_some() {
            ways.push("API tokens".to_string());
        }
        if let Some(jwt) = &self.jwt {
            ways.push(format!("{jwt:?}"));
        }
        format!(
            "{}; admin roles: {}",
            ways.join(", "),
            self.admin_roles.join(", ")
        )
    }

    /// The secret this server sends other servers of its service id (with authentication on).
    pub fn peer_secret(&self) -> Option<&str> {
        self.on.then_some(self.peer_secret.as_str())
    }

    /// The `WWW-Authenticate` challenge of a 401.
    pub fn challenge(&self) -> String {
        let realm = self.realm.replace('"', "");
        if self.basic.is_some() {
            format!("Basic realm=\"{realm}\"")
        } else {
            format!("Bearer realm=\"{realm}\"")
        }
    }

    /// Who calls, and whether they may call `method path`.
    pub fn admit(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Principal, Denied> {
        if !self.on {
            return Ok(Principal {
                name: String::new(),
                rights: Rights::Admin,
            });
        }
        if OPEN_PATHS.contains(&path)
            || crate::console::is_console_path(path)
            || self.skip_paths.iter().any(|p| p == path)
        {
            return Ok(Principal {
                name: String::new(),
                rights: Rights::ReadOnly,
            });
        }
        if path.starts_with("/internal/") {
            let sent = headers.get(PEER_HEADER).map(|v| v.as_bytes());
            return match sent {
                Some(s) if Sha256::digest(s) == Sha256::digest(self.peer_secret.as_bytes()) => {
                    Ok(Principal {
                        name: "peer".into(),
                        rights: Rights::Peer,
                    })
                }
                _ => Err(Denied::Unauthenticated(format!(
                    "{path} is for the servers of the service id, which call it with the same {PEER_SECRET}: set it on every server"
                ))),
            };
        }
        let (name, roles) = self.caller(headers)?;
        if let Some(allowed) = &self.allowed_roles
            && !roles.iter().any(|r| allowed.contains(r))
        {
            return Err(Denied::Forbidden(format!(
                "'{name}' has none of the roles {ROLES} allows ({})",
                allowed.join(", ")
            )));
        }
        let rights = if roles.iter().any(|r| self.admin_roles.contains(r)) {
            Rights::Admin
        } else {
            Rights::ReadOnly
        };
        let principal = Principal { name, rights };
        // Endpoints that write whatever their body says.
        let writes = *method == Method::POST
            && (path == "/inserts-stream" || path.starts_with("/subjects/"));
        if writes {
            principal
                .may_change(&format!("{method} {path}"))
                .map_err(Denied::Forbidden)?;
        }
        Ok(principal)
    }

    /// The caller's name and roles from the `Authorization` header.
    fn caller(&self, headers: &HeaderMap) -> Result<(String, Vec<String>), Denied> {
        let unauthenticated = |why: &str| Err(Denied::Unauthenticated(why.to_string()));
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return unauthenticated("credentials are needed");
        };
        let Ok(value) = value.to_str() else {
            return unauthenticated("the Authorization header is not text");
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("Basic") {
            let Some(users) = &self.basic else {
                return unauthenticated("this server takes bearer tokens, not Basic credentials");
            };
            let decoded = base64_decode(rest).and_then(|b| String::from_utf8(b).ok());
            let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return unauthenticated("Basic credentials are base64 of user:password");
            };
            return match users.check(user, password) {
                Some(roles) => Ok((user.to_string(), roles.to_vec())),
                None => unauthenticated("the user name or password is wrong"),
            };
        }
        if scheme.eq_ignore_ascii_case("Bearer") {
            if let Some((name, roles)) = self.tokens.as_ref().and_then(|t| t.check(rest)) {
                return Ok((name.to_string(), roles.to_vec()));
            }
            return match &self.jwt {
                Some(jwt) if rest.matches('.').count() == 2 => jwt
                    .check(rest)
                    .map_err(|e| Denied::Unauthenticated(format!("the token is refused: {e}"))),
                _ => unauthenticated("the token is not known"),
            };
        }
        unauthenticated("the Authorization scheme is not Basic or Bearer")
    }
}

impl Principal {
    /// Whether the caller may do something that changes the server's state (`what` says what);
    /// why not otherwise.
    pub fn may_change(&self, what: &str) -> Result<(), String> {
        match self.rights {
            Rights::Admin => Ok(()),
            _ => Err(format!(
                "'{}' may read but not change anything: {what} needs one of the roles {ADMIN_ROLES} lists",
                self.name
            )),
        }
    }
}

/// Standard base64 (with or without padding), as HTTP Basic uses.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .ok()
}

//! Every setting a server takes, by name: its own (from its configuration only), the properties
//! statements may set (`eddy_runtime::properties`), Kafka clients' (`eddy_kafka::client_settings`)
//! and plugins' (`ksql.functions.<name>.<key>`). A name none of them knows is refused with the
//! closest known one; a request may set only what a statement may.

use eddy_common::Error;
use eddy_common::closest::closest;
use eddy_kafka::{ClientSettings, Role, SettingError};
use eddy_runtime::properties::{
    Properties, QUERY_PROPERTIES, QueryProperty, is_function_setting, query_property,
};

use crate::{access, api_tokens, credentials, jwt, peer_client, tls_listener};

/// One of the server's own settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSetting {
    /// Its names: ksqlDB's first (where ksqlDB has it), then the others Eddy takes.
    pub names: &'static [&'static str],
    /// Its default.
    pub default: &'static str,
    /// What it does.
    pub doc: &'static str,
}

impl ServerSetting {
    /// The name it is documented under.
    pub fn name(&self) -> &'static str {
        self.names[0]
    }
}

/// The server's own settings (a statement cannot change them).
pub const SERVER_SETTINGS: &[ServerSetting] = &[
    ServerSetting {
        names: &["listeners", "listen"],
        default: "http://0.0.0.0:8088",
        doc: "the address the REST API is served on: http://host:port, or https://host:port with eddy.rest.ssl.certificate.location and eddy.rest.ssl.key.location",
    },
    ServerSetting {
        names: &[tls_listener::CERTIFICATE_LOCATION],
        default: "(none)",
        doc: "a PEM file of the REST API's certificate chain (the server's first) for https:// listeners",
    },
    ServerSetting {
        names: &[tls_listener::KEY_LOCATION],
        default: "(none)",
        doc: "a PEM file of the private key of the REST API's certificate",
    },
    ServerSetting {
        names: &[peer_client::CA_LOCATION],
        default: "(the system's certificates and the REST API's own chain)",
        doc: "a PEM file of the CA certificates other servers' HTTPS certificates are checked against",
    },
    ServerSetting {
        names: &[access::METHOD],
        default: "NONE",
        doc: "BASIC: every request but the health checks needs HTTP Basic credentials of a user in eddy.authentication.credentials.file (or a bearer token when those are configured too)",
    },
    ServerSetting {
        names: &[credentials::KEY],
        default: "(none)",
        doc: "the users: `name: argon2-hash[, role ...]` per line (`eddy-server hash-password` makes the hash)",
    },
    ServerSetting {
        names: &[api_tokens::KEY],
        default: "(none)",
        doc: "static API tokens for Authorization: Bearer: `name: sha256:hex[, role ...]` per line (`eddy-server hash-token`); turns authentication on",
    },
    ServerSetting {
        names: &[jwt::KEY_LOCATION],
        default: "(none)",
        doc: "the key bearer JWTs are checked with: an HMAC secret file, or an RSA, EC or Ed25519 public key in PEM; turns authentication on",
    },
    ServerSetting {
        names: &[jwt::ALGORITHM],
        default: "(HS256 for a secret, RS256, ES256 or EdDSA by the key)",
        doc: "the JWT signature algorithm",
    },
    ServerSetting {
        names: &[jwt::ISSUER],
        default: "(any)",
        doc: "the `iss` a JWT must have",
    },
    ServerSetting {
        names: &[jwt::AUDIENCE],
        default: "(any)",
        doc: "the `aud` a JWT must have",
    },
    ServerSetting {
        names: &[jwt::ROLES_CLAIM],
        default: "roles",
        doc: "the JWT claim listing the holder's roles (an array, or names separated by spaces or commas)",
    },
    ServerSetting {
        names: &[access::ROLES],
        default: "*",
        doc: "the roles that may use the server at all (`*`: any authenticated caller)",
    },
    ServerSetting {
        names: &[access::ADMIN_ROLES],
        default: "admin",
        doc: "the roles that may change things (DDL, DML, TERMINATE, RELOAD, inserts, schemas); other callers may read",
    },
    ServerSetting {
        names: &[access::REALM],
        default: "Eddy",
        doc: "the realm of the WWW-Authenticate challenge",
    },
    ServerSetting {
        names: &[access::SKIP_PATHS],
        default: "(none; /healthcheck, /chc/live and /chc/ready are always open)",
        doc: "more paths that need no credentials, comma-separated",
    },
    ServerSetting {
        names: &[access::PEER_SECRET],
        default: "(a random one: no other server can call this one)",
        doc: "with authentication on, the secret the servers of a service id call each other's /internal endpoints with; the same on every server",
    },
    ServerSetting {
        names: &["bootstrap.servers", "ksql.streams.bootstrap.servers"],
        default: "(none: a private local broker)",
        doc: "the Kafka cluster; without it the server starts and supervises a local broker",
    },
    ServerSetting {
        names: &["ksql.service.id", "service.id"],
        default: "default_",
        doc: "servers with the same service id share a catalog (command topic) and queries",
    },
    ServerSetting {
        names: &["ksql.schema.registry.url", "schema.registry.url"],
        default: "(none: the server keeps schemas itself)",
        doc: "a Confluent-compatible Schema Registry for AVRO, PROTOBUF and JSON_SR",
    },
    ServerSetting {
        names: &["ksql.schema.registry.basic.auth.credentials.source"],
        default: "(none)",
        doc: "USER_INFO: the registry is called with HTTP Basic credentials",
    },
    ServerSetting {
        names: &["ksql.schema.registry.basic.auth.user.info"],
        default: "(none)",
        doc: "the registry's HTTP Basic credentials, user:password",
    },
    ServerSetting {
        names: &["ksql.schema.registry.ssl.truststore.location"],
        default: "(the system's certificates)",
        doc: "a PEM file of the CA certificates the registry's HTTPS certificate is checked against",
    },
    ServerSetting {
        names: &["ksql.schema.registry.ssl.truststore.type"],
        default: "PEM",
        doc: "PEM (the only type Eddy reads)",
    },
    ServerSetting {
        names: &["ksql.schema.registry.ssl.truststore.password"],
        default: "(none)",
        doc: "not needed for a PEM truststore; taken and unused",
    },
    ServerSetting {
        names: &["ksql.advertised.listener", "advertised.url"],
        default: "(the listen address)",
        doc: "the URL other servers of the service id reach this one at",
    },
    ServerSetting {
        names: &["ksql.extension.dir", "plugin.dir"],
        default: "(none)",
        doc: "the directory of UDF plugins (shared libraries)",
    },
    ServerSetting {
        names: &["ksql.max.push.queries"],
        default: "100",
        doc: "most push queries (and PRINTs) running at once; more are refused with 429",
    },
    ServerSetting {
        names: &["ksql.logging.processing.rows.include"],
        default: "false",
        doc: "processing-log entries of skipped records hold the record's bytes",
    },
    ServerSetting {
        names: &["ksql.internal.topic.replicas"],
        default: "1",
        doc: "replication factor of the server's own topics (command log, processing log, peers)",
    },
    ServerSetting {
        names: &["ksql.streams.replication.factor", "replication.factor"],
        default: "1",
        doc: "replication factor of queries' internal topics (changelogs, repartition topics)",
    },
    ServerSetting {
        names: &["eddy.data.dir", "data.dir"],
        default: "./eddy-data",
        doc: "the local broker's data (without bootstrap.servers)",
    },
    ServerSetting {
        names: &["eddy.metrics.per.record"],
        default: "true",
        doc: "queries count the bytes they read and observe each output record's latency for /metrics",
    },
    ServerSetting {
        names: &["eddy.log.format", "log.format"],
        default: "text",
        doc: "log lines as text, or as JSON objects with a query's id as a field of its lines",
    },
    ServerSetting {
        names: &["eddy.transactions"],
        default: "auto",
        doc: "exactly-once output through Kafka transactions: auto (when the broker has them), on or off",
    },
];

/// What a setting's name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting<'a> {
    Server(&'static ServerSetting),
    Query(&'static QueryProperty),
    /// A Kafka client setting, for some kind of client, by its client name.
    Client(Role, &'a str),
    /// A plugin's (`ksql.functions.<name>.<key>`).
    Function,
}

/// What `key` names, or why it names nothing.
pub fn classify(key: &str) -> Result<Setting<'_>, SettingError> {
    if let Some(s) = SERVER_SETTINGS.iter().find(|s| s.names.contains(&key)) {
        return Ok(Setting::Server(s));
    }
    if let Some(p) = query_property(key) {
        return Ok(Setting::Query(p));
    }
    if is_function_setting(key) {
        return Ok(Setting::Function);
    }
    match ClientSettings::client_key(key)? {
        Some((role, name)) => Ok(Setting::Client(role, name)),
        None => Err(SettingError::Unknown {
            key: key.to_string(),
            closest: closest(key, known_names()).map(str::to_string),
        }),
    }
}

/// Every name the server knows: for suggestions.
fn known_names() -> impl Iterator<Item = &'static str> {
    SERVER_SETTINGS
        .iter()
        .flat_map(|s| s.names.iter().copied())
        .chain(QUERY_PROPERTIES.iter().map(|p| p.name))
        .chain(ClientSettings::known_names())
}

/// Checks the properties a request (or a `SET`) gives: only what a statement may set is taken.
pub fn check_request(props: &Properties) -> Result<(), Error> {
    for key in props.keys() {
        let refused = match classify(key) {
            Ok(Setting::Query(_) | Setting::Function) => continue,
            Ok(Setting::Server(_)) => format!(
                "One or more properties overrides set locally are prohibited by the KSQL server (use UNSET to reset their default value): [{key}]"
            ),
            Ok(Setting::Client(..)) => format!(
                "'{key}' is a Kafka client setting, which applies to the whole server: set it in the server's configuration file"
            ),
            Err(SettingError::Unknown { closest, .. }) => format!(
                "Not recognizable as a ksql, streams, consumer or producer property: '{key}'{}",
                closest
                    .map(|c| format!(" (did you mean '{c}'?)"))
                    .unwrap_or_default()
            ),
            Err(e) => e.to_string(),
        };
        return Err(Error::BadRequest(refused));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_told_apart_and_misspelt_ones_get_a_suggestion() {
        assert!(matches!(classify("listeners"), Ok(Setting::Server(_))));
        assert!(matches!(
            classify("ksql.streams.commit.interval.ms"),
            Ok(Setting::Query(_))
        ));
        assert!(matches!(
            classify("ksql.functions.my_udf.url"),
            Ok(Setting::Function)
        ));
        assert!(matches!(
            classify("ksql.streams.producer.linger.ms"),
            Ok(Setting::Client(Role::Producer, "linger.ms"))
        ));
        assert!(matches!(
            classify("ssl.truststore.location"),
            Ok(Setting::Client(Role::All, _))
        ));
        match classify("ksql.serivce.id") {
            Err(SettingError::Unknown { closest, .. }) => {
                assert_eq!(closest.as_deref(), Some("ksql.service.id"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_request_sets_only_what_a_statement_may() {
        let props = |k: &str| Properties::from([(k.to_string(), "1".to_string())]);
        assert!(check_request(&props("ksql.streams.auto.offset.reset")).is_ok());
        assert!(check_request(&props("ksql.functions.f.k")).is_ok());
        let typo = check_request(&props("auto.ofset.reset"))
            .unwrap_err()
            .to_string();
        assert!(typo.contains("did you mean 'auto.offset.reset'"), "{typo}");
        let server = check_request(&props("ksql.service.id"))
            .unwrap_err()
            .to_string();
        assert!(server.contains("prohibited"), "{server}");
        let client = check_request(&props("security.protocol"))
            .unwrap_err()
            .to_string();
        assert!(client.contains("configuration file"), "{client}");
        // Hostile names are refused, without a suggestion, at once.
        for hostile in [
            "a\0b".to_string(),
            "x".repeat(1_000_000),
            "ksql.streams.consumer.\u{1F600}".into(),
        ] {
            assert!(check_request(&props(&hostile)).is_err());
        }
    }

    #[test]
    fn every_setting_is_in_the_configuration_reference() {
        let reference = include_str!("../../../docs/configuration.md");
        let names = SERVER_SETTINGS
            .iter()
            .flat_map(|s| s.names.iter().copied())
            .chain(QUERY_PROPERTIES.iter().map(|p| p.name))
            .chain(ClientSettings::java_names());
        let missing: Vec<&str> = names
            .filter(|n| !reference.contains(&format!("`{n}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "not in docs/configuration.md: {missing:?}"
        );
    }
}

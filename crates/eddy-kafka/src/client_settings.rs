//! Kafka client settings as ksqlDB users write them — Java client property names, bare or under
//! ksqlDB's prefixes (`ksql.streams.` for every client, `ksql.streams.producer.`,
//! `ksql.streams.consumer.`, `ksql.streams.admin.` for one kind) — turned into librdkafka's: the
//! names that differ are mapped (`sasl.jaas.config` into `sasl.username` and `sasl.password`, a PEM
//! truststore into `ssl.ca.location`, `fetch.max.wait.ms` into `fetch.wait.max.ms`, ...), librdkafka's
//! own names are taken as they are, Java-only settings with no effect here are noted, and settings
//! Eddy makes itself are refused. librdkafka checks every value when the settings are built, so a
//! server refuses at start what a client would refuse later.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::sync::OnceLock;

use rdkafka::bindings as rdsys;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaConfRes;

use eddy_common::closest::closest;

/// Which clients a setting is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Every client.
    All,
    Producer,
    Consumer,
    Admin,
}

/// A Kafka client setting Eddy cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// Neither a Java client property nor a librdkafka one (the user's typo, most often).
    #[error("'{key}' is not a Kafka client setting{}", hint(.closest))]
    Unknown {
        key: String,
        closest: Option<String>,
    },
    /// A setting Eddy makes itself, or one librdkafka has no way to honour.
    #[error("'{key}' cannot be set: {reason}")]
    Refused { key: String, reason: String },
    /// A value the client refuses (secrets are not repeated).
    #[error("'{key}': {reason}")]
    Invalid { key: String, reason: String },
}

fn hint(closest: &Option<String>) -> String {
    match closest {
        Some(c) => format!(" (did you mean '{c}'?)"),
        None => String::new(),
    }
}

/// The Kafka client settings of a server: librdkafka settings per kind of client.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    settings: BTreeMap<(Role, String), String>,
    /// Java settings taken without effect, with why: logged at start.
    ignored: Vec<(String, &'static str)>,
}

/// What a Java client property becomes.
#[derive(Clone, Copy)]
enum Java {
    /// librdkafka's setting of the same name.
    Same,
    /// librdkafka's setting of another name.
    Renamed(&'static str),
    /// `sasl.jaas.config`: the login module's options.
    Jaas,
    /// `ssl.truststore.*`, `ssl.keystore.*`: files by type, resolved together.
    Store,
    /// `ssl.endpoint.identification.algorithm`: an empty value is librdkafka's `none`.
    EndpointIdentification,
    /// `acks`: only `all`, which idempotent producers need.
    Acks,
    /// `buffer.memory` in bytes: librdkafka's `queue.buffering.max.kbytes`.
    BufferMemory,
    /// A Java-only setting with no effect here, and why.
    Ignored(&'static str),
    /// A setting Eddy makes itself, or a Java class: refused, with why.
    Refused(&'static str),
}

const JAVA_ONLY: &str = "a Java client setting; librdkafka has no such setting";
const EDDY_SETS: &str = "Eddy sets it itself for each client it makes";
const IDEMPOTENT: &str = "Eddy's producers are idempotent (acks=all): repartitioning and exactly-once output rely on each partition's records staying in order";
const CLASS: &str = "it names a Java class; Eddy's clients are librdkafka's";

/// The Java client properties that are not simply librdkafka's of the same name, and the common
/// ones that are (so that they are suggested when misspelled).
const JAVA: &[(&str, Java)] = &[
    ("bootstrap.servers", Java::Same),
    ("client.id", Java::Same),
    ("client.rack", Java::Same),
    ("security.protocol", Java::Same),
    ("sasl.mechanism", Java::Renamed("sasl.mechanisms")),
    ("sasl.jaas.config", Java::Jaas),
    ("sasl.kerberos.service.name", Java::Same),
    ("ssl.truststore.location", Java::Store),
    ("ssl.truststore.type", Java::Store),
    ("ssl.truststore.password", Java::Store),
    ("ssl.truststore.certificates", Java::Renamed("ssl.ca.pem")),
    ("ssl.keystore.location", Java::Store),
    ("ssl.keystore.type", Java::Store),
    ("ssl.keystore.password", Java::Store),
    (
        "ssl.keystore.certificate.chain",
        Java::Renamed("ssl.certificate.pem"),
    ),
    ("ssl.keystore.key", Java::Renamed("ssl.key.pem")),
    ("ssl.key.password", Java::Same),
    (
        "ssl.endpoint.identification.algorithm",
        Java::EndpointIdentification,
    ),
    ("ssl.cipher.suites", Java::Same),
    (
        "ssl.protocol",
        Java::Ignored("librdkafka negotiates TLS 1.2 or later itself"),
    ),
    (
        "ssl.enabled.protocols",
        Java::Ignored("librdkafka negotiates TLS 1.2 or later itself"),
    ),
    ("ssl.provider", Java::Ignored(JAVA_ONLY)),
    ("ssl.secure.random.implementation", Java::Ignored(JAVA_ONLY)),
    ("ssl.trustmanager.algorithm", Java::Ignored(JAVA_ONLY)),
    ("ssl.keymanager.algorithm", Java::Ignored(JAVA_ONLY)),
    ("security.providers", Java::Ignored(JAVA_ONLY)),
    ("fetch.max.wait.ms", Java::Renamed("fetch.wait.max.ms")),
    ("max.request.size", Java::Renamed("message.max.bytes")),
    (
        "send.buffer.bytes",
        Java::Renamed("socket.send.buffer.bytes"),
    ),
    (
        "receive.buffer.bytes",
        Java::Renamed("socket.receive.buffer.bytes"),
    ),
    (
        "max.in.flight.requests.per.connection",
        Java::Renamed("max.in.flight"),
    ),
    ("buffer.memory", Java::BufferMemory),
    (
        "max.poll.records",
        Java::Ignored("Eddy reads micro-batches of up to 4,096 records"),
    ),
    ("default.api.timeout.ms", Java::Ignored(JAVA_ONLY)),
    ("max.block.ms", Java::Ignored(JAVA_ONLY)),
    ("acks", Java::Acks),
    ("enable.idempotence", Java::Refused(IDEMPOTENT)),
    (
        "auto.offset.reset",
        Java::Refused(
            "it is a query setting: set ksql.streams.auto.offset.reset, or auto.offset.reset in a session",
        ),
    ),
    ("group.id", Java::Refused(EDDY_SETS)),
    ("group.instance.id", Java::Refused(EDDY_SETS)),
    ("enable.auto.commit", Java::Refused(EDDY_SETS)),
    ("enable.auto.offset.store", Java::Refused(EDDY_SETS)),
    ("isolation.level", Java::Refused(EDDY_SETS)),
    ("transactional.id", Java::Refused(EDDY_SETS)),
    ("partition.assignment.strategy", Java::Refused(EDDY_SETS)),
    ("enable.partition.eof", Java::Refused(EDDY_SETS)),
    ("key.serializer", Java::Refused(CLASS)),
    ("value.serializer", Java::Refused(CLASS)),
    ("key.deserializer", Java::Refused(CLASS)),
    ("value.deserializer", Java::Refused(CLASS)),
    ("interceptor.classes", Java::Refused(CLASS)),
    ("metric.reporters", Java::Refused(CLASS)),
    ("sasl.login.class", Java::Refused(CLASS)),
    ("sasl.login.callback.handler.class", Java::Refused(CLASS)),
    ("sasl.client.callback.handler.class", Java::Refused(CLASS)),
    (
        "plugin.library.paths",
        Java::Refused("it would load libraries into the server"),
    ),
];

/// ksqlDB's prefixes for client settings, longest first, and the clients they are for.
const PREFIXES: &[(&str, Role)] = &[
    ("ksql.streams.producer.", Role::Producer),
    ("ksql.streams.consumer.", Role::Consumer),
    ("ksql.streams.main.consumer.", Role::Consumer),
    ("ksql.streams.restore.consumer.", Role::Consumer),
    ("ksql.streams.global.consumer.", Role::Consumer),
    ("ksql.streams.admin.", Role::Admin),
    ("ksql.streams.", Role::All),
    ("producer.", Role::Producer),
    ("consumer.", Role::Consumer),
    ("admin.", Role::Admin),
];

/// Names of settings whose values are not repeated in messages.
fn secret(name: &str) -> bool {
    name.contains("password")
        || name.contains("jaas")
        || name.ends_with(".key")
        || name.ends_with(".pem")
}

impl ClientSettings {
    /// The clients a property is for and its client setting name, when it names a Kafka client
    /// setting (a Java client property or a librdkafka one), bare or under ksqlDB's prefixes;
    /// `Err` for a name under a client-only prefix that is no client setting.
    pub fn client_key(key: &str) -> Result<Option<(Role, &str)>, SettingError> {
        let (role, name) = PREFIXES
            .iter()
            .find_map(|(p, role)| key.strip_prefix(p).map(|n| (*role, n)))
            .unwrap_or((Role::All, key));
        if JAVA.iter().any(|(n, _)| *n == name) || librdkafka_has(name) {
            return Ok(Some((role, name)));
        }
        if role != Role::All {
            return Err(SettingError::Unknown {
                key: key.to_string(),
                closest: closest(name, known_names())
                    .map(|c| format!("{}{c}", &key[..key.len() - name.len()])),
            });
        }
        Ok(None)
    }

    /// The Java client settings Eddy maps, notes or refuses (and the common ones it passes on as
    /// they are): docs/configuration.md lists each.
    pub fn java_names() -> impl Iterator<Item = &'static str> {
        JAVA.iter().map(|(n, _)| *n)
    }

    /// Every client setting name Eddy knows, Java's and librdkafka's: for suggestions.
    pub fn known_names() -> impl Iterator<Item = &'static str> {
        known_names()
    }

    /// The settings `properties` (each a name [`ClientSettings::client_key`] recognises, with its
    /// value) make, checked by librdkafka.
    pub fn from_properties<'a>(
        properties: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, SettingError> {
        let mut settings = ClientSettings::default();
        // Store settings are resolved together, per kind of client: a location's meaning depends
        // on its type.
        let mut stores: BTreeMap<Role, BTreeMap<&str, &str>> = BTreeMap::new();
        for (key, value) in properties {
            let Some((role, name)) = Self::client_key(key)? else {
                return Err(SettingError::Unknown {
                    key: key.to_string(),
                    closest: closest(key, known_names()).map(str::to_string),
                });
            };
            let java = JAVA.iter().find(|(n, _)| *n == name).map(|(_, j)| *j);
            match java.unwrap_or(Java::Same) {
                Java::Same => settings.set(role, name, value.trim()),
                Java::Renamed(to) => settings.set(role, to, value.trim()),
                Java::Jaas => settings.jaas(role, key, value)?,
                Java::Store => {
                    stores.entry(role).or_default().insert(name, value.trim());
                }
                Java::EndpointIdentification => {
                    let value = match value.trim() {
                        "" => "none",
                        v => v,
                    };
                    settings.set(role, name, value)
                }
                Java::Acks if matches!(value.trim(), "all" | "-1") => {
                    settings.set(role, name, value.trim())
                }
                Java::Acks => {
                    return Err(SettingError::Refused {
                        key: key.to_string(),
                        reason: IDEMPOTENT.to_string(),
                    });
                }
                Java::BufferMemory => {
                    let bytes: u64 = value.trim().parse().map_err(|_| SettingError::Invalid {
                        key: key.to_string(),
                        reason: format!("'{value}' is not a number of bytes"),
                    })?;
                    let kbytes = (bytes / 1024).max(1).to_string();
                    settings.set(role, "queue.buffering.max.kbytes", &kbytes)
                }
                Java::Ignored(why) => settings.ignored.push((key.to_string(), why)),
                Java::Refused(why) => {
                    return Err(SettingError::Refused {
                        key: key.to_string(),
                        reason: why.to_string(),
                    });
                }
            }
        }
        for (role, store) in stores {
            settings.stores(role, &store)?;
        }
        settings.check()?;
        Ok(settings)
    }

    fn set(&mut self, role: Role, name: &str, value: &str) {
        let value = if name == "security.protocol" {
            value.to_ascii_lowercase()
        } else {
            value.to_string()
        };
        self.settings.insert((role, name.to_string()), value);
    }

    /// `sasl.jaas.config`: the user name and password of the PLAIN and SCRAM login modules, the
    /// principal and keytab of Kerberos'.
    fn jaas(&mut self, role: Role, key: &str, value: &str) -> Result<(), SettingError> {
        let invalid = |reason: &str| SettingError::Invalid {
            key: key.to_string(),
            reason: reason.to_string(),
        };
        let value = value.trim().trim_end_matches(';');
        let (module, options) = value
            .split_once(char::is_whitespace)
            .ok_or_else(|| invalid("expected '<LoginModule class> required key=\"value\" ...;'"))?;
        let options = jaas_options(options)
            .ok_or_else(|| invalid("its options are not key=\"value\" pairs"))?;
        let names: &[(&str, &str)] = if module.ends_with("PlainLoginModule")
            || module.ends_with("ScramLoginModule")
        {
            &[("username", "sasl.username"), ("password", "sasl.password")]
        } else if module.ends_with("Krb5LoginModule") {
            &[
                ("principal", "sasl.kerberos.principal"),
                ("keyTab", "sasl.kerberos.keytab"),
            ]
        } else if module.ends_with("OAuthBearerLoginModule") {
            // Unsecured tokens (testing only) take librdkafka's own option string.
            let config = options
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            self.set(role, "sasl.oauthbearer.config", &config);
            return Ok(());
        } else {
            return Err(SettingError::Refused {
                key: key.to_string(),
                reason: format!(
                    "the login module {module} has no librdkafka equivalent (PLAIN, SCRAM, Kerberos and OAUTHBEARER modules do)"
                ),
            });
        };
        for (option, setting) in names {
            if let Some(v) = options.iter().find(|(k, _)| k == option).map(|(_, v)| v) {
                self.set(role, setting, v);
            }
        }
        Ok(())
    }

    /// The truststore and keystore settings of one kind of client.
    fn stores(&mut self, role: Role, store: &BTreeMap<&str, &str>) -> Result<(), SettingError> {
        let kind = |location: &str, ty: Option<&&str>| -> String {
            match ty {
                Some(t) => t.to_ascii_uppercase(),
                None if location.ends_with(".jks") => "JKS".into(),
                None if location.ends_with(".p12") || location.ends_with(".pfx") => "PKCS12".into(),
                None => "PEM".into(),
            }
        };
        if let Some(location) = store.get("ssl.truststore.location") {
            match kind(location, store.get("ssl.truststore.type")).as_str() {
                "PEM" => self.set(role, "ssl.ca.location", location),
                other => {
                    return Err(SettingError::Refused {
                        key: "ssl.truststore.location".into(),
                        reason: format!(
                            "librdkafka reads CA certificates from PEM files, not {other} truststores: export them with `keytool -exportcert -rfc` (JKS) or `openssl pkcs12 -nokeys` (PKCS12) and set ssl.truststore.type=PEM"
                        ),
                    });
                }
            }
        }
        if let Some(location) = store.get("ssl.keystore.location") {
            match kind(location, store.get("ssl.keystore.type")).as_str() {
                "PKCS12" => {
                    self.set(role, "ssl.keystore.location", location);
                    if let Some(p) = store.get("ssl.keystore.password") {
                        self.set(role, "ssl.keystore.password", p);
                    }
                }
                // A PEM keystore holds the certificate chain and the private key.
                "PEM" => {
                    self.set(role, "ssl.certificate.location", location);
                    self.set(role, "ssl.key.location", location);
                }
                other => {
                    return Err(SettingError::Refused {
                        key: "ssl.keystore.location".into(),
                        reason: format!(
                            "librdkafka reads PKCS12 or PEM keystores, not {other}: convert it with `keytool -importkeystore -deststoretype PKCS12`"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Builds each kind of client's settings once, so that librdkafka checks every name and value.
    fn check(&self) -> Result<(), SettingError> {
        for role in [Role::Producer, Role::Consumer, Role::Admin] {
            let mut config = ClientConfig::new();
            self.apply(&mut config, role);
            if let Err(e) = config.create_native_config() {
                return Err(match e {
                    KafkaError::ClientConfig(_, description, key, value) => {
                        let reason = if secret(&key) {
                            description.replace(&value, "***")
                        } else {
                            description
                        };
                        SettingError::Invalid { key, reason }
                    }
                    other => SettingError::Invalid {
                        key: String::new(),
                        reason: other.to_string(),
                    },
                });
            }
        }
        Ok(())
    }

    /// Adds the settings for clients of kind `role` to `config`.
    pub fn apply(&self, config: &mut ClientConfig, role: Role) {
        for ((r, name), value) in &self.settings {
            if *r == Role::All || *r == role {
                config.set(name, value);
            }
        }
    }

    /// Java settings taken without effect, with why.
    pub fn ignored(&self) -> &[(String, &'static str)] {
        &self.ignored
    }

    /// The settings for logs: secrets masked.
    pub fn describe(&self) -> Vec<String> {
        self.settings
            .iter()
            .map(|((role, name), value)| {
                let value = if secret(name) { "***" } else { value };
                match role {
                    Role::All => format!("{name}={value}"),
                    r => format!("{r:?}: {name}={value}").to_lowercase(),
                }
            })
            .collect()
    }
}

/// `key="value"` options of a JAAS login module entry (`required`, `optional` and the like left
/// out); `None` when they are malformed.
fn jaas_options(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let word_end = rest
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_end);
        let after = after.trim_start();
        let Some(after) = after.strip_prefix('=') else {
            // A control flag (`required`, `sufficient`, ...).
            rest = after;
            continue;
        };
        let after = after.trim_start();
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                after.split_at(end)
            }
        };
        out.push((word.to_string(), value.to_string()));
        rest = after.trim_start();
    }
    Some(out)
}

fn known_names() -> impl Iterator<Item = &'static str> {
    JAVA.iter()
        .map(|(n, _)| *n)
        .chain(librdkafka_names().iter().map(String::as_str))
}

/// Whether librdkafka has a setting of that name (it says whether it knows a name it is given).
fn librdkafka_has(name: &str) -> bool {
    if librdkafka_names().contains(name) {
        return true;
    }
    match ClientConfig::new().set(name, "").create_native_config() {
        Ok(_) => true,
        Err(KafkaError::ClientConfig(code, ..)) => code != RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN,
        Err(_) => false,
    }
}

/// The settings librdkafka has a value for by default (global and topic-level), read from its
/// own configuration dump: the names suggested for a misspelt one.
fn librdkafka_names() -> &'static std::collections::BTreeSet<String> {
    static NAMES: OnceLock<std::collections::BTreeSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names = std::collections::BTreeSet::new();
        // SAFETY: a fresh configuration is dumped into an array of `count` C strings (name, value
        // pairs) that librdkafka owns until it is freed here; both configurations are destroyed.
        unsafe {
            let conf = rdsys::rd_kafka_conf_new();
            let topic = rdsys::rd_kafka_topic_conf_new();
            for (dump, count) in [
                {
                    let mut n = 0;
                    (rdsys::rd_kafka_conf_dump(conf, &mut n), n)
                },
                {
                    let mut n = 0;
                    (rdsys::rd_kafka_topic_conf_dump(topic, &mut n), n)
                },
            ] {
                if dump.is_null() {
                    continue;
                }
                for i in (0..count).step_by(2) {
                    let name = *dump.add(i);
                    if !name.is_null() {
                        names.insert(CStr::from_ptr(name).to_string_lossy().into_owned());
                    }
                }
                rdsys::rd_kafka_conf_dump_free(dump, count);
            }
            rdsys::rd_kafka_topic_conf_destroy(topic);
            rdsys::rd_kafka_conf_destroy(conf);
        }
        names
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<ClientSettings, SettingError> {
        ClientSettings::from_properties(pairs.iter().copied())
    }

    fn for_role(s: &ClientSettings, role: Role) -> BTreeMap<String, String> {
        let mut config = ClientConfig::new();
        s.apply(&mut config, role);
        // (`config_map` hides secrets.)
        s.settings
            .keys()
            .filter_map(|(_, k)| Some((k.clone(), config.get(k)?.to_string())))
            .collect()
    }

    #[test]
    fn java_names_become_librdkafka_s() {
        let s = settings(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            (
                "sasl.jaas.config",
                r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="eddy" password="s3cret";"#,
            ),
            ("ssl.truststore.location", "/etc/ca.pem"),
            ("ssl.truststore.type", "PEM"),
            ("ssl.endpoint.identification.algorithm", ""),
            ("ksql.streams.consumer.fetch.max.wait.ms", "50"),
            ("ksql.streams.producer.buffer.memory", "33554432"),
            ("ksql.streams.ssl.enabled.protocols", "TLSv1.2"),
        ])
        .unwrap();
        let consumer = for_role(&s, Role::Consumer);
        assert_eq!(consumer["security.protocol"], "sasl_ssl");
        assert_eq!(consumer["sasl.mechanisms"], "SCRAM-SHA-512");
        assert_eq!(consumer["sasl.username"], "eddy");
        assert_eq!(consumer["sasl.password"], "s3cret");
        assert_eq!(consumer["ssl.ca.location"], "/etc/ca.pem");
        assert_eq!(consumer["ssl.endpoint.identification.algorithm"], "none");
        assert_eq!(consumer["fetch.wait.max.ms"], "50");
        assert!(!consumer.contains_key("queue.buffering.max.kbytes"));
        let producer = for_role(&s, Role::Producer);
        assert_eq!(producer["queue.buffering.max.kbytes"], "32768");
        assert!(!producer.contains_key("fetch.wait.max.ms"));
        assert_eq!(s.ignored()[0].0, "ksql.streams.ssl.enabled.protocols");
        assert!(s.describe().iter().any(|d| d == "sasl.password=***"));
    }

    #[test]
    fn unknown_refused_and_invalid_settings_say_so() {
        let unknown = settings(&[("ksql.streams.consumer.fetch.min.byte", "1")]).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "'ksql.streams.consumer.fetch.min.byte' is not a Kafka client setting (did you mean 'ksql.streams.consumer.fetch.min.bytes'?)"
        );
        let typo = settings(&[("securty.protocol", "SSL")]).unwrap_err();
        assert!(
            typo.to_string()
                .contains("did you mean 'security.protocol'"),
            "{typo}"
        );
        let refused = settings(&[("ksql.streams.group.id", "x")]).unwrap_err();
        assert!(matches!(refused, SettingError::Refused { .. }), "{refused}");
        let jks =
            settings(&[("ssl.truststore.location", "/etc/kafka/truststore.jks")]).unwrap_err();
        assert!(jks.to_string().contains("keytool -exportcert"), "{jks}");
        let invalid = settings(&[("security.protocol", "carrier-pigeon")]).unwrap_err();
        assert!(matches!(invalid, SettingError::Invalid { .. }), "{invalid}");
        let secret = settings(&[("sasl.mechanism", "PLAIN"), ("ssl.key.password", "")]);
        assert!(secret.is_ok());
        // librdkafka's own names are taken as they are.
        let native = settings(&[
            ("ssl.ca.location", "/etc/ca.pem"),
            ("queue.buffering.max.ms", "5"),
        ])
        .unwrap();
        assert_eq!(
            for_role(&native, Role::Admin)["ssl.ca.location"],
            "/etc/ca.pem"
        );
    }

    #[test]
    fn client_keys_are_told_from_other_properties() {
        assert_eq!(
            ClientSettings::client_key("ksql.streams.consumer.session.timeout.ms").unwrap(),
            Some((Role::Consumer, "session.timeout.ms"))
        );
        assert_eq!(
            ClientSettings::client_key("ssl.truststore.location").unwrap(),
            Some((Role::All, "ssl.truststore.location"))
        );
        assert_eq!(ClientSettings::client_key("ksql.service.id").unwrap(), None);
        assert_eq!(
            ClientSettings::client_key("ksql.streams.num.stream.threads").unwrap(),
            None
        );
    }

    #[test]
    fn jaas_options_are_read_with_quotes_and_flags() {
        assert_eq!(
            jaas_options(r#"required username="a b" password=c"#).unwrap(),
            vec![
                ("username".into(), "a b".into()),
                ("password".into(), "c".into())
            ]
        );
        assert!(jaas_options(r#"username="unterminated"#).is_none());
    }
}

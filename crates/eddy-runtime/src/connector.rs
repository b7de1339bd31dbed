//! Source connectors the server runs itself (`CREATE SOURCE CONNECTOR`), as their statements define
//! them, checked when created. One kind so far, `MqttSource`: messages of MQTT topics (`cars/+/telemetry`)
//! written into a Kafka topic, keyed by a level of their MQTT topic (the car id), with QoS 1 and a
//! persistent session so that a restart loses nothing the MQTT broker accepted. Property names follow
//! Confluent's MQTT source connector where it has them.

use eddy_common::{Result, plan_err};
use eddy_sql::statement::Properties;

/// The classes `connector.class` may name.
const MQTT_CLASSES: [&str; 2] = [
    "MqttSource",
    "io.confluent.connect.mqtt.MqttSourceConnector",
];

/// The properties a connector takes (upper-cased, as statements key them).
const KNOWN: [&str; 9] = [
    "CONNECTOR.CLASS",
    "MQTT.SERVER.URI",
    "MQTT.TOPICS",
    "KAFKA.TOPIC",
    "MQTT.QOS",
    "MQTT.CLEAN.SESSION.ENABLED",
    "MQTT.CLIENT.ID",
    "KEY.TOPIC.LEVEL",
    "KAFKA.TOPIC.PARTITIONS",
];

/// A connector: its statement and what it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Connector {
    pub name: String,
    /// The statement that created it.
    pub statement: String,
    pub mqtt: MqttSource,
}

/// An MQTT source connector's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSource {
    pub host: String,
    pub port: u16,
    /// Topic filters (`+` and `#` wildcards).
    pub topics: Vec<String>,
    /// 0 or 1.
    pub qos: u8,
    pub kafka_topic: String,
    /// The level of the MQTT topic (0 the first) that keys the records; the whole topic when `None`.
    pub key_level: Option<usize>,
    /// The MQTT client id (the session's identity); `None`: `eddy-<service id>-<connector>`.
    pub client_id: Option<String>,
    /// `false` (the default): the MQTT broker keeps the session, and the messages published while
    /// the connector is away, for its return.
    pub clean_session: bool,
    /// Partitions of the Kafka topic, when the connector creates it.
    pub partitions: Option<i32>,
}

impl MqttSource {
    /// The record key of a message on `topic`: its key level, or the whole topic (`None` when the
    /// topic has no such level).
    pub fn key<'a>(&self, topic: &'a str) -> Option<&'a str> {
        match self.key_level {
            Some(level) => topic.split('/').nth(level),
            None => Some(topic),
        }
    }
}

impl Connector {
    /// A connector from its statement's `WITH` properties.
    pub fn new(name: &str, statement: &str, props: &Properties) -> Result<Connector> {
        if let Some(unknown) = props.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(plan_err!(
                "Unknown connector property '{}': the MqttSource connector takes {}",
                unknown.to_ascii_lowercase(),
                KNOWN.map(str::to_ascii_lowercase).join(", ")
            ));
        }
        let get = |k: &str| props.get(k).map(|v| v.text());
        let required = |k: &str| {
            get(k).ok_or_else(|| {
                plan_err!(
                    "A source connector needs the property '{}'",
                    k.to_ascii_lowercase()
                )
            })
        };
        let class = required("CONNECTOR.CLASS")?;
        if !MQTT_CLASSES.contains(&class.as_str()) {
            return Err(plan_err!(
                "Unknown connector class '{class}': Eddy runs {} itself (Kafka Connect is not needed, nor used)",
                MQTT_CLASSES.join(" or ")
            ));
        }
        let uri = required("MQTT.SERVER.URI")?;
        let (host, port) = server_uri(&uri)?;
        let topics: Vec<String> = required("MQTT.TOPICS")?
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if topics.is_empty() {
            return Err(plan_err!("'mqtt.topics' names no topic"));
        }
        let number = |k: &str| -> Result<Option<i64>> {
            get(k)
                .map(|v| {
                    v.trim().parse().map_err(|_| {
                        plan_err!("'{}' must be a number, not '{v}'", k.to_ascii_lowercase())
                    })
                })
                .transpose()
        };
        let qos = match number("MQTT.QOS")?.unwrap_or(1) {
            q @ (0 | 1) => q as u8,
            q => {
                return Err(plan_err!(
                    "'mqtt.qos' must be 0 or 1 (at most once, at least once), not {q}"
                ));
            }
        };
        let key_level = number("KEY.TOPIC.LEVEL")?
            .map(|l| {
                usize::try_from(l).map_err(|_| plan_err!("'key.topic.level' must be 0 or more"))
            })
            .transpose()?;
        let partitions = number("KAFKA.TOPIC.PARTITIONS")?
            .map(|p| {
                i32::try_from(p)
                    .ok()
                    .filter(|p| (1..=10_000).contains(p))
                    .ok_or_else(|| plan_err!("'kafka.topic.partitions' must be 1 to 10000"))
            })
            .transpose()?;
        let clean_session = match get("MQTT.CLEAN.SESSION.ENABLED").as_deref() {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                return Err(plan_err!(
                    "'mqtt.clean.session.enabled' must be true or false, not '{v}'"
                ));
            }
        };
        Ok(Connector {
            name: name.to_string(),
            statement: statement.to_string(),
            mqtt: MqttSource {
                host,
                port,
                topics,
                qos,
                kafka_topic: required("KAFKA.TOPIC")?,
                key_level,
                client_id: get("MQTT.CLIENT.ID"),
                clean_session,
                partitions,
            },
        })
    }
}

/// `tcp://host:port` (or `host:port`; port 1883 when absent); the first of a comma-separated list.
fn server_uri(uri: &str) -> Result<(String, u16)> {
    let first = uri.split(',').next().unwrap_or_default().trim();
    let rest = match first.split_once("://") {
        Some(("tcp" | "mqtt", rest)) => rest,
        Some((scheme, _)) => {
            return Err(plan_err!(
                "'mqtt.server.uri' scheme '{scheme}' is not supported: use tcp://host:port"
            ));
        }
        None => first,
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse()
                .map_err(|_| plan_err!("'mqtt.server.uri' has a bad port: '{uri}'"))?,
        ),
        None => (rest, 1883),
    };
    if host.is_empty() {
        return Err(plan_err!("'mqtt.server.uri' names no host: '{uri}'"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_sql::statement::PropertyValue;

    fn props(pairs: &[(&str, &str)]) -> Properties {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), PropertyValue::String(v.to_string())))
            .collect()
    }

    #[test]
    fn an_mqtt_source_is_read_from_its_properties() {
        let c = Connector::new(
            "CARS",
            "CREATE SOURCE CONNECTOR cars ...",
            &props(&[
                ("CONNECTOR.CLASS", "MqttSource"),
                ("MQTT.SERVER.URI", "tcp://localhost:1884"),
                ("MQTT.TOPICS", "cars/+/telemetry, trucks/#"),
                ("KAFKA.TOPIC", "telemetry"),
                ("KEY.TOPIC.LEVEL", "1"),
            ]),
        )
        .unwrap();
        assert_eq!((c.mqtt.host.as_str(), c.mqtt.port), ("localhost", 1884));
        assert_eq!(c.mqtt.topics, ["cars/+/telemetry", "trucks/#"]);
        assert_eq!((c.mqtt.qos, c.mqtt.clean_session), (1, false));
        assert_eq!(c.mqtt.key("cars/car-7/telemetry"), Some("car-7"));
        assert_eq!(c.mqtt.key("cars"), None);
    }

    #[test]
    fn bad_properties_are_refused_by_name() {
        let base = [
            ("CONNECTOR.CLASS", "MqttSource"),
            ("MQTT.SERVER.URI", "tcp://localhost"),
            ("MQTT.TOPICS", "a/b"),
            ("KAFKA.TOPIC", "t"),
        ];
        for (extra, want) in [
            (("MQTT.QOS", "2"), "must be 0 or 1"),
            (
                ("MQTT.TOPIC", "x"),
                "Unknown connector property 'mqtt.topic'",
            ),
            (
                ("CONNECTOR.CLASS", "JdbcSource"),
                "Unknown connector class 'JdbcSource'",
            ),
            (
                ("MQTT.SERVER.URI", "ssl://h:1"),
                "scheme 'ssl' is not supported",
            ),
            (("KAFKA.TOPIC.PARTITIONS", "0"), "must be 1 to 10000"),
        ] {
            let mut p = props(&base);
            p.insert(
                extra.0.to_string(),
                PropertyValue::String(extra.1.to_string()),
            );
            let e = Connector::new("C", "", &p).unwrap_err().to_string();
            assert!(e.contains(want), "{extra:?}: {e}");
        }
        let e = Connector::new("C", "", &props(&base[..3])).unwrap_err();
        assert!(
            e.to_string().contains("needs the property 'kafka.topic'"),
            "{e}"
        );
    }
}

//! The properties a statement runs with (the server's, with a session's `SET`s and a request's
//! `streamsProperties` over them), by their ksqlDB names, and the ones a statement may set: what
//! each does in Eddy, or why it has no effect here.

use std::collections::BTreeMap;

/// Session properties that change how statements execute.
pub type Properties = BTreeMap<String, String>;

/// A property a statement may set (in a session, a request or the server's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryProperty {
    /// Its ksqlDB name; Kafka Streams' settings are also accepted under `ksql.streams.`.
    pub name: &'static str,
    /// Its default, as ksqlDB documents it.
    pub default: &'static str,
    /// What it does in Eddy.
    pub effect: Effect,
}

/// Whether Eddy honours a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// What it does.
    Honoured(&'static str),
    /// Accepted for ksqlDB compatibility, with no effect, and why.
    Ignored(&'static str),
}

/// Whether a property is one of Kafka Streams' (written with or without `ksql.streams.`).
fn streams(name: &str) -> bool {
    !name.starts_with("ksql.") && name != "use.exact.numeric.comparison"
}

/// The properties a statement may set.
pub const QUERY_PROPERTIES: &[QueryProperty] = &[
    QueryProperty {
        name: "auto.offset.reset",
        default: "latest",
        effect: Effect::Honoured("where a new query starts reading its inputs: earliest or latest"),
    },
    QueryProperty {
        name: "processing.guarantee",
        default: "at_least_once",
        effect: Effect::Honoured("at_least_once, or exactly_once_v2 for exactly-once output"),
    },
    QueryProperty {
        name: "commit.interval.ms",
        default: "2000",
        effect: Effect::Honoured(
            "how often a stateful query writes its state and emits its changed rows",
        ),
    },
    QueryProperty {
        name: "cache.max.bytes.buffering",
        default: "10485760",
        effect: Effect::Honoured(
            "0: an aggregation emits every change; otherwise once per commit interval",
        ),
    },
    QueryProperty {
        name: "max.task.idle.ms",
        default: "0",
        effect: Effect::Honoured(
            "how long a join waits for a side that ran dry before going on in time order",
        ),
    },
    QueryProperty {
        name: "ksql.query.pull.table.scan.enabled",
        default: "true",
        effect: Effect::Honoured("whether a pull query may scan a whole table"),
    },
    QueryProperty {
        name: "ksql.query.pull.limit.clause.enabled",
        default: "true",
        effect: Effect::Honoured("whether a pull query may have a LIMIT"),
    },
    QueryProperty {
        name: "ksql.output.topic.name.prefix",
        default: "",
        effect: Effect::Honoured("a prefix for the topics CREATE ... AS SELECT creates"),
    },
    QueryProperty {
        name: "ksql.sink.replicas",
        default: "1",
        effect: Effect::Honoured(
            "the replication factor of the topics CREATE and CSAS/CTAS statements create without REPLICAS",
        ),
    },
    QueryProperty {
        name: "ksql.persistence.default.format.key",
        default: "KAFKA",
        effect: Effect::Honoured("the key format of a sink whose source has no key"),
    },
    QueryProperty {
        name: "ksql.query.retry.backoff.initial.ms",
        default: "15000",
        effect: Effect::Honoured("the first wait before a failed query is retried"),
    },
    QueryProperty {
        name: "ksql.query.retry.backoff.max.ms",
        default: "900000",
        effect: Effect::Honoured("the longest wait before a failed query is retried"),
    },
    QueryProperty {
        name: "num.stream.threads",
        default: "4",
        effect: Effect::Ignored("each query runs in tasks of its own"),
    },
    QueryProperty {
        name: "state.dir",
        default: "/tmp/kafka-streams",
        effect: Effect::Ignored("state lives in memory and in changelog topics, not on disk"),
    },
    QueryProperty {
        name: "topology.optimization",
        default: "all",
        effect: Effect::Ignored(
            "Eddy always reads a table from its source topic and repartitions only where needed",
        ),
    },
    QueryProperty {
        name: "ksql.fail.on.deserialization.error",
        default: "false",
        effect: Effect::Ignored(
            "a record that cannot be read is always skipped, counted and logged",
        ),
    },
    QueryProperty {
        name: "ksql.fail.on.production.error",
        default: "true",
        effect: Effect::Ignored(
            "output the broker refuses for good always fails the query, which is retried",
        ),
    },
    QueryProperty {
        name: "ksql.persistence.wrap.single.values",
        default: "true",
        effect: Effect::Ignored("set WRAP_SINGLE_VALUE in the statement's WITH clause"),
    },
    QueryProperty {
        name: "ksql.query.persistent.active.limit",
        default: "2147483647",
        effect: Effect::Ignored("Eddy does not limit the number of persistent queries"),
    },
    QueryProperty {
        name: "ksql.query.push.v2.enabled",
        default: "false",
        effect: Effect::Ignored("push queries always run as Eddy runs them"),
    },
    QueryProperty {
        name: "ksql.endpoint.migrate.query",
        default: "true",
        effect: Effect::Ignored("/query-stream always answers"),
    },
    QueryProperty {
        name: "ksql.windowed.session.key.legacy",
        default: "false",
        effect: Effect::Ignored("a legacy setting of old ksqlDB versions"),
    },
    QueryProperty {
        name: "ksql.functions.substring.legacy.args",
        default: "false",
        effect: Effect::Ignored("a legacy setting of old ksqlDB versions"),
    },
    QueryProperty {
        name: "use.exact.numeric.comparison",
        default: "true",
        effect: Effect::Ignored("numbers are always compared exactly"),
    },
];

/// The property `key` names (Kafka Streams' also under `ksql.streams.`), if a statement may set it.
pub fn query_property(key: &str) -> Option<&'static QueryProperty> {
    let bare = key.strip_prefix("ksql.streams.").unwrap_or(key);
    QUERY_PROPERTIES
        .iter()
        .find(|p| p.name == key || (streams(p.name) && p.name == bare))
}

/// The configuration of UDF plugins: `ksql.functions.<function>.<key>` (ksqlDB's), handed to the
/// plugins.
pub fn is_function_setting(key: &str) -> bool {
    key.strip_prefix("ksql.functions.")
        .is_some_and(|rest| rest.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_found_by_ksqldb_s_names() {
        assert_eq!(
            query_property("ksql.streams.auto.offset.reset").map(|p| p.name),
            Some("auto.offset.reset")
        );
        assert_eq!(
            query_property("commit.interval.ms").map(|p| p.name),
            Some("commit.interval.ms")
        );
        assert!(query_property("ksql.streams.ksql.output.topic.name.prefix").is_none());
        assert!(query_property("ksql.streams.bogus").is_none());
        assert!(is_function_setting("ksql.functions.my_udf.api.key"));
        assert!(!is_function_setting("ksql.functions"));
    }
}

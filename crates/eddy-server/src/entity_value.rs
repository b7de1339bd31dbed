//! A typed `/ksql` entity as the JSON value the response is made of.

use serde::Serialize;
use serde_json::Value;

/// `entity` as JSON. The entities are structs of strings, numbers, flags, maps and lists of them,
/// which always serialize; `Null` stands in should one ever not.
pub fn entity_value(entity: impl Serialize) -> Value {
    serde_json::to_value(entity).unwrap_or(Value::Null)
}

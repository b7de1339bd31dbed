//! ksqlDB's SQL types and their Arrow representation.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use eddy_common::{Result, not_supported};

/// A ksqlDB SQL type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SqlType {
    Boolean,
    Int,
    Bigint,
    Double,
    Decimal { precision: u8, scale: i8 },
    String,
    Bytes,
    Timestamp,
    Date,
    Time,
    Array(Box<SqlType>),
    Map(Box<SqlType>, Box<SqlType>),
    Struct(Vec<(String, SqlType)>),
}

impl SqlType {
    /// The Arrow type Eddy stores values of this type in.
    pub fn to_arrow(&self) -> DataType {
        match self {
            SqlType::Boolean => DataType::Boolean,
            SqlType::Int => DataType::Int32,
            SqlType::Bigint => DataType::Int64,
            SqlType::Double => DataType::Float64,
            SqlType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            SqlType::String => DataType::Utf8,
            SqlType::Bytes => DataType::Binary,
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            SqlType::Date => DataType::Date32,
            SqlType::Time => DataType::Time32(TimeUnit::Millisecond),
            SqlType::Array(e) => DataType::List(Arc::new(Field::new("item", e.to_arrow(), true))),
            SqlType::Map(k, v) => DataType::Map(
                Arc::new(Field::new(
                    "entries",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", k.to_arrow(), false),
                        Field::new("value", v.to_arrow(), true),
                    ])),
                    false,
                )),
                false,
            ),
            SqlType::Struct(fields) => DataType::Struct(
                fields
                    .iter()
                    .map(|(n, t)| Field::new(n, t.to_arrow(), true))
                    .collect(),
            ),
        }
    }

    /// The SQL type of an Arrow type computed by an expression.
    pub fn from_arrow(dt: &DataType) -> Result<SqlType> {
        Ok(match dt {
            DataType::Boolean => SqlType::Boolean,
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::UInt8
            | DataType::UInt16 => SqlType::Int,
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => SqlType::Bigint,
            DataType::Float16 | DataType::Float32 | DataType::Float64 => SqlType::Double,
            DataType::Decimal32(p, s)
            | DataType::Decimal64(p, s)
            | DataType::Decimal128(p, s)
            | DataType::Decimal256(p, s) => SqlType::Decimal {
                precision: *p,
                scale: *s,
            },
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                SqlType::String
            }
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => SqlType::Bytes,
            DataType::Timestamp(_, _) => SqlType::Timestamp,
            DataType::Date32 | DataType::Date64 => SqlType::Date,
            DataType::Time32(_) | DataType::Time64(_) => SqlType::Time,
            DataType::List(f)
            | DataType::LargeList(f)
            | DataType::FixedSizeList(f, _)
            | DataType::ListView(f) => {
                SqlType::Array(Box::new(SqlType::from_arrow(f.data_type())?))
            }
            DataType::Map(entries, _) => match entries.data_type() {
                DataType::Struct(kv) if kv.len() == 2 => SqlType::Map(
                    Box::new(SqlType::from_arrow(kv[0].data_type())?),
                    Box::new(SqlType::from_arrow(kv[1].data_type())?),
                ),
                other => return Err(not_supported!("map entries of type {other}")),
            },
            DataType::Struct(fields) => SqlType::Struct(
                fields
                    .iter()
                    .map(|f| Ok((f.name().clone(), SqlType::from_arrow(f.data_type())?)))
                    .collect::<Result<_>>()?,
            ),
            DataType::Dictionary(_, v) => SqlType::from_arrow(v)?,
            other => {
                return Err(not_supported!(
                    "values of Arrow type {other} have no SQL type"
                ));
            }
        })
    }

    /// ksqlDB's name of the type's kind (`SchemaInfo.type` in the REST API).
    pub fn kind_name(&self) -> &'static str {
        match self {
            SqlType::Boolean => "BOOLEAN",
            SqlType::Int => "INTEGER",
            SqlType::Bigint => "BIGINT",
            SqlType::Double => "DOUBLE",
            SqlType::Decimal { .. } => "DECIMAL",
            SqlType::String => "STRING",
            SqlType::Bytes => "BYTES",
            SqlType::Timestamp => "TIMESTAMP",
            SqlType::Date => "DATE",
            SqlType::Time => "TIME",
            SqlType::Array(_) => "ARRAY",
            SqlType::Map(_, _) => "MAP",
            SqlType::Struct(_) => "STRUCT",
        }
    }

    /// The type as written in `/query-stream` metadata: struct field names without back-quotes.
    pub fn plain_name(&self) -> String {
        self.render(false)
    }

    fn render(&self, quoted: bool) -> String {
        match self {
            SqlType::Decimal { precision, scale } => format!("DECIMAL({precision}, {scale})"),
            SqlType::Array(e) => format!("ARRAY<{}>", e.render(quoted)),
            SqlType::Map(k, v) => format!("MAP<{}, {}>", k.render(quoted), v.render(quoted)),
            SqlType::Struct(fields) => {
                let inner: Vec<String> = fields
                    .iter()
                    .map(|(n, t)| {
                        if quoted {
                            format!("`{n}` {}", t.render(quoted))
                        } else {
                            format!("{n} {}", t.render(quoted))
                        }
                    })
                    .collect();
                format!("STRUCT<{}>", inner.join(", "))
            }
            other => other.kind_name().to_string(),
        }
    }

    /// Looks up a type by its SQL name (without parameters).
    pub fn simple(name: &str) -> Option<SqlType> {
        Some(match name.to_ascii_uppercase().as_str() {
            "BOOLEAN" => SqlType::Boolean,
            "INT" | "INTEGER" => SqlType::Int,
            "BIGINT" => SqlType::Bigint,
            "DOUBLE" => SqlType::Double,
            "STRING" | "VARCHAR" => SqlType::String,
            "BYTES" => SqlType::Bytes,
            "TIMESTAMP" => SqlType::Timestamp,
            "DATE" => SqlType::Date,
            "TIME" => SqlType::Time,
            _ => return None,
        })
    }
}

/// The ksqlDB rendering, with back-quoted struct field names: ``STRUCT<`A` INTEGER>``.
impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip_through_arrow() {
        let t = SqlType::Struct(vec![
            ("A".into(), SqlType::Int),
            (
                "B".into(),
                SqlType::Array(Box::new(SqlType::Map(
                    Box::new(SqlType::String),
                    Box::new(SqlType::Double),
                ))),
            ),
            (
                "C".into(),
                SqlType::Decimal {
                    precision: 4,
                    scale: 2,
                },
            ),
        ]);
        assert_eq!(SqlType::from_arrow(&t.to_arrow()).unwrap(), t);
        assert_eq!(
            t.to_string(),
            "STRUCT<`A` INTEGER, `B` ARRAY<MAP<STRING, DOUBLE>>, `C` DECIMAL(4, 2)>"
        );
        assert_eq!(
            t.plain_name(),
            "STRUCT<A INTEGER, B ARRAY<MAP<STRING, DOUBLE>>, C DECIMAL(4, 2)>"
        );
    }
}

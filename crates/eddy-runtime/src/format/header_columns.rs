//! Columns read from a record's headers: `HEADERS` (all of them, as `ARRAY<STRUCT<KEY STRING,
//! VALUE BYTES>>`) and `HEADER('key')` (the value of the last header with that key, as `BYTES`).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, ListBuilder, StringBuilder, StructBuilder,
};
use datafusion::arrow::datatypes::{DataType, FieldRef, Fields};

use eddy_common::{Result, exec_err};
use eddy_sql::catalog::Source;
use eddy_sql::statement::ColumnRole;

use crate::record::RecordRef;

/// What one header column reads.
#[derive(Debug, Clone)]
enum HeaderColumn {
    /// Every header: the list's element field and the struct's fields.
    All(FieldRef, Fields),
    /// The last header with this key.
    Last(String),
}

/// The header columns of a source, in the order of its input schema.
#[derive(Debug, Clone, Default)]
pub struct HeaderColumns {
    columns: Vec<HeaderColumn>,
}

/// The builders of one batch's header columns.
pub struct HeaderBuilders {
    builders: Vec<HeaderBuilder>,
}

enum HeaderBuilder {
    All(ListBuilder<StructBuilder>),
    Last(String, BinaryBuilder),
}

impl HeaderColumns {
    pub fn new(source: &Source) -> Result<Self> {
        let columns = source
            .header_columns()
            .map(|c| match (c.role, c.sql_type.to_arrow()) {
                (ColumnRole::Headers, DataType::List(element)) => match element.data_type() {
                    DataType::Struct(fields) => {
                        Ok(HeaderColumn::All(element.clone(), fields.clone()))
                    }
                    other => Err(exec_err!("HEADERS column {} holds {other}", c.name)),
                },
                (ColumnRole::Header, DataType::Binary) => {
                    Ok(HeaderColumn::Last(c.header_key.clone().unwrap_or_default()))
                }
                (_, other) => Err(exec_err!("header column {} cannot be {other}", c.name)),
            })
            .collect::<Result<_>>()?;
        Ok(HeaderColumns { columns })
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Builders for a batch of up to `rows` records.
    pub fn builders(&self, rows: usize) -> HeaderBuilders {
        let builders = self
            .columns
            .iter()
            .map(|c| match c {
                HeaderColumn::All(element, fields) => HeaderBuilder::All(
                    ListBuilder::with_capacity(StructBuilder::from_fields(fields.clone(), 0), rows)
                        .with_field(element.clone()),
                ),
                HeaderColumn::Last(key) => {
                    HeaderBuilder::Last(key.clone(), BinaryBuilder::with_capacity(rows, 0))
                }
            })
            .collect();
        HeaderBuilders { builders }
    }
}

impl HeaderBuilders {
    /// Appends a record's headers as one row.
    pub fn append<R: RecordRef>(&mut self, record: &R) -> Result<()> {
        let count = record.header_count();
        for builder in &mut self.builders {
            match builder {
                HeaderBuilder::All(list) => {
                    let entries = list.values();
                    for (key, value) in (0..count).filter_map(|i| record.header(i)) {
                        field::<StringBuilder>(entries, 0)?.append_value(key);
                        field::<BinaryBuilder>(entries, 1)?.append_option(value);
                        entries.append(true);
                    }
                    list.append(true);
                }
                HeaderBuilder::Last(key, values) => {
                    let last = (0..count)
                        .rev()
                        .filter_map(|i| record.header(i))
                        .find(|(k, _)| k == key);
                    values.append_option(last.and_then(|(_, v)| v));
                }
            }
        }
        Ok(())
    }

    /// The columns, in order.
    pub fn finish(self) -> Vec<ArrayRef> {
        self.builders
            .into_iter()
            .map(|b| -> ArrayRef {
                match b {
                    HeaderBuilder::All(mut list) => Arc::new(list.finish()),
                    HeaderBuilder::Last(_, mut values) => Arc::new(values.finish()),
                }
            })
            .collect()
    }
}

fn field<T: ArrayBuilder>(entries: &mut StructBuilder, i: usize) -> Result<&mut T> {
    entries
        .field_builder::<T>(i)
        .ok_or_else(|| exec_err!("the HEADERS struct's field {i} has another type"))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};

    use super::*;
    use crate::record::Record;
    use crate::{Engine, MemoryTopics};

    fn source() -> Arc<Source> {
        let mut engine = Engine::new(Arc::new(MemoryTopics::new()));
        let sql = "CREATE STREAM s (id INT KEY, h ARRAY<STRUCT<key STRING, value BYTES>> HEADERS, a BYTES HEADER('a'), v INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);";
        for s in eddy_sql::parse(sql).unwrap() {
            engine.execute(&s, &Default::default()).unwrap();
        }
        engine.catalog().get("S").unwrap().clone()
    }

    #[test]
    fn headers_become_a_list_and_the_last_value_of_a_key() {
        let source = source();
        let names: Vec<String> = source
            .input_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names[3..], ["ID", "V", "H", "A"]);
        let columns = HeaderColumns::new(&source).unwrap();
        let mut builders = columns.builders(2);
        let record = |headers: Vec<(&str, Option<&[u8]>)>| Record {
            key: None,
            value: None,
            timestamp: 0,
            partition: 0,
            offset: 0,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
                .collect(),
        };
        builders
            .append(&record(vec![
                ("a", Some(b"1")),
                ("b", None),
                ("a", Some(b"2")),
            ]))
            .unwrap();
        builders.append(&record(vec![])).unwrap();
        let out = builders.finish();
        let lists = out[0].as_list::<i32>();
        assert_eq!(lists.value(0).len(), 3);
        assert_eq!(lists.value(1).len(), 0);
        let entries = lists.value(0);
        let entries = entries.as_struct();
        assert_eq!(entries.column(0).as_string::<i32>().value(2), "a");
        assert!(entries.column(1).is_null(1));
        let last = out[1].as_binary::<i32>();
        assert_eq!(last.value(0), b"2");
        assert!(last.is_null(1));
    }
}

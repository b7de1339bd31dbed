//! The statements of Eddy's SQL dialect, as parsed (names already case-normalized).

use std::collections::BTreeMap;
use std::fmt;

use sqlparser::ast::{Expr, Query};

use crate::types::SqlType;

/// Whether a source is an append-only stream or an upserting table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Stream,
    Table,
}

impl SourceKind {
    /// `STREAM` or `TABLE`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Stream => "STREAM",
            SourceKind::Table => "TABLE",
        }
    }
}

/// A literal value in a `WITH (...)` clause or a `SET` statement.
#[derive(Debug, Clone, PartialEq)]
pub enum PropertyValue {
    String(String),
    Number(String),
    Bool(bool),
}

impl fmt::Display for PropertyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyValue::String(s) => write!(f, "'{}'", s.replace('\'', "''")),
            PropertyValue::Number(n) => f.write_str(n),
            PropertyValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl PropertyValue {
    /// The value as text, without quotes.
    pub fn text(&self) -> String {
        match self {
            PropertyValue::String(s) | PropertyValue::Number(s) => s.clone(),
            PropertyValue::Bool(b) => b.to_string(),
        }
    }
}

/// `WITH (...)` properties, keyed by upper-cased name.
pub type Properties = BTreeMap<String, PropertyValue>;

/// How a declared column relates to the Kafka record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnRole {
    Value,
    /// `KEY` (streams) or `PRIMARY KEY` (tables).
    Key,
    /// `HEADERS`: every header of the record, as `ARRAY<STRUCT<KEY STRING, VALUE BYTES>>` (read-only).
    Headers,
    /// `HEADER('key')`: the value of the record's last header with that key, as `BYTES` (read-only).
    Header,
}

impl ColumnRole {
    /// Whether the column is read from the record's headers.
    pub fn is_header(self) -> bool {
        matches!(self, ColumnRole::Headers | ColumnRole::Header)
    }
}

/// A column in `CREATE STREAM|TABLE (...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub sql_type: SqlType,
    pub role: ColumnRole,
    /// The header a `HEADER('key')` column reads.
    pub header_key: Option<String>,
}

/// `CREATE [OR REPLACE] [SOURCE] STREAM|TABLE [IF NOT EXISTS] name [(cols)] [WITH (...)] [AS query]`.
#[derive(Debug, Clone)]
pub struct CreateSource {
    pub kind: SourceKind,
    pub name: String,
    pub or_replace: bool,
    pub if_not_exists: bool,
    pub is_source: bool,
    pub columns: Vec<ColumnDef>,
    pub properties: Properties,
    pub query: Option<QueryStatement>,
}

/// Window kinds of `WINDOW TUMBLING|HOPPING|SESSION (...)`.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowKind {
    Tumbling { size_ms: i64 },
    Hopping { size_ms: i64, advance_ms: i64 },
    Session { gap_ms: i64 },
}

/// A `WINDOW` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSpec {
    pub kind: WindowKind,
    pub grace_ms: Option<i64>,
    pub retention_ms: Option<i64>,
}

/// `WITHIN n unit [GRACE PERIOD n unit]` or `WITHIN (before, after) ...` of a stream-stream join: how
/// far before and after a record of the left side a record of the right side may be to join it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWithin {
    pub before_ms: i64,
    pub after_ms: i64,
    /// `GRACE PERIOD`: when given, unmatched outer rows wait for the window to close (ksqlDB's
    /// behaviour since 0.23); without it they are emitted at once, with a grace of 24 hours.
    pub grace_ms: Option<i64>,
}

/// `EMIT CHANGES` or `EMIT FINAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    Changes,
    Final,
}

/// A `SELECT` with the ksqlDB clauses that sqlparser does not know, lifted out of it.
#[derive(Debug, Clone)]
pub struct QueryStatement {
    /// The standard part: `SELECT ... FROM ... WHERE ... GROUP BY ... HAVING ... LIMIT n`.
    pub query: Box<Query>,
    /// The query as written, before normalization: what ksqlDB-style messages print.
    pub written: Box<Query>,
    pub window: Option<WindowSpec>,
    pub partition_by: Option<Vec<Expr>>,
    pub emit: Option<Emit>,
    /// The `WITHIN` clause of each join of the FROM clause that has one, by the join's position
    /// (0 for the first `JOIN`).
    pub within: Vec<(usize, JoinWithin)>,
}

impl QueryStatement {
    /// The `LIMIT n`, if any.
    pub fn limit(&self) -> Option<u64> {
        use sqlparser::ast::{LimitClause, Value};
        match &self.query.limit_clause {
            Some(LimitClause::LimitOffset {
                limit: Some(Expr::Value(v)),
                ..
            }) => match &v.value {
                Value::Number(n, _) => n.parse().ok(),
                _ => None,
            },
            _ => None,
        }
    }
}

/// What `SHOW`/`LIST` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowKind {
    Streams,
    Tables,
    Topics,
    Queries,
    Properties,
    Functions,
    Variables,
    Types,
    Models,
    Connectors,
}

/// What `EXPLAIN` describes.
#[derive(Debug, Clone)]
pub enum ExplainTarget {
    /// A running persistent query, by id.
    Query(String),
    /// A query statement, planned but not run.
    Statement(Box<Statement>),
}

/// One statement of Eddy's dialect.
#[derive(Debug, Clone)]
pub enum Statement {
    CreateSource(Box<CreateSource>),
    /// `INSERT INTO target [WITH (...)] SELECT ...`.
    InsertSelect {
        target: String,
        properties: Properties,
        query: QueryStatement,
    },
    /// `INSERT INTO target [(cols)] VALUES (...)`.
    InsertValues {
        target: String,
        columns: Vec<String>,
        values: Vec<Expr>,
    },
    /// A transient query: push (`EMIT CHANGES`) or pull.
    Select(QueryStatement),
    Show {
        kind: ShowKind,
        extended: bool,
    },
    Describe {
        name: String,
        extended: bool,
    },
    DescribeFunction {
        name: String,
    },
    /// `RELOAD FUNCTIONS`: load new and changed UDF plugins (Eddy's own statement).
    ReloadFunctions,
    /// `DESCRIBE STREAMS|TABLES [EXTENDED]`.
    DescribeAll {
        kind: SourceKind,
        extended: bool,
    },
    Drop {
        kind: SourceKind,
        name: String,
        if_exists: bool,
        delete_topic: bool,
    },
    /// `ALTER STREAM|TABLE name ADD [COLUMN] col TYPE, ...`: value columns added to a source made by
    /// `CREATE STREAM|TABLE` (not by a query, and not a read-only source).
    Alter {
        kind: SourceKind,
        name: String,
        columns: Vec<ColumnDef>,
    },
    /// `TERMINATE id` or `TERMINATE ALL` (`None`).
    Terminate {
        query_id: Option<String>,
    },
    Set {
        name: String,
        value: String,
    },
    Unset {
        name: String,
    },
    Print {
        topic: String,
        from_beginning: bool,
        interval: Option<u64>,
        limit: Option<u64>,
    },
    /// `EXPLAIN query_id` or `EXPLAIN SELECT|CREATE ... AS SELECT|INSERT INTO ... SELECT`.
    Explain(ExplainTarget),
    /// `DEFINE name = 'value'`: a session variable for `${name}` in the statements after it.
    Define {
        name: String,
        value: String,
    },
    /// `UNDEFINE name`.
    Undefine {
        name: String,
    },
    /// `CREATE TYPE [IF NOT EXISTS] name AS type`: a name for a type, usable wherever a type is.
    CreateType {
        name: String,
        sql_type: SqlType,
        if_not_exists: bool,
    },
    /// `DROP TYPE [IF EXISTS] name`.
    DropType {
        name: String,
        if_exists: bool,
    },
    /// `CREATE MODEL name [VERSION n] FROM 'folder'`: registers the ONNX graph and card of a folder
    /// the server reads (`model.onnx`, `card.json`) as a version of a model (Eddy's own statement).
    CreateModel {
        name: String,
        version: Option<u32>,
        folder: String,
    },
    /// `ALTER MODEL name SET ALIAS alias = route` (`Some`: `2`, or `1 WEIGHT 90, 2 WEIGHT 10`, either
    /// optionally followed by `SHADOW 3`) or `ALTER MODEL name DROP ALIAS alias`.
    AlterModel {
        name: String,
        alias: String,
        route: Option<crate::alias_route::AliasRoute>,
    },
    /// `DROP MODEL [IF EXISTS] name [VERSION n]`.
    DropModel {
        name: String,
        version: Option<u32>,
        if_exists: bool,
    },
    /// `DESCRIBE MODEL name`.
    DescribeModel {
        name: String,
    },
    /// `CREATE SOURCE CONNECTOR [IF NOT EXISTS] name WITH ("connector.class" = 'MqttSource', ...)`:
    /// a connector the server runs itself (ksqlDB hands them to Kafka Connect).
    CreateConnector {
        name: String,
        if_not_exists: bool,
        properties: Properties,
    },
    /// `DROP CONNECTOR [IF EXISTS] name`.
    DropConnector {
        name: String,
        if_exists: bool,
    },
    /// `DESCRIBE CONNECTOR name`.
    DescribeConnector {
        name: String,
    },
    /// `ASSERT [NOT EXISTS] TOPIC name [WITH (PARTITIONS=n, REPLICAS=m)] [TIMEOUT n unit]`.
    AssertTopic {
        name: String,
        exists: bool,
        properties: Properties,
        timeout_ms: Option<i64>,
    },
    /// `ASSERT [NOT EXISTS] SCHEMA [SUBJECT 'name'] [ID n] [TIMEOUT n unit]`.
    AssertSchema {
        subject: Option<String>,
        id: Option<u64>,
        exists: bool,
        timeout_ms: Option<i64>,
    },
}

impl Statement {
    /// Whether the statement leaves the catalog, the queries, the topics and the plugins as they
    /// are (what a read-only user may run).
    pub fn is_read_only(&self) -> bool {
        match self {
            Statement::Select(_)
            | Statement::Show { .. }
            | Statement::Describe { .. }
            | Statement::DescribeFunction { .. }
            | Statement::DescribeAll { .. }
            | Statement::Set { .. }
            | Statement::Unset { .. }
            | Statement::Print { .. }
            | Statement::Explain(_)
            | Statement::DescribeModel { .. }
            | Statement::DescribeConnector { .. }
            | Statement::AssertTopic { .. }
            | Statement::AssertSchema { .. }
            | Statement::Define { .. }
            | Statement::Undefine { .. } => true,
            Statement::CreateSource(_)
            | Statement::InsertSelect { .. }
            | Statement::InsertValues { .. }
            | Statement::ReloadFunctions
            | Statement::Drop { .. }
            | Statement::Alter { .. }
            | Statement::CreateType { .. }
            | Statement::DropType { .. }
            | Statement::CreateModel { .. }
            | Statement::AlterModel { .. }
            | Statement::DropModel { .. }
            | Statement::CreateConnector { .. }
            | Statement::DropConnector { .. }
            | Statement::Terminate { .. } => false,
        }
    }

    /// ksqlDB's name for the statement's type, used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Statement::CreateSource(c) => match (c.kind, c.query.is_some()) {
                (SourceKind::Stream, false) => "CreateStream",
                (SourceKind::Table, false) => "CreateTable",
                (SourceKind::Stream, true) => "CreateStreamAsSelect",
                (SourceKind::Table, true) => "CreateTableAsSelect",
            },
            Statement::InsertSelect { .. } => "InsertInto",
            Statement::InsertValues { .. } => "InsertValues",
            Statement::Select(_) => "Query",
            Statement::Show { .. } => "Show",
            Statement::Describe { .. } | Statement::DescribeAll { .. } => "ShowColumns",
            Statement::DescribeFunction { .. } => "DescribeFunction",
            Statement::ReloadFunctions => "ReloadFunctions",
            Statement::Drop {
                kind: SourceKind::Stream,
                ..
            } => "DropStream",
            Statement::Drop {
                kind: SourceKind::Table,
                ..
            } => "DropTable",
            Statement::Alter { .. } => "AlterSource",
            Statement::Terminate { .. } => "TerminateQuery",
            Statement::Set { .. } => "SetProperty",
            Statement::Unset { .. } => "UnsetProperty",
            Statement::Print { .. } => "PrintTopic",
            Statement::Explain(_) => "Explain",
            Statement::Define { .. } => "DefineVariable",
            Statement::Undefine { .. } => "UndefineVariable",
            Statement::CreateType { .. } => "RegisterType",
            Statement::DropType { .. } => "DropType",
            Statement::CreateModel { .. } => "CreateModel",
            Statement::AlterModel { .. } => "AlterModel",
            Statement::DropModel { .. } => "DropModel",
            Statement::DescribeModel { .. } => "DescribeModel",
            Statement::CreateConnector { .. } => "CreateConnector",
            Statement::DropConnector { .. } => "DropConnector",
            Statement::DescribeConnector { .. } => "DescribeConnector",
            Statement::AssertTopic { .. } => "AssertTopic",
            Statement::AssertSchema { .. } => "AssertSchema",
        }
    }
}

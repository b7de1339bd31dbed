//! Joins in the FROM clause: the two sides, the join type and window, and the rewrite that lets the
//! rest of the query read the joined rows as if they came from one source. Each side's columns are
//! named `<ALIAS>_<COLUMN>` (`T_ID`; its pseudo-columns too: `T_ROWTIME`), the join key has a column of
//! its own, and `ROWTIME`, `ROWPARTITION` and `ROWOFFSET` are the joined row's. References are rewritten
//! to those names (`t.id` → `T_ID`, an unqualified `name` → `T_NAME` kept as `NAME` in the output), `*`
//! and `t.*` are expanded to the sides' key and value columns, and the first projection item naming a
//! column the key may be called by reads the key column.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;
use sqlparser::ast::{
    AccessExpr, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    Ident, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, TableFactor, TableWithJoins, VisitMut, VisitorMut,
};

use eddy_common::{Error, Result, not_supported, plan_err};

use crate::catalog::{
    Catalog, Column, Format, ROWOFFSET, ROWPARTITION, ROWTIME, Source, WINDOWEND, WINDOWSTART,
};
use crate::statement::{ColumnRole, JoinWithin, QueryStatement, SourceKind};
use crate::types::SqlType;

/// The pseudo-columns every side has (and the joined rows too).
const PSEUDO_COLUMN_NAMES: [&str; 3] = [ROWTIME, ROWPARTITION, ROWOFFSET];

/// The most sources one query joins.
const MAX_JOINS: usize = 64;

/// The name of the joined input in the rewritten query's FROM clause.
pub const JOINED: &str = "__EDDY_JOINED";

/// The key column of the joined input when the key is named after a source column (the projection
/// selects it by that column's name).
pub const JOIN_KEY: &str = "__EDDY_JOIN_KEY";

/// `[INNER] JOIN`, `LEFT [OUTER] JOIN`, `RIGHT [OUTER] JOIN`, `FULL OUTER JOIN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinType {
    Inner,
    Left,
    Right,
    Outer,
}

impl JoinType {
    /// Whether rows of the left side without a match are kept (with NULLs for the right).
    pub fn keeps_left(self) -> bool {
        matches!(self, JoinType::Left | JoinType::Outer)
    }

    /// Whether rows of the right side without a match are kept (with NULLs for the left).
    pub fn keeps_right(self) -> bool {
        matches!(self, JoinType::Right | JoinType::Outer)
    }

    fn text(self) -> &'static str {
        match self {
            JoinType::Inner => "inner",
            JoinType::Left => "left",
            JoinType::Right => "right",
            JoinType::Outer => "full-outer",
        }
    }
}

/// What is joined to what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Two streams, within a time window of each other.
    StreamStream(JoinWithin),
    /// Each record of the (left) stream with the (right) table's current row for its key.
    StreamTable,
    /// Two tables on their primary keys: every change of either side updates the result.
    TableTable,
    /// A table's rows with the rows of another table whose primary key an expression over them
    /// gives (a foreign key); the result is keyed by the left table's primary key.
    ForeignKey,
}

/// One side of a join.
#[derive(Debug, Clone)]
pub struct JoinSide {
    /// The source it reads; for the left side of a later join of a multi-way join, the joined
    /// input of the joins before it ([`JoinSide::nested`]).
    pub source: Arc<Source>,
    /// The side's qualifier: its alias, or the source's name (empty for a nested side).
    pub alias: String,
    /// The join expression, over the side's decoded batches ([`Source::input_schema`]).
    pub key: Arc<dyn PhysicalExpr>,
    /// How ksqlDB prints the join expression (`T.ID`).
    pub key_text: String,
    /// The side is read through a repartition topic, placed by its join expression (see
    /// [`RewrittenJoin::repartition`]).
    pub repartition: bool,
    /// The joins before this one in a multi-way join, whose joined rows this side reads.
    pub nested: Option<Arc<JoinPlan>>,
}

/// A planned join: the runtime reads both sides, joins them and hands the joined rows, laid out as
/// [`JoinPlan::schema`], to the rest of the query.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    pub kind: JoinKind,
    pub join_type: JoinType,
    pub left: JoinSide,
    pub right: JoinSide,
    /// The joined input: ROWTIME, ROWPARTITION, ROWOFFSET, the key, then each side's columns (its
    /// pseudo-columns, keys and values, window bounds) under its alias; for sources with windowed
    /// keys, last the joined row's window (WINDOWSTART, WINDOWEND).
    pub schema: SchemaRef,
    pub key: JoinKey,
}

impl JoinPlan {
    /// The sides read from topics, in the order of the FROM clause (a multi-way join's left side
    /// holds the joins before it).
    pub fn leaves(&self) -> Vec<&JoinSide> {
        let mut leaves = match &self.left.nested {
            Some(nested) => nested.leaves(),
            None => vec![&self.left],
        };
        leaves.push(&self.right);
        leaves
    }

    /// The joins of a multi-way join in the order they run, this one last (one for two sources).
    pub fn stages(&self) -> Vec<&JoinPlan> {
        let mut stages = match &self.left.nested {
            Some(nested) => nested.stages(),
            None => Vec::new(),
        };
        stages.push(self);
        stages
    }

    /// The joins from join `n` on (of those [`JoinPlan::stages`] lists), join `n`'s left side, the
    /// rows of the joins before it, read from `source` instead (as it is: not repartitioned). What
    /// runs after a query split before join `n`.
    pub fn from_stage(&self, n: usize, source: Arc<Source>) -> JoinPlan {
        let mut plan = self.clone();
        match &self.left.nested {
            Some(nested) if self.stages().len() - 1 > n => {
                plan.left.nested = Some(Arc::new(nested.from_stage(n, source)));
            }
            _ => {
                plan.left.nested = None;
                plan.left.repartition = false;
                plan.left.source = source;
            }
        }
        plan
    }

    /// ksqlDB's error for a persistent query whose projection leaves out the join key (`missing`:
    /// the key columns left out).
    pub fn missing_key(&self, sink: &str, missing: &[&str]) -> Error {
        if self.kind == JoinKind::ForeignKey {
            let prefix = format!("{}_", self.left.alias);
            let names: Vec<String> = missing
                .iter()
                .map(|m| format!("`{}`", m.strip_prefix(&prefix).unwrap_or(m)))
                .collect();
            let (noun, plural) = if names.len() == 1 {
                ("column", "")
            } else {
                ("columns", "s")
            };
            return plan_err!(
                "Primary key {noun} missing in projection. For foreign-key table-table joins, the projection must include all primary key columns from the left input table (`{}`). Missing column{plural}: {}.",
                self.left.source.name,
                names.join(", ")
            );
        }
        let prefix = format!(
            "Key missing from projection (ie, SELECT). See https://cnfl.io/2LV7ouS.\nThe query used to build `{sink}` must include the"
        );
        if self.key.synthetic {
            let k = &self.key.columns[0];
            return plan_err!(
                "{prefix} join expression {k} in its projection (eg, SELECT {k}...).\n{k} was added as a synthetic key column because the join criteria did not match any source column. This expression must be included in the projection and may be aliased."
            );
        }
        let (noun, list) = match self.key.viable.as_slice() {
            [one] => ("expression", one.clone()),
            many => ("expressions", many.join(" or ")),
        };
        plan_err!(
            "{prefix} join {noun} {list} in its projection (eg, SELECT {}...).",
            self.key.viable[0]
        )
    }
}

/// The key of the joined rows: the value both join expressions share, or for a foreign-key join
/// the left table's primary key.
#[derive(Debug, Clone)]
pub struct JoinKey {
    /// Its columns in the joined input.
    pub columns: Vec<String>,
    /// Whether the join criteria named no column the key could be called by (or the join is FULL
    /// OUTER, where either side may be missing): the key is then the synthetic `ROWKEY` column.
    pub synthetic: bool,
    /// The columns (as ksqlDB prints them, `L.A`) a projection may select the key by.
    pub viable: Vec<String>,
    /// The join expressions' type.
    pub data_type: DataType,
}

/// A join query before its expressions are planned: the rewritten statement over [`JOINED`], the
/// sources joined and the joins.
pub struct Rewritten {
    pub statement: QueryStatement,
    /// The sources joined, in the order of the FROM clause.
    pub leaves: Vec<Leaf>,
    /// The joins in order: the first joins the first two leaves, each next one the rows of the joins
    /// before it (a multi-way join's left input) with the next leaf.
    pub joins: Vec<RewrittenJoin>,
}

/// A source a join reads from its topic, with its qualifier.
pub struct Leaf {
    pub source: Arc<Source>,
    pub alias: String,
}

impl Leaf {
    /// The leaf's columns as the joined input names them, in the order of its decoded batches.
    pub fn joined_columns(&self) -> Vec<(String, DataType)> {
        self.source
            .input_schema()
            .fields()
            .iter()
            .map(|f| {
                (
                    format!("{}_{}", self.alias, f.name()),
                    f.data_type().clone(),
                )
            })
            .collect()
    }
}

/// One join of a [`Rewritten`] query.
pub struct RewrittenJoin {
    pub kind: JoinKind,
    pub join_type: JoinType,
    /// The join expressions over the left input's and the right leaf's columns under their joined
    /// names, and how ksqlDB prints them.
    pub on: [Expr; 2],
    pub on_text: [String; 2],
    /// Whether each side is repartitioned by its join expression, as ksqlDB does it: a stream whose
    /// join expression is not its key, or whose key is written in another format than the other
    /// side's (the same value must be in the same partition on both sides).
    pub repartition: [bool; 2],
    /// The key columns of its joined input (see [`JoinKey::columns`]; hidden names but in the last
    /// join, whose key is the query's).
    pub key_columns: Vec<String>,
    pub synthetic_key: bool,
    /// The joined names of the columns the key may be selected by, with how ksqlDB prints them.
    pub viable: Vec<(String, String)>,
    /// The format its key values are placed by (the partition of a value on either side).
    pub placed_by: Format,
}

/// The columns of the joined input of a multi-way join's earlier joins (`joined`, made by join
/// `stage`) as the next join reads them: its leaves' columns under their joined names, its
/// pseudo-columns and key under hidden ones.
pub fn nested_columns(joined: &Source, stage: usize) -> Vec<(String, DataType)> {
    let hidden = crate::catalog::PSEUDO_COLUMNS + joined.key_columns().count();
    joined
        .input_schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let name = if i < hidden {
                format!("__EDDY_J{stage}_{}", f.name())
            } else {
                f.name().clone()
            };
            (name, f.data_type().clone())
        })
        .collect()
}

/// What a join's left input is, for the checks of the join: a leaf, or the rows of the joins
/// before it.
struct LeftShape {
    /// How messages name it.
    name: String,
    kind: SourceKind,
    /// The format its key values are placed by.
    key_format: Format,
    /// Its columns (joined names) whose value is its key, with how ksqlDB prints them.
    keyed_by: Vec<(String, String)>,
    /// Whether it is the first leaf (not earlier joins' rows).
    leaf: bool,
}

impl LeftShape {
    fn of_leaf(leaf: &Leaf, names: &Names) -> Self {
        LeftShape {
            name: leaf.source.name.clone(),
            kind: leaf.source.kind,
            key_format: leaf.source.key_format,
            keyed_by: single_key(0, leaf, names),
            leaf: true,
        }
    }
}

/// A leaf's key column (joined name and text) when its key is one column.
fn single_key(side: usize, leaf: &Leaf, names: &Names) -> Vec<(String, String)> {
    let keys: Vec<&Column> = leaf.source.key_columns().collect();
    match keys.as_slice() {
        [k] => vec![(
            names.joined(side, &k.name),
            format!("{}.{}", leaf.alias, k.name),
        )],
        _ => Vec::new(),
    }
}

/// The columns (joined names, with how ksqlDB prints them) of a join's rows whose value is the
/// rows' key wherever they have one: the join columns of the sides always present (a join
/// column of the left side brings the columns the left's key equals), a foreign-key join's left
/// key.
fn key_equivalents(
    kind: JoinKind,
    join_type: JoinType,
    left: &LeftShape,
    [a, b]: [&Expr; 2],
    [a_text, b_text]: [&String; 2],
) -> Vec<(String, String)> {
    if kind == JoinKind::ForeignKey {
        return left.keyed_by.clone();
    }
    let mut columns = Vec::new();
    if let (false, Expr::Identifier(a)) = (join_type.keeps_right(), a) {
        columns.push((a.value.clone(), a_text.clone()));
        if left.keyed_by.iter().any(|(k, _)| *k == a.value) {
            columns.extend(left.keyed_by.iter().filter(|(k, _)| *k != a.value).cloned());
        }
    }
    if let (false, Expr::Identifier(b)) = (join_type.keeps_left(), b) {
        columns.push((b.value.clone(), b_text.clone()));
    }
    columns
}

/// Rewrites a query whose FROM clause joins sources; `None` when it has no join.
pub fn rewrite(catalog: &Catalog, stmt: &QueryStatement) -> Result<Option<Rewritten>> {
    let SetExpr::Select(select) = stmt.query.body.as_ref() else {
        return Ok(None);
    };
    let [from] = select.from.as_slice() else {
        return Err(not_supported!(
            "FROM must name one stream or table, or join them with JOIN"
        ));
    };
    if from.joins.is_empty() {
        return Ok(None);
    }
    if from.joins.len() >= MAX_JOINS {
        return Err(not_supported!(
            "A query may join at most {MAX_JOINS} sources, not {}",
            from.joins.len() + 1
        ));
    }
    let mut leaves = vec![relation(catalog, &from.relation)?];
    for join in &from.joins {
        leaves.push(relation(catalog, &join.relation)?);
    }
    for (i, leaf) in leaves.iter().enumerate() {
        if let Some(earlier) = leaves[..i]
            .iter()
            .find(|l| l.source.name == leaf.source.name)
        {
            return Err(plan_err!(
                "Can not join '{}' to '{}': self joins are not yet supported.",
                earlier.source.name,
                leaf.source.name
            ));
        }
    }
    let kafka: Vec<&str> = leaves
        .iter()
        .filter(|l| l.source.value_format.kind == crate::catalog::FormatKind::Kafka)
        .map(|l| l.source.name.as_str())
        .collect();
    if !kafka.is_empty() {
        return Err(plan_err!(
            "Source(s) {} are using the 'KAFKA' value format. This format does not yet support JOIN.",
            kafka.join(", ")
        ));
    }
    if leaves.len() > 2 && leaves.iter().any(|l| l.source.window.is_some()) {
        return Err(not_supported!(
            "Joins of more than two sources are not supported yet where a source has windowed keys"
        ));
    }
    let names = Names::new(&leaves);
    let mut left = LeftShape::of_leaf(&leaves[0], &names);
    let mut joins = Vec::with_capacity(from.joins.len());
    for (i, join) in from.joins.iter().enumerate() {
        let (rewritten, next) = rewrite_join(stmt, &names, &leaves, i, join, &left)?;
        joins.push(rewritten);
        left = next;
    }
    let Some(last) = joins.last() else {
        return Ok(None);
    };
    let mut statement = stmt.clone();
    let SetExpr::Select(select) = statement.query.body.as_mut() else {
        unreachable!("checked above")
    };
    let keyed_by_join = last.kind != JoinKind::ForeignKey
        && stmt.partition_by.is_none()
        && matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    rewrite_select(
        select,
        &names,
        &leaves,
        keyed_by_join.then_some((&last.key_columns[0], &last.viable)),
    )?;
    if let Some(exprs) = &mut statement.partition_by {
        for e in exprs {
            crate::normalize::done(e.visit(&mut References::new(&names, None)))?;
        }
    }
    select.from = vec![TableWithJoins {
        relation: TableFactor::Table {
            name: ObjectName(vec![ObjectNamePart::Identifier(quoted(JOINED))]),
            alias: None,
            args: None,
            with_hints: Vec::new(),
            version: None,
            with_ordinality: false,
            partitions: Vec::new(),
            json_path: None,
            sample: None,
            index_hints: Vec::new(),
        },
        joins: Vec::new(),
    }];
    // Messages quote the query as rewritten.
    statement.written = statement.query.clone();
    Ok(Some(Rewritten {
        statement,
        leaves,
        joins,
    }))
}

/// Rewrites join `i` (of the left input `left` with leaf `i + 1`), and describes what it makes
/// for the next join.
fn rewrite_join(
    stmt: &QueryStatement,
    names: &Names,
    leaves: &[Leaf],
    i: usize,
    join: &sqlparser::ast::Join,
    left: &LeftShape,
) -> Result<(RewrittenJoin, LeftShape)> {
    let (r, right) = (i + 1, &leaves[i + 1]);
    let last = r + 1 == leaves.len();
    let (join_type, on) = match &join.join_operator {
        JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinType::Inner, c),
        JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinType::Left, c),
        JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (JoinType::Right, c),
        JoinOperator::FullOuter(c) => (JoinType::Outer, c),
        other => return Err(not_supported!("{other:?} joins are not supported")),
    };
    let JoinConstraint::On(on) = on else {
        return Err(plan_err!("A join needs an ON clause: JOIN ... ON a = b"));
    };
    let within = stmt.within.iter().find(|(n, _)| *n == i).map(|(_, w)| *w);
    // The ON clause: one expression over each side.
    let Expr::BinaryOp {
        left: a,
        op: BinaryOperator::Eq,
        right: b,
    } = strip_nested(on)
    else {
        return Err(plan_err!(
            "Unsupported join expression: {}. Joins must be on the equality of an expression over each side (a = b).",
            crate::render::ksql_text(on)
        ));
    };
    // Messages show the ON clause as written (literals untyped), with names upper-cased.
    let [a_text, b_text] = written_on(&stmt.written, names, i)
        .and_then(|on| match strip_nested(&on) {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => Some([
                crate::render::ksql_text(left),
                crate::render::ksql_text(right),
            ]),
            _ => None,
        })
        .unwrap_or_else(|| [a, b].map(|e| crate::render::ksql_text(e)));
    let whole = format!("({a_text} = {b_text})");
    // An unknown qualifier is reported before anything else about the ON clause.
    let mut qualifiers = Ok(());
    let _ = sqlparser::ast::visit_expressions(on, |e| {
        if let Expr::CompoundIdentifier(parts) = e
            && let [q, _] = parts.as_slice()
            && names.side(&q.value).is_none_or(|s| s > r)
        {
            qualifiers = Err(plan_err!(
                "Failed to prepare statement: '{}' is not a valid stream/table name or alias.",
                q.value
            ));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    qualifiers?;
    let sides_of = |e: &Expr| -> Result<(Expr, HashSet<usize>)> {
        let mut e = e.clone();
        let mut refs = References::new(names, None);
        refs.on = true;
        refs.scope = r + 1;
        crate::normalize::done(e.visit(&mut refs))?;
        Ok((e, refs.sides))
    };
    let (mut a_expr, a_sides) = sides_of(a)?;
    let (mut b_expr, b_sides) = sides_of(b)?;
    let (mut a_text, mut b_text) = (a_text, b_text);
    for (sides, text) in [(&a_sides, &a_text), (&b_sides, &b_text)] {
        if sides.len() != 1 {
            return Err(plan_err!(
                "Invalid comparison expression '{text}' in join '{whole}'. Each side of the join comparision must contain references from exactly one source."
            ));
        }
    }
    if a_sides == b_sides || !(a_sides.contains(&r) || b_sides.contains(&r)) {
        return Err(plan_err!(
            "Invalid comparison expression in join '{whole}'. Each side of the join comparision must contain references from exactly one source, and the two sides must reference different sources."
        ));
    }
    if a_sides.contains(&r) {
        std::mem::swap(&mut a_expr, &mut b_expr);
        std::mem::swap(&mut a_text, &mut b_text);
    }
    let kind = match (left.kind, right.source.kind, within) {
        (SourceKind::Stream, SourceKind::Stream, Some(within)) => JoinKind::StreamStream(within),
        (SourceKind::Stream, SourceKind::Stream, None) => {
            return Err(plan_err!(
                "Stream-Stream joins must have a WITHIN clause specified. None was provided. To learn about how to specify a WITHIN clause with a stream-stream join, please visit: https://docs.confluent.io/current/ksql/docs/syntax-reference.html#create-stream-as-select"
            ));
        }
        (_, _, Some(_)) => {
            return Err(plan_err!(
                "A window definition was provided for a Stream-Table join. These joins are not windowed. Please drop the window definition (ie. the WITHIN clause) and try to execute your join again."
            ));
        }
        (SourceKind::Stream, SourceKind::Table, None) => JoinKind::StreamTable,
        (SourceKind::Table, SourceKind::Table, None) => JoinKind::TableTable,
        (SourceKind::Table, SourceKind::Stream, None) => {
            return Err(plan_err!(
                "Invalid join order: table-stream joins are not supported; only stream-table joins. Got {} {} JOIN {}.",
                left.name,
                join_type.text().to_uppercase(),
                right.source.name
            ));
        }
    };
    if kind == JoinKind::StreamTable && matches!(join_type, JoinType::Right | JoinType::Outer) {
        return Err(plan_err!(
            "Invalid join type: {} join not supported for stream-table join. Got {} [{}] JOIN {}.",
            join_type.text(),
            left.name,
            join_type.text().to_uppercase(),
            right.source.name
        ));
    }
    let identifier = |e: &Expr| match e {
        Expr::Identifier(i) => Some(i.value.clone()),
        _ => None,
    };
    let right_key = single_key(r, right, names);
    let keyed = [
        identifier(&a_expr).is_some_and(|a| left.keyed_by.iter().any(|(k, _)| *k == a)),
        identifier(&b_expr).is_some_and(|b| right_key.iter().any(|(k, _)| *k == b)),
    ];
    let kind = match kind {
        JoinKind::TableTable if !keyed[1] => {
            return Err(plan_err!(
                "Invalid join condition: table-table joins require to join on the primary key of the right input table. Got {a_text} = {b_text}."
            ));
        }
        JoinKind::TableTable if !keyed[0] => match join_type {
            JoinType::Right => {
                return Err(not_supported!(
                    "RIGHT OUTER JOIN on a foreign key is not supported"
                ));
            }
            JoinType::Outer => {
                return Err(not_supported!(
                    "FULL OUTER JOIN on a foreign key is not supported"
                ));
            }
            _ if !left.leaf => {
                return Err(not_supported!(
                    "A foreign-key join of the rows of {} is not supported yet: in a join of more than two tables, only the first join may be on a foreign key",
                    left.name
                ));
            }
            _ => JoinKind::ForeignKey,
        },
        other => other,
    };
    let left_leaf = &leaves[0].source;
    if kind == JoinKind::ForeignKey && (left_leaf.window.is_some() || right.source.window.is_some())
    {
        return Err(plan_err!(
            "Foreign-key table-table joins are not supported on windowed tables."
        ));
    }
    if left.leaf {
        check_windows(left_leaf, &right.source, keyed[0] && keyed[1])?;
    }
    let repartition = repartitioned(
        kind,
        [left.key_format, right.source.key_format],
        keyed,
        &right.source,
        &b_text,
    )?;
    if repartition.contains(&true) && (left_leaf.window.is_some() || right.source.window.is_some())
    {
        return Err(plan_err!(
            "Implicit repartitioning of windowed sources is not supported. See https://github.com/confluentinc/ksql/issues/4385."
        ));
    }
    // The key is named after a join column (the left's first, then the columns the left's key
    // equals, then the right's), unless neither side is one or either side may be missing.
    let viable: Vec<(String, String)> =
        if join_type == JoinType::Outer || kind == JoinKind::ForeignKey {
            Vec::new()
        } else {
            let mut viable = Vec::new();
            if let Some(a) = identifier(&a_expr) {
                viable.push((a.clone(), a_text.clone()));
                if left.keyed_by.iter().any(|(k, _)| *k == a) {
                    viable.extend(left.keyed_by.iter().filter(|(k, _)| *k != a).cloned());
                }
            }
            if let Some(b) = identifier(&b_expr) {
                viable.push((b, b_text.clone()));
            }
            viable
        };
    let synthetic_key = viable.is_empty() && kind != JoinKind::ForeignKey;
    let left_keys: Vec<String> = leaves[0]
        .source
        .key_columns()
        .map(|c| names.joined(0, &c.name))
        .collect();
    let key_columns = if !last {
        let n = if kind == JoinKind::ForeignKey {
            left_keys.len()
        } else {
            1
        };
        (0..n).map(|k| format!("__EDDY_KEY_{i}_{k}")).collect()
    } else if kind == JoinKind::ForeignKey {
        left_keys
    } else if synthetic_key {
        vec![names.synthetic_key()]
    } else {
        vec![JOIN_KEY.to_string()]
    };
    let placed_by = match repartition {
        [true, true] => Format::new(crate::catalog::FormatKind::Json),
        [true, false] => right.source.key_format,
        _ => left.key_format,
    };
    let next = LeftShape {
        name: format!("{} JOIN {}", left.name, right.source.name),
        kind: match kind {
            JoinKind::TableTable | JoinKind::ForeignKey => SourceKind::Table,
            _ => SourceKind::Stream,
        },
        key_format: placed_by,
        keyed_by: key_equivalents(
            kind,
            join_type,
            left,
            [&a_expr, &b_expr],
            [&a_text, &b_text],
        ),
        leaf: false,
    };
    Ok((
        RewrittenJoin {
            kind,
            join_type,
            on: [a_expr, b_expr],
            on_text: [a_text, b_text],
            repartition,
            key_columns,
            synthetic_key,
            viable,
            placed_by,
        },
        next,
    ))
}

/// Join `i`'s ON clause as written, unquoted names upper-cased and columns qualified by their
/// side (as ksqlDB's messages show it).
fn written_on(query: &sqlparser::ast::Query, names: &Names, i: usize) -> Option<Expr> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let join = select.from.first()?.joins.get(i)?;
    let (JoinOperator::Join(JoinConstraint::On(on))
    | JoinOperator::Inner(JoinConstraint::On(on))
    | JoinOperator::Left(JoinConstraint::On(on))
    | JoinOperator::LeftOuter(JoinConstraint::On(on))
    | JoinOperator::Right(JoinConstraint::On(on))
    | JoinOperator::RightOuter(JoinConstraint::On(on))
    | JoinOperator::FullOuter(JoinConstraint::On(on))) = &join.join_operator
    else {
        return None;
    };
    let mut on = on.clone();
    let _ = sqlparser::ast::visit_expressions_mut(&mut on, |e| {
        let upper = |i: &mut Ident| {
            if i.quote_style.is_none() {
                i.value = i.value.to_uppercase();
            }
        };
        match e {
            Expr::Identifier(i) => {
                upper(i);
                let sides: Vec<usize> = (0..names.sides.len())
                    .filter(|s| names.has(*s, &i.value))
                    .collect();
                if let [side] = sides.as_slice() {
                    *e = Expr::CompoundIdentifier(vec![
                        Ident::new(names.sides[*side].1),
                        Ident::new(i.value.clone()),
                    ]);
                }
            }
            Expr::CompoundIdentifier(parts) => parts.iter_mut().for_each(upper),
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    Some(on)
}

/// The source a join's side names, with its qualifier.
fn relation(catalog: &Catalog, factor: &TableFactor) -> Result<Leaf> {
    let TableFactor::Table { name, alias, .. } = factor else {
        return Err(not_supported!("A join must name streams or tables"));
    };
    let name = match name.0.as_slice() {
        [ObjectNamePart::Identifier(i)] => i.value.clone(),
        _ => return Err(plan_err!("Invalid source name {name}")),
    };
    let source = catalog.require(&name)?.clone();
    let alias = alias.as_ref().map_or(name, |a| a.name.value.clone());
    Ok(Leaf { source, alias })
}

/// Which sides are repartitioned by their join expression (see [`RewrittenJoin::repartition`]),
/// given the formats the sides' keys are placed by and whether each side's join expression is its
/// key column (`keyed`). A table cannot be: a stream-table join must be on the table's key
/// (`right_text`: the table's join expression). Of two streams keyed in different formats the
/// right is placed by the left's format, as ksqlDB does; a stream is not placed by a key in a
/// schema registry's format (its bytes hold a schema id): of two streams, both are then
/// repartitioned.
fn repartitioned(
    kind: JoinKind,
    [left, right_format]: [Format; 2],
    keyed: [bool; 2],
    right: &Source,
    right_text: &str,
) -> Result<[bool; 2]> {
    let same_format = left.kind == right_format.kind && left.delimiter == right_format.delimiter;
    let plain = |f: Format| !f.kind.uses_registry();
    match kind {
        JoinKind::TableTable | JoinKind::ForeignKey => Ok([false, false]),
        JoinKind::StreamTable if !keyed[1] => {
            let key: Vec<&str> = right.key_columns().map(|c| c.name.as_str()).collect();
            Err(plan_err!(
                "Cannot repartition a TABLE source. If this is a join, make sure that the criteria uses the TABLE's key column {} instead of {right_text}",
                key.join(", ")
            ))
        }
        JoinKind::StreamTable => Ok([!keyed[0] || !same_format, false]),
        JoinKind::StreamStream(_) => Ok(match keyed {
            [true, true] if same_format => [false, false],
            [true, _] if plain(left) => [false, true],
            [_, true] if plain(right_format) => [true, false],
            _ => [true, true],
        }),
    }
}

/// ksqlDB's rules for sources with windowed keys: both or neither, of compatible kinds, joined on
/// their keys (`on_keys`: each side's join expression is its key column).
fn check_windows(left: &Source, right: &Source, on_keys: bool) -> Result<()> {
    use crate::window::WindowType;
    let shown = |s: &Source| match s.window {
        Some(w) => format!("`{}` is {} windowed", s.name, w.window_type.as_str()),
        None => format!("`{}` is not windowed", s.name),
    };
    match (left.window, right.window) {
        (None, None) => Ok(()),
        (Some(_), None) | (None, Some(_)) => Err(plan_err!(
            "Can not join windowed source to non-windowed source.\n{}\n{}",
            shown(left),
            shown(right)
        )),
        (Some(l), Some(r)) => {
            let session = |t: WindowType| t == WindowType::Session;
            if session(l.window_type) != session(r.window_type) {
                return Err(plan_err!(
                    "Incompatible windowed sources.\nLeft source: {}\nRight source: {}\nSession windowed sources can only be joined to other session windowed sources, and may still not result in expected behaviour as session bounds must be an exact match for the join to work\nHopping and tumbling windowed sources can only be joined to other hopping and tumbling windowed sources",
                    l.window_type.as_str(),
                    r.window_type.as_str()
                ));
            }
            if l != r || !on_keys {
                return Err(plan_err!(
                    "Implicit repartitioning of windowed sources is not supported. See https://github.com/confluentinc/ksql/issues/4385."
                ));
            }
            Ok(())
        }
    }
}

impl Rewritten {
    /// The columns of join `stage`'s left input under their joined names: the first leaf's, or
    /// the joined input (`left`) of the joins before it (see [`nested_columns`]).
    pub fn left_columns(&self, stage: usize, left: &Source) -> Vec<(String, DataType)> {
        match stage {
            0 => self.leaves[0].joined_columns(),
            _ => nested_columns(left, stage - 1),
        }
    }

    /// The joined input of join `stage` as a source: its key columns (the join expressions' type,
    /// `key`, or the left table's primary key for a foreign-key join), then the columns of its left
    /// input (`left`, see [`Rewritten::left_columns`]) and of its right leaf (in the last join, a
    /// foreign-key join's left key columns, which are the key, under hidden names).
    pub fn joined_source(&self, stage: usize, left: &Source, key: SqlType) -> Result<Source> {
        let join = &self.joins[stage];
        let right = &self.leaves[stage + 1].source;
        let mut columns: Vec<Column> = match join.kind {
            JoinKind::ForeignKey => join
                .key_columns
                .iter()
                .zip(left.key_columns())
                .map(|(name, c)| Column::new(name.clone(), c.sql_type.clone(), ColumnRole::Key))
                .collect(),
            _ => vec![Column::new(
                join.key_columns[0].clone(),
                key,
                ColumnRole::Key,
            )],
        };
        let sides = self
            .left_columns(stage, left)
            .into_iter()
            .chain(self.leaves[stage + 1].joined_columns());
        for (name, data_type) in sides {
            let name = if join.kind == JoinKind::ForeignKey && join.key_columns.contains(&name) {
                format!("__EDDY_{name}")
            } else {
                name
            };
            columns.push(Column::new(
                name,
                SqlType::from_arrow(&data_type)?,
                ColumnRole::Value,
            ));
        }
        let last = stage + 1 == self.joins.len();
        Ok(Source {
            name: JOINED.to_string(),
            kind: if matches!(join.kind, JoinKind::TableTable | JoinKind::ForeignKey) {
                SourceKind::Table
            } else {
                SourceKind::Stream
            },
            topic: String::new(),
            // The earlier joins of a multi-way join: as their key values are placed.
            key_format: if last {
                left.key_format
            } else {
                join.placed_by
            },
            value_format: left.value_format,
            columns,
            timestamp_column: None,
            timestamp_format: None,
            partitions: left.partitions.max(right.partitions),
            replicas: left.replicas,
            statement: String::new(),
            is_read_only: true,
            // Windowed sources join window by window: the result has the left side's windows.
            window: left.window,
            schema_names: [None, None],
        })
    }
}

/// The names of the leaves' columns.
struct Names<'a> {
    sides: Vec<(&'a Source, &'a str)>,
}

impl<'a> Names<'a> {
    fn new(leaves: &'a [Leaf]) -> Self {
        Names {
            sides: leaves
                .iter()
                .map(|l| (l.source.as_ref(), l.alias.as_str()))
                .collect(),
        }
    }

    /// The side a qualifier names.
    fn side(&self, qualifier: &str) -> Option<usize> {
        self.sides.iter().position(|(_, a)| *a == qualifier)
    }

    fn has(&self, side: usize, column: &str) -> bool {
        let (source, _) = self.sides[side];
        source.column(column).is_some() || PSEUDO_COLUMN_NAMES.contains(&column)
    }

    fn joined(&self, side: usize, column: &str) -> String {
        format!("{}_{column}", self.sides[side].1)
    }

    /// `ROWKEY`, or `ROWKEY_<n>` for the first n whose name no column of any side has.
    fn synthetic_key(&self) -> String {
        let taken = |name: &str| self.sides.iter().any(|(s, _)| s.column(name).is_some());
        let mut name = "ROWKEY".to_string();
        let mut n = 0;
        while taken(&name) {
            n += 1;
            name = format!("ROWKEY_{n}");
        }
        name
    }
}

/// Rewrites column references to the joined input's names and records the sides they read.
struct References<'a> {
    names: &'a Names<'a>,
    sides: HashSet<usize>,
    /// Lambda parameters in scope (not columns).
    lambda: Vec<String>,
    /// In the ON clause, where an unknown column is ksqlDB's "JOIN ON column ... cannot be resolved".
    on: bool,
    /// How many sides (the first ones) may be named: a join's ON clause names only its own and
    /// earlier sides.
    scope: usize,
    /// The key column, which unqualified references may name as such.
    key: Option<&'a str>,
}

impl<'a> References<'a> {
    fn new(names: &'a Names<'a>, key: Option<&'a str>) -> Self {
        References {
            names,
            sides: HashSet::new(),
            lambda: Vec::new(),
            on: false,
            scope: names.sides.len(),
            key,
        }
    }
}

impl VisitorMut for References<'_> {
    type Break = Error;

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
        match e {
            Expr::Lambda(l) => {
                let params: Vec<String> = match &l.params {
                    sqlparser::ast::OneOrManyWithParens::One(p) => vec![p.name.value.clone()],
                    sqlparser::ast::OneOrManyWithParens::Many(ps) => {
                        ps.iter().map(|p| p.name.value.clone()).collect()
                    }
                };
                self.lambda.extend(params);
            }
            // `P.COL[1]` arrives as `P` with `.COL` and `[1]` accessed: the side's column is
            // `P.COL`, which the children's visit resolves.
            Expr::CompoundFieldAccess { root, access_chain }
                if matches!(root.as_ref(), Expr::Identifier(q) if self.names.side(&q.value).is_some())
                    && matches!(
                        access_chain.first(),
                        Some(AccessExpr::Dot(Expr::Identifier(_)))
                    ) =>
            {
                let (Expr::Identifier(qualifier), AccessExpr::Dot(Expr::Identifier(column))) =
                    (root.as_ref(), access_chain.remove(0))
                else {
                    return ControlFlow::Continue(());
                };
                let column = Expr::CompoundIdentifier(vec![qualifier.clone(), column]);
                if access_chain.is_empty() {
                    *e = column;
                    return self.pre_visit_expr(e);
                }
                **root = column;
            }
            Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                let (qualifier, column) = (&parts[0].value, &parts[1].value);
                let Some(side) = self.names.side(qualifier).filter(|s| *s < self.scope) else {
                    return ControlFlow::Break(plan_err!(
                        "Failed to prepare statement: '{qualifier}' is not a valid stream/table name or alias."
                    ));
                };
                if self.on && !self.names.has(side, column) {
                    return ControlFlow::Break(plan_err!(
                        "JOIN ON column '{qualifier}.{column}' cannot be resolved."
                    ));
                }
                self.sides.insert(side);
                *e = Expr::Identifier(quoted(&self.names.joined(side, column)));
            }
            Expr::Identifier(i) if !self.lambda.contains(&i.value) => {
                let column = i.value.clone();
                if self.key == Some(column.as_str())
                    || (!self.on && PSEUDO_COLUMN_NAMES.contains(&column.as_str()))
                {
                    return ControlFlow::Continue(());
                }
                let found: Vec<usize> = (0..self.scope)
                    .filter(|s| self.names.has(*s, &column))
                    .collect();
                match found.as_slice() {
                    [side] => {
                        self.sides.insert(*side);
                        *e = Expr::Identifier(quoted(&self.names.joined(*side, &column)));
                    }
                    [] if self.on => {
                        return ControlFlow::Break(plan_err!(
                            "JOIN ON column '{column}' cannot be resolved."
                        ));
                    }
                    [] => {}
                    [init @ .., last] => {
                        let shown = |s: &usize| format!("{}.{column}", self.names.sides[*s].1);
                        let init: Vec<String> = init.iter().map(shown).collect();
                        return ControlFlow::Break(plan_err!(
                            "Column '{column}' is ambiguous. Could be {} or {}.",
                            init.join(", "),
                            shown(last)
                        ));
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
        if let Expr::Lambda(l) = e {
            let n = match &l.params {
                sqlparser::ast::OneOrManyWithParens::One(_) => 1,
                sqlparser::ast::OneOrManyWithParens::Many(ps) => ps.len(),
            };
            self.lambda.truncate(self.lambda.len().saturating_sub(n));
        }
        ControlFlow::Continue(())
    }
}

/// Rewrites the SELECT's projection, WHERE, GROUP BY and HAVING to the joined input; `key` (the key
/// column and the columns that may select it) when the output is keyed by the join.
fn rewrite_select(
    select: &mut Select,
    names: &Names,
    sides: &[Leaf],
    key: Option<(&String, &Vec<(String, String)>)>,
) -> Result<()> {
    let key_column = key.map(|(k, _)| k.as_str());
    let mut items = Vec::new();
    // A side's key columns, its window bounds if its keys are windowed, then its value columns.
    let star = |side: &Leaf| -> Vec<SelectItem> {
        let bounds = side
            .source
            .window
            .map_or(&[][..], |_| &[WINDOWSTART, WINDOWEND][..]);
        let keys = side.source.key_columns().map(|c| c.name.as_str());
        let values = side.source.non_key_columns().map(|c| c.name.as_str());
        keys.chain(bounds.iter().copied())
            .chain(values)
            .map(|c| {
                SelectItem::UnnamedExpr(Expr::Identifier(quoted(&format!("{}_{c}", side.alias))))
            })
            .collect()
    };
    for item in std::mem::take(&mut select.projection) {
        match item {
            SelectItem::Wildcard(_) => {
                for side in sides {
                    items.extend(star(side));
                }
            }
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _) => {
                let qualifier = name.to_string().replace('"', "");
                let Some(side) = names.side(&qualifier) else {
                    return Err(plan_err!(
                        "Failed to prepare statement: '{qualifier}' is not a valid stream/table name or alias."
                    ));
                };
                items.extend(star(&sides[side]));
            }
            SelectItem::UnnamedExpr(mut e) => {
                // A column keeps its name unless another side has it: then it is `<ALIAS>_<NAME>`.
                let name = match &e {
                    Expr::Identifier(i) => Some(i.value.clone()),
                    Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                        [q, c] => match names.side(&q.value) {
                            Some(side)
                                if (0..names.sides.len())
                                    .any(|s| s != side && names.has(s, &c.value)) =>
                            {
                                Some(names.joined(side, &c.value))
                            }
                            _ => Some(c.value.clone()),
                        },
                        _ => None,
                    },
                    _ => None,
                };
                crate::normalize::done(e.visit(&mut References::new(names, key_column)))?;
                match (name, &e) {
                    (Some(name), Expr::Identifier(i)) if i.value != name => {
                        items.push(SelectItem::ExprWithAlias {
                            expr: e,
                            alias: quoted(&name),
                        })
                    }
                    _ => items.push(SelectItem::UnnamedExpr(e)),
                }
            }
            SelectItem::ExprWithAlias { mut expr, alias } => {
                crate::normalize::done(expr.visit(&mut References::new(names, key_column)))?;
                items.push(SelectItem::ExprWithAlias { expr, alias });
            }
            other => items.push(other),
        }
    }
    // The first item that names a column the key may be called by reads the key.
    if let Some((column, viable)) = key
        && !viable.is_empty()
    {
        // The left side's join column if the projection has it, else the right side's.
        let names_column = |i: &SelectItem, column: &str| match i {
            SelectItem::UnnamedExpr(Expr::Identifier(name)) if name.value == column => {
                Some(name.clone())
            }
            SelectItem::ExprWithAlias {
                expr: Expr::Identifier(name),
                alias,
            } if name.value == column => Some(alias.clone()),
            _ => None,
        };
        if let Some((at, alias)) = viable.iter().find_map(|(column, _)| {
            items
                .iter()
                .enumerate()
                .find_map(|(at, i)| names_column(i, column).map(|a| (at, a)))
        }) {
            items[at] = SelectItem::ExprWithAlias {
                expr: Expr::Identifier(quoted(column)),
                alias,
            };
        }
    }
    select.projection = items;
    let mut refs = References::new(names, key_column);
    if let Some(w) = &mut select.selection {
        crate::normalize::done(w.visit(&mut refs))?;
    }
    if let GroupByExpr::Expressions(exprs, _) = &mut select.group_by {
        for e in exprs {
            crate::normalize::done(e.visit(&mut refs))?;
        }
    }
    if let Some(h) = &mut select.having {
        crate::normalize::done(h.visit(&mut refs))?;
    }
    Ok(())
}

/// The comparison inside parentheses and the `coalesce(cmp, false)` normalization wraps it in.
fn strip_nested(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => strip_nested(inner),
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("coalesce") => match &f.args {
            FunctionArguments::List(list) => match list.args.as_slice() {
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(cmp)), _] => strip_nested(cmp),
                _ => e,
            },
            _ => e,
        },
        other => other,
    }
}

fn quoted(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

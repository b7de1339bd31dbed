//! What a pull query (a `SELECT` without `EMIT`) may say, with ksqlDB's messages for what it may not.

use std::ops::ControlFlow;
use std::sync::Arc;

use eddy_common::{Result, plan_err};
use sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, LimitClause, ObjectNamePart, SelectItem, SetExpr,
    TableFactor, UnaryOperator, Value, visit_expressions, visit_expressions_mut,
};

use crate::catalog::{Catalog, ROWOFFSET, ROWPARTITION, Source, WINDOWEND, WINDOWSTART};
use crate::normalize::ident_name;
use crate::statement::QueryStatement;

/// Rejects the clauses pull queries do not support, window bounds in the WHERE of a query over a
/// table whose keys are not windowed, and a LIMIT that is not a non-negative integer (or any LIMIT
/// when `limit_enabled` is false).
pub fn check(stmt: &QueryStatement, catalog: &Catalog, limit_enabled: bool) -> Result<()> {
    let SetExpr::Select(select) = stmt.query.body.as_ref() else {
        return Ok(());
    };
    const MORE: &str = "See https://cnfl.io/queries for more info.\nAdd EMIT CHANGES if you intended to issue a push query.";
    if select.from.iter().any(|f| !f.joins.is_empty()) || select.from.len() > 1 {
        return Err(plan_err!("Pull queries don't support JOIN clauses. {MORE}"));
    }
    if stmt.window.is_some() {
        return Err(plan_err!(
            "Pull queries don't support WINDOW clauses. {MORE}"
        ));
    }
    if matches!(&select.group_by, GroupByExpr::Expressions(e, _) if !e.is_empty()) {
        return Err(plan_err!(
            "Pull queries don't support GROUP BY clauses. {MORE}"
        ));
    }
    for (clause, exprs) in [
        (
            "SELECT",
            select
                .projection
                .iter()
                .filter_map(selected)
                .collect::<Vec<_>>(),
        ),
        ("WHERE", select.selection.iter().collect()),
    ] {
        let mut used = Vec::new();
        for e in exprs {
            let _ = visit_expressions(e, |e| {
                if let Expr::Identifier(i) = e {
                    let name = ident_name(&i.value, i.quote_style);
                    if [ROWPARTITION, ROWOFFSET].contains(&name.as_str()) && !used.contains(&name) {
                        used.push(name);
                    }
                }
                ControlFlow::<()>::Continue(())
            });
        }
        if !used.is_empty() {
            let used: Vec<String> = used.iter().map(|n| format!("`{n}`")).collect();
            return Err(plan_err!(
                "Pull queries don't support the following columns in {clause} clauses: {}",
                used.join(", ")
            ));
        }
    }
    let source = source(stmt, catalog);
    if source.is_some_and(|s| s.window.is_none())
        && let Some(selection) = &select.selection
        && let Some(bound) = window_bound(selection)
    {
        return Err(plan_err!("WHERE column '{bound}' cannot be resolved"));
    }
    check_limit(stmt, limit_enabled)
}

/// The expression of a select item (none for `*`).
fn selected(item: &SelectItem) -> Option<&Expr> {
    match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    }
}

fn check_limit(stmt: &QueryStatement, enabled: bool) -> Result<()> {
    let Some(LimitClause::LimitOffset {
        limit: Some(limit), ..
    }) = &stmt.query.limit_clause
    else {
        return Ok(());
    };
    if !enabled {
        return Err(plan_err!(
            "LIMIT clause in pull queries is currently disabled. You can enable them by setting ksql.query.pull.limit.clause.enabled=true. See https://cnfl.io/queries for more info.\nAdd EMIT CHANGES if you intended to issue a push query."
        ));
    }
    match limit {
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            ..
        } => Err(plan_err!(
            "Pull queries don't support negative integers in the LIMIT clause. See https://cnfl.io/queries for more info."
        )),
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) if n.parse::<u64>().is_ok() => Ok(()),
            _ => Err(plan_err!(
                "Failed to prepare statement: Value must be integer for command: LIMIT"
            )),
        },
        Expr::Identifier(i) => Err(plan_err!(
            "line {}:{}: Syntax Error: LIMIT takes a non-negative integer, not {i}",
            i.span.start.line,
            i.span.start.column
        )),
        other => Err(plan_err!(
            "Syntax Error: LIMIT takes a non-negative integer, not {other}"
        )),
    }
}

/// The first window bound (`WINDOWSTART`, `WINDOWEND`) an expression names.
fn window_bound(e: &Expr) -> Option<String> {
    let found = visit_expressions(e, |x: &Expr| match x {
        Expr::Identifier(i) => {
            let name = ident_name(&i.value, i.quote_style);
            if name == WINDOWSTART || name == WINDOWEND {
                ControlFlow::Break(name)
            } else {
                ControlFlow::Continue(())
            }
        }
        _ => ControlFlow::Continue(()),
    });
    match found {
        ControlFlow::Break(name) => Some(name),
        ControlFlow::Continue(()) => None,
    }
}

/// Window bounds compared with text (`WINDOWSTART >= '2020-02-23T23:45'`) compare with the
/// instant the text names, as ksqlDB's pull queries allow: the text becomes epoch milliseconds.
pub fn window_bound_texts(stmt: &mut QueryStatement) -> Result<()> {
    let SetExpr::Select(select) = stmt.query.body.as_mut() else {
        return Ok(());
    };
    let Some(selection) = select.selection.as_mut() else {
        return Ok(());
    };
    let result = visit_expressions_mut(selection, |e: &mut Expr| {
        let Expr::BinaryOp { left, right, .. } = e else {
            return ControlFlow::Continue(());
        };
        let text = if is_window_bound(left) {
            right
        } else if is_window_bound(right) {
            left
        } else {
            return ControlFlow::Continue(());
        };
        if let Expr::Value(v) = text.as_mut()
            && let Value::SingleQuotedString(s) = &v.value
        {
            match partial_timestamp(s) {
                Some(millis) => **text = Expr::value(Value::Number(millis.to_string(), false)),
                None => {
                    return ControlFlow::Break(plan_err!(
                        "Failed to parse timestamp '{s}': expected yyyy-MM-dd'T'HH:mm:ss.SSS, optionally cut short and followed by a zone such as +0100"
                    ));
                }
            }
        }
        ControlFlow::Continue(())
    });
    crate::normalize::done(result)
}

fn is_window_bound(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(i) if matches!(ident_name(&i.value, i.quote_style).as_str(), WINDOWSTART | WINDOWEND))
}

/// Epoch milliseconds of a possibly partial ISO-8601 timestamp (`2020-02-23`, `2020-02-23T23:45`,
/// `2020-02-23T22:45:12.000-0100`); missing parts are their lowest value, hour 24 is the next day,
/// and no zone means UTC.
pub fn partial_timestamp(text: &str) -> Option<i64> {
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, t),
        None => (text, ""),
    };
    let (time, offset_secs) = split_zone(time)?;
    let mut d = date.split('-');
    let year: i32 = d.next()?.parse().ok()?;
    let month: u32 = d.next().map_or(Some(1), |m| m.parse().ok())?;
    let day: u32 = d.next().map_or(Some(1), |x| x.parse().ok())?;
    let (clock, fraction) = match time.split_once('.') {
        Some((c, f)) => (c, f),
        None => (time, ""),
    };
    let mut t = clock.split(':').filter(|p| !p.is_empty());
    let hour: i64 = t.next().map_or(Some(0), |x| x.parse().ok())?;
    let minute: i64 = t.next().map_or(Some(0), |x| x.parse().ok())?;
    let second: i64 = t.next().map_or(Some(0), |x| x.parse().ok())?;
    let millis: i64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<3}").get(..3)?.parse().ok()?
    };
    let midnight = chrono::NaiveDate::from_ymd_opt(year, month, day)?
        .and_hms_opt(0, 0, 0)?
        .and_utc()
        .timestamp_millis();
    Some(midnight + ((hour * 60 + minute) * 60 + second) * 1000 + millis - offset_secs * 1000)
}

/// A time of day and the seconds east of UTC its zone suffix (`Z`, `+0100`, `-01:00`) gives.
fn split_zone(time: &str) -> Option<(&str, i64)> {
    if let Some(t) = time.strip_suffix('Z') {
        return Some((t, 0));
    }
    let Some(at) = time.rfind(['+', '-']) else {
        return Some((time, 0));
    };
    let (clock, zone) = time.split_at(at);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    let hours: i64 = digits.get(..2)?.parse().ok()?;
    let minutes: i64 = digits
        .get(2..)
        .filter(|m| !m.is_empty())
        .map_or(Some(0), |m| m.parse().ok())?;
    Some((clock, sign * (hours * 3600 + minutes * 60)))
}

/// The source a pull query reads (its FROM), when the catalog has it.
pub fn source<'c>(stmt: &QueryStatement, catalog: &'c Catalog) -> Option<&'c Arc<Source>> {
    let SetExpr::Select(select) = stmt.query.body.as_ref() else {
        return None;
    };
    match select.from.first().map(|f| &f.relation) {
        Some(TableFactor::Table { name, .. }) => name
            .0
            .last()
            .and_then(ObjectNamePart::as_ident)
            .and_then(|i| catalog.get(&ident_name(&i.value, i.quote_style))),
        _ => None,
    }
}

/// The values a pull query's WHERE (as written) pins each of `key_columns` to, when every key column
/// is pinned by `=` or `IN` in a top-level conjunct to constant expressions: then the query is a set of
/// key lookups. Other conjuncts still filter the rows found.
pub fn key_values(stmt: &QueryStatement, key_columns: &[String]) -> Option<Vec<Vec<Expr>>> {
    let SetExpr::Select(select) = stmt.written.body.as_ref() else {
        return None;
    };
    let mut conjuncts = Vec::new();
    conjuncts_of(select.selection.as_ref()?, &mut conjuncts);
    let mut pinned: Vec<Option<Vec<Expr>>> = vec![None; key_columns.len()];
    for (column, values) in conjuncts.into_iter().filter_map(pin) {
        if let Some(i) = key_columns.iter().position(|k| *k == column) {
            if pinned[i].is_some() {
                // Pinned twice: leave it to the filter.
                return None;
            }
            pinned[i] = Some(values);
        }
    }
    pinned.into_iter().collect()
}

/// The query without its WHERE, when the WHERE is nothing but a pin of each of `key_columns` (see
/// [`key_values`]): the rows the lookups find need no filter, so one plan of it serves every key.
pub fn without_key_pins(stmt: &QueryStatement, key_columns: &[String]) -> Option<QueryStatement> {
    let SetExpr::Select(select) = stmt.written.body.as_ref() else {
        return None;
    };
    let mut conjuncts = Vec::new();
    conjuncts_of(select.selection.as_ref()?, &mut conjuncts);
    let pins_only = conjuncts.len() == key_columns.len()
        && conjuncts
            .into_iter()
            .all(|c| pin(c).is_some_and(|(column, _)| key_columns.contains(&column)));
    if !pins_only || key_values(stmt, key_columns).is_none() {
        return None;
    }
    let mut out = stmt.clone();
    for query in [&mut out.query, &mut out.written] {
        if let SetExpr::Select(select) = query.body.as_mut() {
            select.selection = None;
        }
    }
    Some(out)
}

/// The column a conjunct pins and the constants it pins it to: `column = constant` (either way
/// round) or `column IN (constants)`.
fn pin(c: &Expr) -> Option<(String, Vec<Expr>)> {
    match c {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => match (column_name(left), column_name(right)) {
            (Some(name), None) if constant(right) => Some((name, vec![(**right).clone()])),
            (None, Some(name)) if constant(left) => Some((name, vec![(**left).clone()])),
            _ => None,
        },
        Expr::InList {
            expr,
            list,
            negated: false,
        } if list.iter().all(constant) => column_name(expr).map(|name| (name, list.clone())),
        _ => None,
    }
}

/// With table scans turned off (`ksql.query.pull.table.scan.enabled=false`), a pull query over a table
/// must be key lookups: every disjunct of its WHERE pins all `key_columns` (name, type) with `=` or `IN`
/// to constants, once each; other conditions may filter what the lookups find. ksqlDB's messages.
pub fn check_lookups(stmt: &QueryStatement, key_columns: &[(String, String)]) -> Result<()> {
    let SetExpr::Select(select) = stmt.written.body.as_ref() else {
        return Ok(());
    };
    let Some(selection) = &select.selection else {
        return Err(plan_err!(
            "Table scans are disabled (ksql.query.pull.table.scan.enabled=false): a pull query needs a WHERE clause on the key columns."
        ));
    };
    let mut disjuncts = Vec::new();
    disjuncts_of(selection, &mut disjuncts);
    let is_key =
        |e: &Expr| column_name(e).is_some_and(|n| key_columns.iter().any(|(k, _)| *k == n));
    let names_key = |e: &Expr| {
        visit_expressions(e, |x| {
            if is_key(x) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .is_break()
    };
    for disjunct in disjuncts {
        let mut conjuncts = Vec::new();
        conjuncts_of(disjunct, &mut conjuncts);
        let mut pinned: Vec<String> = Vec::new();
        // Key columns bounded by a range rather than pinned.
        let mut ranged: Vec<String> = Vec::new();
        for c in conjuncts {
            if !names_key(c) {
                continue;
            }
            let column = match c {
                Expr::BinaryOp { left, op, right } => {
                    let (key, other) = match (is_key(left), is_key(right)) {
                        (true, false) => (left, right),
                        (false, true) => (right, left),
                        (true, true) => {
                            return Err(plan_err!(
                                "A comparison must be between a key column and a resolvable expression."
                            ));
                        }
                        (false, false) => {
                            return Err(plan_err!(
                                "A comparison must directly reference a key column."
                            ));
                        }
                    };
                    if !constant(other) {
                        return Err(plan_err!(
                            "A comparison must be between a key column and a resolvable expression."
                        ));
                    }
                    let name = column_name(key).unwrap_or_default();
                    match op {
                        BinaryOperator::Eq => {}
                        BinaryOperator::NotEq => return Err(not_equal_bound(&name, key_columns)),
                        _ => ranged.push(name.clone()),
                    }
                    name
                }
                Expr::InList {
                    expr,
                    list,
                    negated: false,
                } if is_key(expr) => {
                    if !list.iter().all(constant) {
                        return Err(plan_err!(
                            "A comparison must be between a key column and a resolvable expression."
                        ));
                    }
                    column_name(expr).unwrap_or_default()
                }
                _ => {
                    return Err(plan_err!(
                        "A comparison must directly reference a key column."
                    ));
                }
            };
            if pinned.contains(&column) {
                return Err(plan_err!(
                    "A comparison condition on the key column cannot be combined with other comparisons such as an IN predicate"
                ));
            }
            pinned.push(column);
        }
        if let Some(name) = ranged.first() {
            return Err(not_equal_bound(name, key_columns));
        }
        if pinned.is_empty() {
            return Err(plan_err!(
                "WHERE clause missing key column for disjunct: {}",
                crate::render::ksql_text(disjunct)
            ));
        }
        if pinned.len() < key_columns.len() {
            return Err(plan_err!(
                "Multi-column sources must specify every key in the WHERE clause"
            ));
        }
    }
    Ok(())
}

fn not_equal_bound(name: &str, key_columns: &[(String, String)]) -> eddy_common::Error {
    let t = key_columns
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, t)| t.as_str());
    plan_err!("Bound on key columns '[`{name}` {t} KEY]' must currently be '='. ")
}

/// The values of an `IN` list on a key column must be of the key's type and not NULL (ksqlDB's
/// messages). `key_columns`: (name, type as printed).
pub fn check_key_lists(stmt: &QueryStatement, key_columns: &[(String, String)]) -> Result<()> {
    let SetExpr::Select(select) = stmt.written.body.as_ref() else {
        return Ok(());
    };
    let Some(selection) = &select.selection else {
        return Ok(());
    };
    let found = visit_expressions(selection, |e| {
        let Expr::InList { expr, list, .. } = e else {
            return ControlFlow::Continue(());
        };
        let Some((name, key_type)) =
            column_name(expr).and_then(|n| key_columns.iter().find(|(k, _)| *k == n))
        else {
            return ControlFlow::Continue(());
        };
        for value in list {
            let Some(value_type) = crate::normalize::literal_type(value) else {
                continue;
            };
            let text = crate::render::ksql_text(value);
            if value_type == "null" {
                return ControlFlow::Break(plan_err!(
                    "Primary key columns can not be NULL: ({name} = {text})"
                ));
            }
            if !crate::typecheck::comparable(key_type, &value_type) {
                return ControlFlow::Break(plan_err!(
                    "{text} can not be converted to the type of the key column: {name} {key_type} KEY"
                ));
            }
        }
        ControlFlow::Continue(())
    });
    crate::normalize::done(found)
}

fn disjuncts_of<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::Nested(inner) => disjuncts_of(inner, out),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Or,
            right,
        } => {
            disjuncts_of(left, out);
            disjuncts_of(right, out);
        }
        other => out.push(other),
    }
}

fn conjuncts_of<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::Nested(inner) => conjuncts_of(inner, out),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts_of(left, out);
            conjuncts_of(right, out);
        }
        other => out.push(other),
    }
}

fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(ident_name(&i.value, i.quote_style)),
        Expr::CompoundIdentifier(parts) => {
            parts.last().map(|i| ident_name(&i.value, i.quote_style))
        }
        Expr::Nested(inner) => column_name(inner),
        _ => None,
    }
}

/// Whether an expression names no column (so it has one value for the whole query).
fn constant(e: &Expr) -> bool {
    visit_expressions(e, |x| match x {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_continue()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_timestamps_fill_in_the_missing_parts() {
        assert_eq!(partial_timestamp("1970-01-01T00:00:01.5"), Some(1500));
        assert_eq!(
            partial_timestamp("2020-02-23T23:45:12.000"),
            Some(1582501512000)
        );
        assert_eq!(
            partial_timestamp("2020-02-23T22:45:12.000-0100"),
            Some(1582501512000)
        );
        assert_eq!(
            partial_timestamp("2020-02-24T24"),
            partial_timestamp("2020-02-25")
        );
        assert_eq!(partial_timestamp("2020-02-22T23:45"), Some(1582415100000));
        assert_eq!(partial_timestamp("yesterday"), None);
    }

    fn query(sql: &str) -> QueryStatement {
        match crate::parse(sql).expect("parse").remove(0).statement {
            crate::statement::Statement::Select(q) => q,
            other => panic!("not a query: {other:?}"),
        }
    }

    #[test]
    fn only_a_where_of_key_pins_is_left_out() {
        let keys = ["ID".to_string()];
        for sql in [
            "SELECT * FROM t WHERE id = 'a';",
            "SELECT n FROM t WHERE 'a' = id LIMIT 3;",
            "SELECT * FROM t WHERE id IN ('a', 'b');",
        ] {
            let without = without_key_pins(&query(sql), &keys).expect(sql);
            let SetExpr::Select(select) = without.written.body.as_ref() else {
                panic!("a SELECT")
            };
            assert!(select.selection.is_none(), "{sql}");
            assert!(!without.query.to_string().contains("'a'"), "{sql}");
        }
        // The same query for another key has the same shape.
        assert_eq!(
            without_key_pins(&query("SELECT * FROM t WHERE id = 'a';"), &keys).map(|q| q.query),
            without_key_pins(&query("SELECT * FROM t WHERE id = 'b';"), &keys).map(|q| q.query)
        );
        for sql in [
            "SELECT * FROM t WHERE id = 'a' AND n > 1;",
            "SELECT * FROM t WHERE n = 1;",
            "SELECT * FROM t WHERE id = 'a' OR id = 'b';",
            "SELECT * FROM t WHERE id = 'a' AND id = 'b';",
            "SELECT * FROM t WHERE id = n;",
            "SELECT * FROM t;",
        ] {
            assert!(without_key_pins(&query(sql), &keys).is_none(), "{sql}");
        }
    }
}

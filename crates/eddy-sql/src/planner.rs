//! Plans a `SELECT` onto DataFusion: sqlparser's AST goes through DataFusion's `SqlToRel` and analyzer,
//! and the resulting filter and projection become physical expressions evaluated over whole batches.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DFSchema, TableReference};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::ColumnarValue;
use datafusion::logical_expr::builder::LogicalTableSource;
use datafusion::logical_expr::planner::{ContextProvider, ExprPlanner, TypePlanner};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{
    AggregateUDF, Expr as DfExpr, ExprSchemable, HigherOrderUDF, LogicalPlan, ScalarUDF,
    TableSource, WindowUDF,
};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionConfig;
use datafusion::sql::planner::PlannerContext;
use datafusion::sql::planner::SqlToRel;
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, ObjectNamePart,
    SelectItem, SetExpr, Statement as SqlStatement, TableFactor, Value,
};

use eddy_common::{Error, Result, internal_err, not_supported, plan_err};

use crate::catalog::{Catalog, Column, Source};
use crate::statement::{ColumnRole, QueryStatement};
use crate::types::SqlType;

/// The planning context: DataFusion's function registry and configuration, tuned for ksqlDB's dialect.
#[derive(Debug, Clone)]
pub struct Planner {
    state: SessionState,
}

impl Default for Planner {
    fn default() -> Self {
        Self::new()
    }
}

impl Planner {
    /// A planner with DataFusion's built-in functions and ksqlDB's names for them.
    pub fn new() -> Self {
        let mut config = SessionConfig::new();
        // Identifiers arrive already case-normalized and quoted (see `normalize`).
        config.options_mut().sql_parser.enable_ident_normalization = false;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        crate::functions::register(&mut state);
        Planner { state }
    }

    /// DataFusion's session state (function registry, configuration).
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// Plans a stateless query over one source: filter and projection as physical expressions.
    pub fn plan_query(&self, catalog: &Catalog, stmt: &QueryStatement) -> Result<QueryPlan> {
        if stmt.window.is_some() {
            return Err(not_supported!(
                "Windowed aggregations are not supported yet"
            ));
        }
        if stmt.partition_by.is_some() {
            return Err(not_supported!("PARTITION BY is not supported yet"));
        }
        let mut query = stmt.query.clone();
        let SetExpr::Select(select) = query.body.as_mut() else {
            return Err(not_supported!(
                "Only SELECT queries are supported, not {}",
                query.body
            ));
        };
        if select.from.len() != 1 || !select.from[0].joins.is_empty() {
            return Err(not_supported!("Joins are not supported yet"));
        }
        if !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty())
            || select.having.is_some()
        {
            return Err(not_supported!(
                "GROUP BY and aggregations are not supported yet"
            ));
        }
        if query.order_by.is_some() {
            return Err(not_supported!(
                "ORDER BY is not supported on streaming queries"
            ));
        }
        let TableFactor::Table { name, alias, .. } = &select.from[0].relation else {
            return Err(not_supported!("FROM must name a stream or table"));
        };
        let source_name = match name.0.as_slice() {
            [ObjectNamePart::Identifier(i)] => i.value.clone(),
            _ => return Err(plan_err!("Invalid source name {name}")),
        };
        let source = catalog.require(&source_name)?.clone();
        let qualifier = alias
            .as_ref()
            .map(|a| a.name.value.clone())
            .unwrap_or(source_name.clone());
        select.projection =
            expand_projection(std::mem::take(&mut select.projection), &source, &qualifier)?;
        let limit = stmt.limit();
        query.limit_clause = None;

        let provider = Provider {
            state: &self.state,
            source: Some(&source),
        };
        let plan = SqlToRel::new(&provider)
            .sql_statement_to_plan(SqlStatement::Query(query))
            .map_err(|e| plan_error(e, &source))?;
        let plan = self
            .state
            .analyzer()
            .execute_and_check(plan, self.state.config_options(), |_, _| {})
            .map_err(|e| plan_error(e, &source))?;
        self.lower(plan, source, limit)
    }

    /// Evaluates constant expressions (the values of `INSERT INTO ... VALUES`).
    pub fn evaluate_constants(&self, exprs: &[Expr]) -> Result<Vec<ScalarValue>> {
        let provider = Provider {
            state: &self.state,
            source: None,
        };
        let planner = SqlToRel::new(&provider);
        let schema = DFSchema::empty();
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )
        .map_err(|e| internal_err!("{e}"))?;
        exprs
            .iter()
            .map(|e| {
                let logical = planner
                    .sql_to_expr(e.clone(), &schema, &mut PlannerContext::new())
                    .map_err(|err| plan_err!("{}", strip_df(&err.to_string())))?;
                let physical = self.physical(logical, &schema)?;
                let value = physical
                    .evaluate(&batch)
                    .map_err(|err| plan_err!("{}", strip_df(&err.to_string())))?;
                match value {
                    ColumnarValue::Scalar(s) => Ok(s),
                    ColumnarValue::Array(a) => {
                        ScalarValue::try_from_array(&a, 0).map_err(|err| internal_err!("{err}"))
                    }
                }
            })
            .collect()
    }

    fn lower(
        &self,
        plan: LogicalPlan,
        source: Arc<Source>,
        limit: Option<u64>,
    ) -> Result<QueryPlan> {
        let LogicalPlan::Projection(projection) = plan else {
            return Err(internal_err!(
                "expected a projection at the top of the plan, got {}",
                plan.display()
            ));
        };
        let mut input = projection.input.as_ref();
        let mut filter = None;
        loop {
            match input {
                LogicalPlan::Filter(f) => {
                    filter = Some(self.physical(f.predicate.clone(), f.input.schema())?);
                    input = f.input.as_ref();
                }
                LogicalPlan::SubqueryAlias(a) => input = a.input.as_ref(),
                LogicalPlan::TableScan(_) => break,
                other => {
                    return Err(not_supported!(
                        "Query shape not supported yet: {}",
                        other.display()
                    ));
                }
            }
        }
        let input_schema = projection.input.schema();
        let source_keys: Vec<&str> = source.key_columns().map(|c| c.name.as_str()).collect();
        let mut exprs = Vec::new();
        let mut columns = Vec::new();
        let mut fields = Vec::new();
        for (i, e) in projection.expr.iter().enumerate() {
            let name = projection.schema.field(i).name().clone();
            let (_, field) = e.to_field(input_schema).map_err(|e| plan_err!("{e}"))?;
            let (dt, nullable) = (field.data_type().clone(), field.is_nullable());
            let sql_type = SqlType::from_arrow(&dt)?;
            let is_key = matches!(e.clone().unalias(), DfExpr::Column(c) if source_keys.contains(&c.name.as_str()));
            columns.push(Column {
                name: name.clone(),
                sql_type,
                role: if is_key {
                    ColumnRole::Key
                } else {
                    ColumnRole::Value
                },
            });
            fields.push(Field::new(name, dt, nullable));
            exprs.push(self.physical(e.clone(), input_schema)?);
        }
        Ok(QueryPlan {
            input_schema: source.input_schema(),
            source,
            filter,
            projection: exprs,
            output_schema: Arc::new(Schema::new(fields)),
            columns,
            limit,
        })
    }

    /// Coerces, simplifies (DataFusion rewrites functions such as `coalesce` here) and lowers an expression.
    fn physical(&self, e: DfExpr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        let context = SimplifyContext::builder()
            .with_schema(Arc::new(schema.clone()))
            .with_config_options(Arc::clone(self.state.config_options()))
            .build();
        let simplifier = ExprSimplifier::new(context);
        let df = |e: datafusion::error::DataFusionError| plan_err!("{}", strip_df(&e.to_string()));
        let e = simplifier.coerce(e, schema).map_err(df)?;
        let e = simplifier.simplify(e).map_err(df)?;
        self.state.create_physical_expr(e, schema).map_err(df)
    }
}

/// A stateless query over one source, ready to run over decoded batches.
#[derive(Debug, Clone)]
pub struct QueryPlan {
    pub source: Arc<Source>,
    /// Schema of the decoded input batches (see [`Source::input_schema`]).
    pub input_schema: SchemaRef,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub projection: Vec<Arc<dyn PhysicalExpr>>,
    /// Schema of the projected batches.
    pub output_schema: SchemaRef,
    /// The output columns with their roles: key columns pass a source key through unchanged.
    pub columns: Vec<Column>,
    pub limit: Option<u64>,
}

impl QueryPlan {
    /// Checks the projection against ksqlDB's rules for a persistent query writing into `sink`.
    pub fn check_persistent_projection(&self, sink: &str) -> Result<()> {
        let source_keys: Vec<&Column> = self.source.key_columns().collect();
        let projected: Vec<&Column> = self
            .columns
            .iter()
            .filter(|c| c.role == ColumnRole::Key)
            .collect();
        if !source_keys.is_empty() && projected.is_empty() {
            let names: Vec<&str> = source_keys.iter().map(|c| c.name.as_str()).collect();
            let (noun, list) = if names.len() == 1 {
                ("column", names[0].to_string())
            } else {
                (
                    "columns",
                    format!(
                        "{} and {}",
                        names[..names.len() - 1].join(", "),
                        names[names.len() - 1]
                    ),
                )
            };
            return Err(plan_err!(
                "Key missing from projection (ie, SELECT). See https://cnfl.io/2LV7ouS.\nThe query used to build `{sink}` must include the key {noun} {list} in its projection (eg, SELECT {}...).",
                names.join(", ")
            ));
        }
        if projected.len() > source_keys.len() {
            let dupes: Vec<&str> = projected.iter().map(|c| c.name.as_str()).collect();
            let key = source_keys
                .first()
                .map(|c| c.name.as_str())
                .unwrap_or_default();
            return Err(plan_err!(
                "The projection contains a key column (`{key}`) more than once, aliased as: {}.",
                dupes.join(" and ")
            ));
        }
        for c in &self.columns {
            if [
                crate::catalog::ROWTIME,
                crate::catalog::ROWPARTITION,
                crate::catalog::ROWOFFSET,
                "WINDOWSTART",
                "WINDOWEND",
            ]
            .contains(&c.name.as_str())
            {
                return Err(plan_err!(
                    "`{}` is a reserved column name. You cannot use it as an alias for a column.",
                    c.name
                ));
            }
        }
        if self.columns.iter().all(|c| c.role == ColumnRole::Key) {
            return Err(plan_err!("The projection contains no value columns."));
        }
        Ok(())
    }
}

/// Expands `*` into the source's key and value columns (not the pseudo-columns) and names every
/// unaliased item as ksqlDB does: a column keeps its name, a struct field access takes the field's name,
/// anything else becomes `KSQL_COL_<n>`.
fn expand_projection(
    items: Vec<SelectItem>,
    source: &Source,
    qualifier: &str,
) -> Result<Vec<SelectItem>> {
    let mut out = Vec::new();
    let mut generated = 0;
    for item in items {
        match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(_, _) => {
                for c in source.key_columns().chain(source.value_columns()) {
                    out.push(SelectItem::UnnamedExpr(Expr::CompoundIdentifier(vec![
                        quoted(qualifier),
                        quoted(&c.name),
                    ])));
                }
            }
            SelectItem::UnnamedExpr(expr) => {
                let name = match &expr {
                    Expr::Identifier(i) => i.value.clone(),
                    Expr::CompoundIdentifier(parts) => {
                        parts.last().map(|p| p.value.clone()).unwrap_or_default()
                    }
                    Expr::Function(f) if f.name.to_string() == "get_field" => match &f.args {
                        FunctionArguments::List(l) => match l.args.get(1) {
                            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) => {
                                match &v.value {
                                    Value::SingleQuotedString(s) => s.clone(),
                                    _ => next_generated(&mut generated),
                                }
                            }
                            _ => next_generated(&mut generated),
                        },
                        _ => next_generated(&mut generated),
                    },
                    _ => next_generated(&mut generated),
                };
                out.push(SelectItem::ExprWithAlias {
                    expr,
                    alias: quoted(&name),
                });
            }
            other => out.push(other),
        }
    }
    // ksqlDB numbers generated names by position in the projection.
    Ok(out)
}

fn next_generated(n: &mut usize) -> String {
    let name = format!("KSQL_COL_{n}");
    *n += 1;
    name
}

fn quoted(s: &str) -> Ident {
    Ident::with_quote('"', s)
}

/// DataFusion's messages start with "Error during planning: "; ksqlDB users expect the message itself.
fn strip_df(message: &str) -> String {
    let mut m = message;
    for prefix in [
        "Schema error: ",
        "Error during planning: ",
        "This feature is not implemented: ",
        "Execution error: ",
    ] {
        m = m.strip_prefix(prefix).unwrap_or(m);
    }
    m.to_string()
}

fn plan_error(e: datafusion::error::DataFusionError, source: &Source) -> Error {
    let msg = strip_df(&e.to_string());
    if let Some(rest) = msg.strip_prefix("No field named ") {
        // The name comes first, e.g. `"NOPE". Valid fields are ...` or `S."NOPE"`.
        let token = rest
            .split_whitespace()
            .next()
            .unwrap_or(rest)
            .trim_end_matches('.');
        let field = match token.rfind('"') {
            Some(end) => token[..end].rsplit('"').next().unwrap_or(token),
            None => token.rsplit('.').next().unwrap_or(token),
        };
        return plan_err!(
            "Column '{field}' cannot be resolved in {} {}.",
            source.kind.as_str().to_lowercase(),
            source.name
        );
    }
    plan_err!("{msg}")
}

/// Resolves the one source of a query and DataFusion's functions.
struct Provider<'a> {
    state: &'a SessionState,
    source: Option<&'a Source>,
}

impl ContextProvider for Provider<'_> {
    fn get_table_source(
        &self,
        name: TableReference,
    ) -> datafusion::error::Result<Arc<dyn TableSource>> {
        if let Some(source) = self.source.filter(|s| s.name == name.table()) {
            Ok(Arc::new(LogicalTableSource::new(source.input_schema())))
        } else {
            datafusion::common::plan_err!("{} does not exist.", name.table())
        }
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        self.state.expr_planners()
    }

    fn get_type_planner(&self) -> Option<Arc<dyn TypePlanner>> {
        None
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.state.scalar_functions().get(name).cloned()
    }

    fn get_higher_order_meta(&self, name: &str) -> Option<Arc<HigherOrderUDF>> {
        self.state.higher_order_functions().get(name).cloned()
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.state.aggregate_functions().get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.state.window_functions().get(name).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        self.state.config_options()
    }

    fn udf_names(&self) -> Vec<String> {
        self.state.scalar_functions().keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        self.state
            .higher_order_functions()
            .keys()
            .cloned()
            .collect()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.state.aggregate_functions().keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.state.window_functions().keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, Column, SourceDefaults};
    use crate::statement::Statement;

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        let parsed = crate::parse("CREATE STREAM S (K STRING KEY, A INT, B STRUCT<X DOUBLE>) WITH (kafka_topic='s', value_format='JSON');").unwrap();
        let Statement::CreateSource(create) = &parsed[0].statement else {
            unreachable!()
        };
        let cols = create.columns.iter().map(Column::from).collect();
        c.insert(
            Source::from_create(create, cols, &SourceDefaults::default(), &parsed[0].text).unwrap(),
        );
        c
    }

    fn plan(sql: &str) -> Result<QueryPlan> {
        let parsed = crate::parse(sql)?;
        let Statement::Select(q) = &parsed[0].statement else {
            unreachable!()
        };
        Planner::new().plan_query(&catalog(), q)
    }

    #[test]
    fn output_columns_are_named_like_ksqldb() {
        let p = plan("SELECT K, A + 1, B->X, a AS renamed, LEN(K) FROM S EMIT CHANGES;").unwrap();
        let names: Vec<&str> = p.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["K", "KSQL_COL_0", "X", "RENAMED", "KSQL_COL_1"]);
        assert_eq!(p.columns[0].role, ColumnRole::Key);
        assert_eq!(p.columns[2].sql_type, SqlType::Double);
        let star = plan("SELECT * FROM S EMIT CHANGES;").unwrap();
        assert_eq!(
            star.columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["K", "A", "B"]
        );
    }

    #[test]
    fn unknown_columns_and_sources_are_named_in_the_error() {
        assert_eq!(
            plan("SELECT nope FROM S EMIT CHANGES;")
                .unwrap_err()
                .to_string(),
            "Column 'NOPE' cannot be resolved in stream S."
        );
        assert_eq!(
            plan("SELECT * FROM T EMIT CHANGES;")
                .unwrap_err()
                .to_string(),
            "T does not exist."
        );
    }
}

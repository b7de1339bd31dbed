//! Plans a `SELECT` onto DataFusion: sqlparser's AST goes through DataFusion's `SqlToRel` and analyzer,
//! and the resulting filter and projection become physical expressions evaluated over whole batches.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::execution::FunctionRegistry;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DFSchemaRef, TableReference};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::ColumnarValue;
use datafusion::logical_expr::Operator;
use datafusion::logical_expr::builder::LogicalTableSource;
use datafusion::logical_expr::expr::{BinaryExpr, ScalarFunction};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::planner::{
    ContextProvider, ExprPlanner, PlannerResult, RawBinaryExpr, TypePlanner,
};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{
    AggregateUDF, Expr as DfExpr, ExprSchemable, HigherOrderUDF, LogicalPlan, ScalarUDF,
    TableSource, WindowUDF,
};
use datafusion::logical_expr::{cast, lit};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_expr::expressions::CastExpr;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::prelude::SessionConfig;
use datafusion::sql::planner::PlannerContext;
use datafusion::sql::planner::SqlToRel;
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, ObjectNamePart,
    Select, SelectItem, SetExpr, Statement as SqlStatement, TableFactor, Value,
};

use eddy_common::{Error, Result, internal_err, not_supported, plan_err};

use crate::aggregate::AggregateSpec;
use crate::catalog::{Catalog, Column, Source, WINDOWEND, WINDOWSTART, window_bound_fields};
use crate::join::JoinPlan;
use crate::normalize::{self, get_field};
use crate::parser::COMPLEX_CAST;
use crate::statement::{ColumnRole, QueryStatement, WindowSpec};
use crate::types::SqlType;
use crate::window::KeyWindow;

/// The planning context: DataFusion's function registry and configuration, tuned for ksqlDB's dialect.
#[derive(Debug, Clone)]
pub struct Planner {
    state: SessionState,
    /// The names of table functions (lower case).
    table_functions: BTreeSet<String>,
    /// Ours first, then DataFusion's.
    expr_planners: Vec<Arc<dyn ExprPlanner>>,
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
        let mut expr_planners: Vec<Arc<dyn ExprPlanner>> = vec![Arc::new(KsqlOperators)];
        expr_planners.extend(state.expr_planners().iter().cloned());
        let mut planner = Planner {
            state,
            table_functions: BTreeSet::new(),
            expr_planners,
        };
        planner.register_table_function(crate::functions::explode());
        planner.register_table_function(crate::functions::cube_explode());
        planner
    }

    /// DataFusion's session state (function registry, configuration).
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// Whether a scalar, aggregate, table or higher-order function of this name (any case) exists.
    pub fn has_function(&self, name: &str) -> bool {
        let lower = name.to_lowercase();
        self.state.scalar_functions().contains_key(&lower)
            || self.state.aggregate_functions().contains_key(&lower)
            || self.state.higher_order_functions().contains_key(&lower)
    }

    /// Adds a scalar function, replacing one of the same name (queries already planned keep theirs).
    pub fn register_udf(&mut self, udf: ScalarUDF) {
        // Registration only fails for invalid names, which a function's manifest cannot have.
        let _ = FunctionRegistry::register_udf(&mut self.state, Arc::new(udf));
    }

    /// Adds an aggregate function, replacing one of the same name.
    pub fn register_udaf(&mut self, udaf: AggregateUDF) {
        let _ = FunctionRegistry::register_udaf(&mut self.state, Arc::new(udaf));
    }

    /// A planner whose COLLECT_LIST and COLLECT_SET keep at most the given numbers of values
    /// (`ksql.functions.collect_list.limit`, `ksql.functions.collect_set.limit`).
    pub fn with_collection_limits(&self, list: Option<usize>, set: Option<usize>) -> Planner {
        let mut planner = self.clone();
        for (is_set, limit) in [(false, list), (true, set)] {
            if let Some(limit) = limit {
                let udaf = crate::functions::collect::collection(is_set, limit);
                let _ = FunctionRegistry::register_udaf(&mut planner.state, Arc::new(udaf));
            }
        }
        planner
    }

    /// Plans the query of a persistent query over one source: filter, projection and aggregation as
    /// physical expressions.
    pub fn plan_query(&self, catalog: &Catalog, stmt: &QueryStatement) -> Result<QueryPlan> {
        self.plan(catalog, stmt, false)
    }

    /// Plans a transient (push or pull) query: as [`Planner::plan_query`], and `*` over a windowed
    /// source also gives the window bounds, after the key columns.
    pub fn plan_transient(&self, catalog: &Catalog, stmt: &QueryStatement) -> Result<QueryPlan> {
        self.plan(catalog, stmt, true)
    }

    fn plan(&self, catalog: &Catalog, stmt: &QueryStatement, transient: bool) -> Result<QueryPlan> {
        let rewritten = crate::join::rewrite(catalog, stmt)?;
        let (stmt, join) = match &rewritten {
            Some(r) => (&r.statement, Some(self.plan_join(r)?)),
            None => (stmt, None),
        };
        let mut query = stmt.query.clone();
        let SetExpr::Select(select) = query.body.as_mut() else {
            return Err(not_supported!(
                "Only SELECT queries are supported, not {}",
                query.body
            ));
        };
        if select.from.len() != 1 || !select.from[0].joins.is_empty() {
            return Err(not_supported!(
                "FROM must name one stream or table, or join them with JOIN"
            ));
        }
        // `GROUP BY (a, b)` (one grouping set) groups by a and b.
        if let GroupByExpr::Expressions(exprs, _) = &mut select.group_by {
            *exprs = std::mem::take(exprs)
                .into_iter()
                .flat_map(|e| match e {
                    Expr::Tuple(items) => items,
                    other => vec![other],
                })
                .collect();
        }
        if stmt.window.is_none()
            && !matches!(&select.group_by, GroupByExpr::Expressions(_, modifiers) if modifiers.is_empty())
        {
            return Err(not_supported!(
                "GROUP BY ... WITH ROLLUP/CUBE is not supported"
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
        let source = match &join {
            Some((_, source)) => source.clone(),
            None => catalog.require(&source_name)?.clone(),
        };
        if source.kind == crate::statement::SourceKind::Table && stmt.partition_by.is_some() {
            return Err(plan_err!(
                "PARTITION BY can only be used on a stream: {source_name} is a table. Use GROUP BY to re-key a table."
            ));
        }
        if let Some(window) = &stmt.window {
            window.check()?;
            if source.kind == crate::statement::SourceKind::Table {
                return Err(plan_err!(
                    "Windowing not supported for table aggregations: {source_name} is a table. Aggregate the stream its rows come from in windows, or drop the WINDOW clause."
                ));
            }
            if source.window.is_some() {
                return Err(not_supported!(
                    "A windowed aggregation over {source_name}, whose keys are already windowed, is not supported yet"
                ));
            }
            check_window_bounds_use(select, &self.state)?;
            match &mut select.group_by {
                GroupByExpr::Expressions(exprs, _) if !exprs.is_empty() => {
                    // The window is part of every group: its bounds become the last grouping columns.
                    exprs.push(Expr::Identifier(quoted(WINDOWSTART)));
                    exprs.push(Expr::Identifier(quoted(WINDOWEND)));
                }
                _ => {
                    return Err(plan_err!(
                        "A WINDOW clause needs a GROUP BY: windows group the rows of each key (eg, GROUP BY id)."
                    ));
                }
            }
        }
        let qualifier = alias
            .as_ref()
            .map(|a| a.name.value.clone())
            .unwrap_or(source_name.clone());
        if let SetExpr::Select(written) = stmt.written.body.as_ref() {
            if let Some(selection) = &written.selection {
                crate::typecheck::check_where(selection, &source)?;
            }
            if !transient {
                check_unaliased_pseudo_columns(written)?;
            }
            let is_aggregate = |name: &str| self.state.aggregate_functions().contains_key(name);
            let is_function = |name: &str| {
                is_aggregate(name)
                    || self.state.scalar_functions().contains_key(name)
                    || matches!(name, "struct" | "map" | "array")
            };
            crate::grouping::check(
                written,
                &qualifier,
                stmt.window.is_some(),
                !transient,
                &is_aggregate,
                &is_function,
                &|name| self.table_functions.contains(name),
            )?;
        }
        let partition = stmt
            .partition_by
            .as_deref()
            .map(|exprs| partition_exprs(exprs, &qualifier))
            .transpose()?;
        select.projection = expand_projection(
            std::mem::take(&mut select.projection),
            &source,
            &qualifier,
            partition.as_deref(),
            transient && source.window.is_some(),
        )?;
        let limit = stmt.limit();
        query.limit_clause = None;

        let provider = Provider {
            state: &self.state,
            expr_planners: &self.expr_planners,
            source: Some((&source, planning_schema(&source, stmt.window.is_some()))),
        };
        if let Some(partition) = &partition {
            self.check_partition_columns(&provider, partition, &source, &qualifier, select)?;
            // Planned with the projection so that both go through the same coercion; `lower` takes them
            // off again and uses them to find the projected key columns.
            for (i, p) in partition.iter().enumerate() {
                select.projection.push(SelectItem::ExprWithAlias {
                    expr: p.expr.clone(),
                    alias: quoted(&format!("{HIDDEN_PARTITION}{i}")),
                });
            }
        }
        let plan = SqlToRel::new(&provider)
            .sql_statement_to_plan(SqlStatement::Query(query))
            .and_then(crate::in_list::type_in_lists)
            .and_then(crate::constructors::type_constructors)
            .and_then(crate::aggregate_resolution::check_aggregates)
            .map_err(|e| plan_error(e, &source))?;
        let plan = self
            .state
            .analyzer()
            .execute_and_check(plan, self.state.config_options(), |_, _| {})
            .map_err(|e| plan_error(e, &source))?;
        let mut plan = self.lower(plan, source, limit, partition, stmt.window.clone())?;
        plan.filter_deletes = !transient;
        plan.join = join.map(|(plan, _)| plan);
        if stmt.emit == Some(crate::statement::Emit::Final) {
            if stmt.window.is_none() {
                return Err(plan_err!(
                    "EMIT FINAL is only supported for windowed aggregations: add a WINDOW clause or use EMIT CHANGES."
                ));
            }
            plan.emit_final = true;
        }
        Ok(plan)
    }

    /// Plans the join expressions of a join query over each side's columns, join by join: they must
    /// have the same type, which is the key's. Returns the (last) join and the joined input as a
    /// source.
    fn plan_join(&self, r: &crate::join::Rewritten) -> Result<(Arc<JoinPlan>, Arc<Source>)> {
        let provider = Provider {
            state: &self.state,
            expr_planners: &self.expr_planners,
            source: None,
        };
        let planner = SqlToRel::new(&provider);
        // The joins before the next one, and their joined input.
        let mut before: Option<(Arc<JoinPlan>, Arc<Source>)> = None;
        for (stage, join) in r.joins.iter().enumerate() {
            let leaf = &r.leaves[stage + 1];
            let left = before
                .as_ref()
                .map_or_else(|| r.leaves[0].source.clone(), |(_, s)| s.clone());
            let columns = [r.left_columns(stage, &left), leaf.joined_columns()];
            let mut planned = Vec::new();
            for (on, columns) in join.on.iter().zip(columns) {
                let fields: Vec<Field> = columns
                    .into_iter()
                    .map(|(name, data_type)| Field::new(name, data_type, true))
                    .collect();
                let schema =
                    DFSchema::try_from(Schema::new(fields)).map_err(|e| internal_err!("{e}"))?;
                let logical = planner
                    .sql_to_expr(on.clone(), &schema, &mut PlannerContext::new())
                    .map_err(|e| match unresolved_field(&strip_df(&e.to_string())) {
                        Some(column) => plan_err!(
                            "JOIN ON column '{}' cannot be resolved.",
                            column.replacen('_', ".", 1)
                        ),
                        None => plan_err!("{}", strip_df(&e.to_string())),
                    })?;
                let (_, field) = logical
                    .to_field(&schema)
                    .map_err(|e| plan_err!("{}", strip_df(&e.to_string())))?;
                let physical = self.physical(logical, &schema)?;
                planned.push((physical, field.data_type().clone()));
            }
            let [(left_key, left_type), (right_key, right_type)] =
                <[_; 2]>::try_from(planned).map_err(|_| internal_err!("a join has two sides"))?;
            let key_type = SqlType::from_arrow(&left_type)?;
            if left_type != right_type {
                return Err(plan_err!(
                    "Invalid join condition: types don't match. Got {}{{{}}} = {}{{{}}}.",
                    join.on_text[0],
                    key_type,
                    join.on_text[1],
                    SqlType::from_arrow(&right_type)?
                ));
            }
            let key_name = match join.viable.first() {
                Some((column, _)) if !join.synthetic_key => column,
                _ => &join.key_columns[0],
            };
            crate::catalog::check_key_type(key_name, &key_type)?;
            let source = r.joined_source(stage, &left, key_type)?;
            let nested = before.map(|(plan, _)| plan);
            let plan = JoinPlan {
                kind: join.kind,
                join_type: join.join_type,
                left: crate::join::JoinSide {
                    alias: match nested {
                        Some(_) => String::new(),
                        None => r.leaves[0].alias.clone(),
                    },
                    source: left,
                    key: left_key,
                    key_text: join.on_text[0].clone(),
                    repartition: join.repartition[0],
                    nested,
                },
                right: crate::join::JoinSide {
                    source: leaf.source.clone(),
                    alias: leaf.alias.clone(),
                    key: right_key,
                    key_text: join.on_text[1].clone(),
                    repartition: join.repartition[1],
                    nested: None,
                },
                schema: source.input_schema(),
                key: crate::join::JoinKey {
                    columns: join.key_columns.clone(),
                    synthetic: join.synthetic_key,
                    viable: join.viable.iter().map(|(_, text)| text.clone()).collect(),
                    data_type: left_type,
                },
            };
            before = Some((Arc::new(plan), Arc::new(source)));
        }
        before.ok_or_else(|| internal_err!("a join query without a join"))
    }

    /// The GROUP BY and aggregate functions of an `Aggregate` node, as physical expressions over the
    /// query's input, with the columns of its output that hold the GROUP BY values.
    fn aggregate_spec(
        &self,
        a: &datafusion::logical_expr::Aggregate,
        having: Option<Arc<dyn PhysicalExpr>>,
        window: Option<WindowSpec>,
    ) -> Result<(Arc<AggregateSpec>, Vec<DfExpr>)> {
        let df = |e: datafusion::error::DataFusionError| plan_err!("{}", strip_df(&e.to_string()));
        let input = a.input.schema();
        // The window bounds, the last two grouping columns, are filled in by the aggregation itself.
        let keys = a.group_expr.len() - if window.is_some() { 2 } else { 0 };
        let group_exprs = a.group_expr[..keys]
            .iter()
            .map(|e| self.physical(e.clone(), input))
            .collect::<Result<Vec<_>>>()?;
        let mut aggregates = Vec::new();
        for e in &a.aggr_expr {
            let context = PhysicalPlanningContext::default();
            let lowered = LoweredAggregateBuilder::new(
                e,
                input,
                input.as_arrow(),
                self.state.execution_props(),
                &context,
            )
            .with_name(e.schema_name().to_string())
            .build()
            .map_err(df)?;
            if lowered.filter.is_some() || !lowered.order_bys.is_empty() {
                return Err(not_supported!(
                    "FILTER and ORDER BY inside aggregate functions are not supported"
                ));
            }
            // One accumulator made now: a function that refuses its constant arguments (a plugin's
            // aggregate checks them when it makes accumulators) refuses the query when it is planned.
            lowered.aggregate.create_accumulator().map_err(df)?;
            aggregates.push(lowered.aggregate);
        }
        let group_columns = (0..a.group_expr.len())
            .map(|i| {
                DfExpr::Column(datafusion::common::Column::from(
                    a.schema.qualified_field(i),
                ))
            })
            .collect();
        Ok((
            Arc::new(AggregateSpec {
                group_exprs,
                aggregates,
                having,
                window,
                schema: Arc::new(a.schema.as_arrow().clone()),
                input_schema: Arc::new(input.as_arrow().clone()),
            }),
            group_columns,
        ))
    }

    /// PARTITION BY is applied to the input: its columns must be the source's, not the projection's.
    fn check_partition_columns(
        &self,
        provider: &Provider,
        partition: &[PartitionKey],
        source: &Source,
        qualifier: &str,
        select: &Select,
    ) -> Result<()> {
        let schema = DFSchema::try_from_qualified_schema(qualifier, &source.input_schema())
            .map_err(|e| internal_err!("{e}"))?;
        let planner = SqlToRel::new(provider);
        for p in partition {
            let Err(e) = planner.sql_to_expr(p.expr.clone(), &schema, &mut PlannerContext::new())
            else {
                continue;
            };
            let Some(column) = unresolved_field(&strip_df(&e.to_string())) else {
                return Err(plan_err!("{}", strip_df(&e.to_string())));
            };
            let aliased = select.projection.iter().any(
                |item| matches!(item, SelectItem::ExprWithAlias { alias, .. } if alias.value == column),
            );
            return Err(if aliased {
                plan_err!(
                    "PARTITION BY column '{column}' cannot be resolved. '{column}' must be a column in the source schema since PARTITION BY is applied on the input."
                )
            } else {
                plan_err!("PARTITION BY column '{column}' cannot be resolved.")
            });
        }
        Ok(())
    }

    /// Evaluates constant expressions (the values of `INSERT INTO ... VALUES`).
    pub fn evaluate_constants(&self, exprs: &[Expr]) -> Result<Vec<ScalarValue>> {
        let provider = Provider {
            state: &self.state,
            expr_planners: &self.expr_planners,
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
        partition: Option<Vec<PartitionKey>>,
        window: Option<WindowSpec>,
    ) -> Result<QueryPlan> {
        let LogicalPlan::Projection(projection) = plan else {
            return Err(internal_err!(
                "expected a projection at the top of the plan, got {}",
                plan.display()
            ));
        };
        let mut input = projection.input.as_ref();
        let mut filter = None;
        let mut having = None;
        let mut aggregate: Option<(Arc<AggregateSpec>, Vec<DfExpr>)> = None;
        loop {
            match input {
                LogicalPlan::Filter(f) if matches!(f.input.as_ref(), LogicalPlan::Aggregate(_)) => {
                    check_casts(&f.predicate, f.input.schema(), "Having")?;
                    having = Some(self.physical(f.predicate.clone(), f.input.schema())?);
                    input = f.input.as_ref();
                }
                LogicalPlan::Aggregate(a) => {
                    let spec = self.aggregate_spec(a, having.take(), window.clone())?;
                    if source.kind == crate::statement::SourceKind::Table {
                        check_retractable(&spec.0)?;
                    }
                    aggregate = Some(spec);
                    input = a.input.as_ref();
                }
                LogicalPlan::Filter(f) => {
                    check_casts(&f.predicate, f.input.schema(), "Predicate")?;
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
        let (projected, table_functions, input_schema) = self.table_functions(
            &projection.expr,
            projection.input.schema(),
            aggregate.is_some(),
        )?;
        let input_schema = &input_schema;
        let hidden = partition.as_ref().map_or(0, Vec::len);
        let visible = projected.len() - hidden;
        let partition_exprs: Vec<DfExpr> = projected[visible..]
            .iter()
            .map(|e| e.clone().unalias())
            .collect();
        // The grouping columns that make the output key (not the window bounds).
        let group_columns: Vec<DfExpr> = aggregate
            .as_ref()
            .map(|(spec, g)| g[..spec.group_exprs.len()].to_vec())
            .unwrap_or_default();
        let mut keys: Vec<RequiredKey> = match &partition {
            Some(p) => p
                .iter()
                .map(|k| RequiredKey {
                    name: k.column.clone(),
                    text: k.text.clone(),
                    columns: Vec::new(),
                })
                .collect(),
            None if aggregate.is_some() => group_columns
                .iter()
                .map(|g| match g {
                    DfExpr::Column(c) => RequiredKey {
                        name: Some(c.name.clone()),
                        text: c.name.clone(),
                        columns: Vec::new(),
                    },
                    other => RequiredKey {
                        name: None,
                        text: other.to_string(),
                        columns: Vec::new(),
                    },
                })
                .collect(),
            None => source
                .key_columns()
                .map(|c| RequiredKey {
                    name: Some(c.name.clone()),
                    text: c.name.clone(),
                    columns: Vec::new(),
                })
                .collect(),
        };
        let mut exprs = Vec::new();
        let mut columns = Vec::new();
        let mut fields = Vec::new();
        let mut key_slots = Vec::new();
        let source_keys: Vec<&str> = source.key_columns().map(|c| c.name.as_str()).collect();
        let mut value_dependent_keys = Vec::new();
        let sum_types = aggregate
            .as_ref()
            .map(|(spec, _)| ksql_sum_types(spec))
            .unwrap_or_default();
        for (i, e) in projected[..visible].iter().enumerate() {
            let e = &ksql_sums(e.clone(), &sum_types)?;
            let name = projection.schema.field(i).name().clone();
            let (_, field) = e.to_field(input_schema).map_err(|e| plan_err!("{e}"))?;
            let (dt, nullable) = (field.data_type().clone(), field.is_nullable());
            check_case_types(e)?;
            if dt == DataType::Null {
                return Err(plan_err!(
                    "Can't infer a type of null. Please explicitly cast it to a required type, e.g. CAST(null AS VARCHAR)."
                ));
            }
            let sql_type = SqlType::from_arrow(&dt)?;
            let unaliased = e.clone().unalias();
            let key = match (&partition, &unaliased) {
                (Some(_), e) => partition_exprs.iter().position(|p| p == e),
                (None, e) if aggregate.is_some() => group_columns.iter().position(|g| g == e),
                (None, DfExpr::Column(c)) => keys
                    .iter()
                    .position(|k| k.name.as_deref() == Some(c.name.as_str())),
                (None, _) => None,
            };
            if let Some(k) = key
                && partition.is_some()
                && partition_exprs[k]
                    .column_refs()
                    .iter()
                    .any(|c| !source_keys.contains(&c.name.as_str()))
            {
                value_dependent_keys.push(name.clone());
            }
            if let Some(k) = key {
                keys[k].columns.push(name.clone());
                key_slots.push((columns.len(), k));
            }
            columns.push(Column::new(
                name.clone(),
                sql_type,
                if key.is_some() {
                    ColumnRole::Key
                } else {
                    ColumnRole::Value
                },
            ));
            fields.push(Field::new(name, dt, nullable));
            check_casts(e, input_schema, "Select")?;
            exprs.push(self.physical(e.clone(), input_schema)?);
        }
        if partition.is_some() || aggregate.is_some() {
            // The key columns take PARTITION BY's (GROUP BY's) order, in the places the projection gave them.
            let mut by_key = key_slots.clone();
            by_key.sort_by_key(|(_, k)| *k);
            let mut order: Vec<usize> = (0..columns.len()).collect();
            for ((slot, _), (from, _)) in key_slots.iter().zip(&by_key) {
                order[*slot] = *from;
            }
            exprs = order.iter().map(|i| exprs[*i].clone()).collect();
            columns = order.iter().map(|i| columns[*i].clone()).collect();
            fields = order.iter().map(|i| fields[*i].clone()).collect();
        }
        let window = match (&aggregate, source.window) {
            (Some((spec, _)), _) => spec.window.as_ref().map(WindowSpec::key_window),
            (None, Some(_)) if partition.is_some() => {
                return Err(not_supported!(
                    "PARTITION BY on {}, whose keys are windowed, is not supported yet",
                    source.name
                ));
            }
            (None, w) => w,
        };
        Ok(QueryPlan {
            window,
            emit_final: false,
            input_schema: source.input_schema(),
            source,
            filter,
            projection: exprs,
            output_schema: Arc::new(Schema::new(fields)),
            columns,
            keys,
            partitioned: partition.is_some(),
            value_dependent_keys,
            grouped: aggregate.is_some(),
            aggregate: aggregate.map(|(spec, _)| spec),
            table_functions,
            limit,
            filter_deletes: true,
            join: None,
        })
    }

    /// Table functions (EXPLODE, plugin UDTFs) in the projection are computed first, over the filtered
    /// input: each call gives a list per row, and each row becomes as many rows as its longest list
    /// (shorter lists give NULLs). The projection then reads each call's element as a column appended
    /// to the input. Returns the projection with the calls replaced by those columns, the calls, and
    /// the schema the projection reads.
    fn table_functions(
        &self,
        exprs: &[DfExpr],
        input: &DFSchemaRef,
        aggregated: bool,
    ) -> Result<TableFunctions> {
        let mut calls: Vec<DfExpr> = Vec::new();
        let is_call = |e: &DfExpr| matches!(e, DfExpr::ScalarFunction(f) if self.table_functions.contains(f.name()));
        let rewritten = exprs
            .iter()
            .map(|e| {
                e.clone()
                    .transform_up(|node| {
                        if !is_call(&node) {
                            return Ok(Transformed::no(node));
                        }
                        let column = DfExpr::Column(datafusion::common::Column::from_name(
                            format!("KSQL_TABLE_FUNCTION_{}", calls.len()),
                        ));
                        calls.push(node);
                        Ok(Transformed::yes(column))
                    })
                    .map(|t| t.data)
                    .map_err(|e| plan_err!("{e}"))
            })
            .collect::<Result<Vec<_>>>()?;
        if calls.is_empty() {
            return Ok((rewritten, Vec::new(), input.clone()));
        }
        if aggregated {
            return Err(plan_err!(
                "Table functions cannot be used with aggregations."
            ));
        }
        let mut fields = Vec::new();
        let mut physical = Vec::new();
        for (i, call) in calls.into_iter().enumerate() {
            if call
                .exists(|e| Ok(e != &call && is_call(e)))
                .unwrap_or(false)
            {
                return Err(plan_err!("Table functions cannot be nested: {call}"));
            }
            // A table function's type is its elements'; the function returns a list of them per row.
            let (_, field) = call
                .to_field(input)
                .map_err(|e| plan_err!("{}", strip_df(&e.to_string())))?;
            let element = field.data_type().clone();
            let DfExpr::ScalarFunction(f) = &call else {
                unreachable!("table function calls are scalar function calls")
            };
            let args = f
                .args
                .iter()
                .map(|a| self.physical(a.clone(), input))
                .collect::<Result<Vec<_>>>()?;
            let list = DataType::List(Arc::new(Field::new("item", element.clone(), true)));
            physical.push(Arc::new(ScalarFunctionExpr::new(
                f.name(),
                f.func.clone(),
                args,
                Arc::new(Field::new(f.name(), list, true)),
                Arc::clone(self.state.config_options()),
            )) as Arc<dyn PhysicalExpr>);
            fields.push(Field::new(
                format!("KSQL_TABLE_FUNCTION_{i}"),
                element,
                true,
            ));
        }
        let extra = DFSchema::from_unqualified_fields(fields.into(), Default::default())
            .map_err(|e| plan_err!("{e}"))?;
        let mut extended = input.as_ref().clone();
        extended.merge(&extra);
        Ok((rewritten, physical, Arc::new(extended)))
    }

    /// Adds a table function: a scalar function whose type is its elements' and which returns a list of
    /// them per row; the elements become rows.
    pub fn register_table_function(&mut self, udf: ScalarUDF) {
        self.table_functions.insert(udf.name().to_string());
        self.register_udf(udf);
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
        let e = self.ksql_casts(e, schema).map_err(df)?;
        let e = simplifier.simplify(e).map_err(df)?;
        self.state.create_physical_expr(e, schema).map_err(df)
    }
}

impl Planner {
    /// Casts that ksqlDB does differently from DataFusion (see `functions::cast::differs`) go through
    /// `ksql_cast`.
    fn ksql_casts(&self, e: DfExpr, schema: &DFSchema) -> datafusion::error::Result<DfExpr> {
        let Some(udf) = self.state.scalar_functions().get(COMPLEX_CAST).cloned() else {
            return Ok(e);
        };
        e.transform_up(|e| {
            let DfExpr::Cast(c) = &e else {
                return Ok(Transformed::no(e));
            };
            let from = c.expr.get_type(schema)?;
            if !crate::functions::cast::differs(&from, c.field.data_type()) {
                return Ok(Transformed::no(e));
            }
            let to = SqlType::from_arrow(c.field.data_type())
                .map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?;
            let args = vec![c.expr.as_ref().clone(), lit(to.to_string())];
            Ok(Transformed::yes(DfExpr::ScalarFunction(
                ScalarFunction::new_udf(udf.clone(), args),
            )))
        })
        .map(|t| t.data)
    }
}

/// ksqlDB's check of the casts in an expression: `what` says where it is (`Select`, `Predicate`).
fn check_casts(e: &DfExpr, schema: &DFSchema, what: &str) -> Result<()> {
    let mut problem = None;
    e.apply(|e| {
        if let DfExpr::ScalarFunction(f) = e
            && f.func.name() == COMPLEX_CAST
            && let Ok((_, to)) = e.to_field(schema)
            && let Ok(from) = f.args[0].get_type(schema)
            && let Err(msg) = crate::functions::cast::check(&from, to.data_type())
        {
            problem = Some(msg);
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| internal_err!("{e}"))?;
    match problem {
        Some(msg) => Err(plan_err!("Invalid {what}: {msg}")),
        None => Ok(()),
    }
}

/// ksqlDB's typing of binary operators where DataFusion's differs: `+` also joins strings (`'a' + s` is
/// `'a' || s`), and a DOUBLE meeting a DECIMAL makes the DECIMAL a DOUBLE (DataFusion would go the
/// other way, slower and with other results).
#[derive(Debug)]
struct KsqlOperators;

impl ExprPlanner for KsqlOperators {
    fn plan_binary_op(
        &self,
        mut expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> datafusion::error::Result<PlannerResult<RawBinaryExpr>> {
        let left = expr.left.get_type(schema).ok();
        let right = expr.right.get_type(schema).ok();
        let is_string = |t: &Option<DataType>| {
            matches!(
                t,
                Some(DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
            )
        };
        if expr.op == sqlparser::ast::BinaryOperator::Plus
            && (is_string(&left) || is_string(&right))
        {
            return Ok(PlannerResult::Planned(DfExpr::BinaryExpr(BinaryExpr::new(
                Box::new(expr.left),
                Operator::StringConcat,
                Box::new(expr.right),
            ))));
        }
        let is_float =
            |t: &Option<DataType>| matches!(t, Some(DataType::Float64 | DataType::Float32));
        let is_decimal = |t: &Option<DataType>| matches!(t, Some(DataType::Decimal128(_, _)));
        let to_double = |e: DfExpr| cast(e, DataType::Float64);
        if is_float(&left) && is_decimal(&right) {
            expr.right = to_double(expr.right);
        } else if is_decimal(&left) && is_float(&right) {
            expr.left = to_double(expr.left);
        }
        Ok(PlannerResult::Original(expr))
    }
}

/// The SUM columns of an aggregation with the type ksqlDB gives them: `SUM` of an INT is an INT
/// (wrapping like Java's), where DataFusion widens it to BIGINT; other sums keep DataFusion's type.
fn ksql_sum_types(spec: &AggregateSpec) -> Vec<(String, DataType)> {
    let first = spec.schema.fields().len() - spec.aggregates.len();
    spec.aggregates
        .iter()
        .enumerate()
        .filter(|(_, a)| a.fun().name().eq_ignore_ascii_case("sum"))
        .filter_map(|(j, a)| {
            let field = spec.schema.field(first + j);
            // DataFusion widens the argument with a cast: the type before it is the column's.
            let arg = a.expressions().first()?.clone();
            let arg = match arg.downcast_ref::<CastExpr>() {
                Some(c) => c.expr().clone(),
                None => arg,
            };
            let input = arg.data_type(spec.input_schema.as_ref()).ok()?;
            let t = if input == DataType::Int32 {
                DataType::Int32
            } else {
                field.data_type().clone()
            };
            Some((field.name().clone(), t))
        })
        .collect()
}

/// Gives the SUM columns listed by [`ksql_sum_types`] ksqlDB's types and its zero for a sum of nothing
/// (a group whose rows were all retracted, or whose values are all NULL).
fn ksql_sums(e: DfExpr, types: &[(String, DataType)]) -> Result<DfExpr> {
    if types.is_empty() {
        return Ok(e);
    }
    e.transform_up(|e| match &e {
        DfExpr::Column(c) => match types.iter().find(|(name, _)| *name == c.name) {
            Some((_, t)) => {
                let zero = ScalarValue::new_zero(t)
                    .map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?;
                Ok(Transformed::yes(datafusion::functions::expr_fn::coalesce(
                    vec![cast(e.clone(), t.clone()), lit(zero)],
                )))
            }
            None => Ok(Transformed::no(e)),
        },
        _ => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
    .map_err(|e| internal_err!("{e}"))
}

/// ksqlDB rejects a CASE whose every branch is a bare NULL: its type cannot be known.
fn check_case_types(e: &DfExpr) -> Result<()> {
    let is_null = |e: &DfExpr| matches!(e, DfExpr::Literal(v, _) if v.is_null());
    let mut all_null = false;
    e.apply(|e| {
        if let DfExpr::Case(c) = e
            && c.when_then_expr.iter().all(|(_, then)| is_null(then))
            && c.else_expr.as_deref().is_none_or(is_null)
        {
            all_null = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| internal_err!("{e}"))?;
    if all_null {
        return Err(plan_err!(
            "Invalid Case expression. All case branches have NULL type"
        ));
    }
    Ok(())
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
    /// The output columns with their roles: key columns carry a source key or a PARTITION BY expression.
    pub columns: Vec<Column>,
    /// What the output's key must be made of, and which output columns carry it.
    pub keys: Vec<RequiredKey>,
    /// Whether the query re-keys its input with PARTITION BY.
    pub partitioned: bool,
    /// How the output's keys are windowed: by a windowed aggregation, or passed on from a source
    /// with windowed keys.
    pub window: Option<KeyWindow>,
    /// `EMIT FINAL`: a windowed aggregation emits one row per window, when the window closes.
    pub emit_final: bool,
    /// Whether the query aggregates (its keys are the GROUP BY expressions).
    pub grouped: bool,
    /// For an aggregating query, its GROUP BY, aggregates and HAVING; `projection` is then over the
    /// aggregated rows ([`AggregateSpec::schema`]) and `filter` is the WHERE over the input.
    pub aggregate: Option<Arc<AggregateSpec>>,
    /// Table-function calls over the filtered input (each a list per row): the rows are unnested
    /// and the elements appended as columns before `projection` runs (see `Planner::table_functions`).
    pub table_functions: Vec<Arc<dyn PhysicalExpr>>,
    /// Key columns computed from the value or pseudo-columns by PARTITION BY: a record without a value
    /// (a tombstone) has none, so they are null for it, as in ksqlDB.
    pub value_dependent_keys: Vec<String>,
    pub limit: Option<u64>,
    /// On a table source, whether a row failing the WHERE deletes its key (comes out as a tombstone):
    /// so for persistent queries, whose sink table must forget it; transient queries leave it out.
    pub filter_deletes: bool,
    /// For a join, the join: `source` is then the joined input ([`JoinPlan::schema`]).
    pub join: Option<Arc<JoinPlan>>,
}

/// A projection with its table-function calls taken out: the rewritten expressions, the calls, and
/// the schema the projection then reads (see `Planner::table_functions`).
type TableFunctions = (Vec<DfExpr>, Vec<Arc<dyn PhysicalExpr>>, DFSchemaRef);

/// One part of an output key: a source key column, or a PARTITION BY expression.
#[derive(Debug, Clone)]
pub struct RequiredKey {
    /// The column's name (for a PARTITION BY expression that is not a column, none).
    pub name: Option<String>,
    /// How ksqlDB's messages show it (`INPUT.ID` for a PARTITION BY column).
    pub text: String,
    /// The output columns that carry it.
    pub columns: Vec<String>,
}

impl QueryPlan {
    /// Checks the projection against ksqlDB's rules for a persistent query writing into `sink`.
    pub fn check_persistent_projection(&self, sink: &str) -> Result<()> {
        if let Some(join) = &self.join
            && !self.partitioned
            && !self.grouped
            && self.keys.iter().any(|k| k.columns.is_empty())
        {
            let missing: Vec<&str> = self
                .keys
                .iter()
                .filter(|k| k.columns.is_empty())
                .filter_map(|k| k.name.as_deref())
                .collect();
            return Err(join.missing_key(sink, &missing));
        }
        if self.keys.iter().any(|k| k.columns.is_empty()) {
            let (noun, shown) = if self.partitioned || self.grouped {
                let missing: Vec<&str> = if self.partitioned {
                    self.keys
                        .iter()
                        .filter(|k| k.columns.is_empty())
                        .map(|k| k.text.as_str())
                        .collect()
                } else {
                    self.keys.iter().map(|k| k.text.as_str()).collect()
                };
                let noun = if self.partitioned {
                    "partitioning expression"
                } else {
                    "grouping expression"
                };
                (noun, missing)
            } else {
                (
                    "key column",
                    self.keys.iter().map(|k| k.text.as_str()).collect(),
                )
            };
            let (noun, list) = match shown.as_slice() {
                [one] => (noun.to_string(), one.to_string()),
                [init @ .., last] => (
                    format!("{noun}s"),
                    format!("{} and {last}", init.join(", ")),
                ),
                [] => unreachable!("at least one key is missing"),
            };
            let prefix = if self.partitioned || self.grouped {
                ""
            } else {
                "Key missing from projection (ie, SELECT). See https://cnfl.io/2LV7ouS.\n"
            };
            return Err(plan_err!(
                "{prefix}The query used to build `{sink}` must include the {noun} {list} in its projection (eg, SELECT {}...).",
                shown.join(", ")
            ));
        }
        if let Some(k) = self.keys.iter().find(|k| k.columns.len() > 1) {
            if self.grouped {
                let names: Vec<String> = k.columns.iter().map(|c| format!("`{c}`")).collect();
                return Err(plan_err!(
                    "The projection contains a key column more than once: {}.",
                    names.join(" and ")
                ));
            }
            return Err(plan_err!(
                "The projection contains a key column (`{}`) more than once, aliased as: {}.",
                k.name.as_deref().unwrap_or(&k.columns[0]),
                k.columns.join(" and ")
            ));
        }
        for c in self
            .columns
            .iter()
            .filter(|c| !self.partitioned || c.role == ColumnRole::Value)
        {
            if [
                crate::catalog::ROWTIME,
                crate::catalog::ROWPARTITION,
                crate::catalog::ROWOFFSET,
                crate::catalog::WINDOWSTART,
                crate::catalog::WINDOWEND,
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
/// anything else becomes `KSQL_COL_<n>`. With PARTITION BY, `*` starts with the new key columns and the
/// old key columns follow the values. With `window_bounds`, WINDOWSTART and WINDOWEND follow the key
/// columns.
fn expand_projection(
    items: Vec<SelectItem>,
    source: &Source,
    qualifier: &str,
    partition: Option<&[PartitionKey]>,
    window_bounds: bool,
) -> Result<Vec<SelectItem>> {
    let mut out = Vec::new();
    let mut generated = 0;
    // A name taken from a struct field gets a `_<n>` suffix when a column or another item has it.
    let mut taken: std::collections::HashSet<String> = source
        .columns
        .iter()
        .map(|c| c.name.clone())
        .chain(items.iter().filter_map(|i| match i {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            _ => None,
        }))
        .collect();
    let mut named = |expr: Expr, out: &mut Vec<SelectItem>| {
        let name = match output_name(&expr) {
            Some((name, false)) => name,
            Some((field, true)) => {
                let mut name = field.clone();
                let mut n = 0;
                while taken.contains(&name) {
                    n += 1;
                    name = format!("{field}_{n}");
                }
                name
            }
            None => next_generated(&mut generated),
        };
        taken.insert(name.clone());
        out.push(SelectItem::ExprWithAlias {
            expr,
            alias: quoted(&name),
        });
    };
    for item in items {
        match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(_, _) => {
                let column =
                    |c: &Column| Expr::CompoundIdentifier(vec![quoted(qualifier), quoted(&c.name)]);
                match partition {
                    None => {
                        for c in source.key_columns() {
                            named(column(c), &mut out);
                        }
                        if window_bounds {
                            for bound in [WINDOWSTART, WINDOWEND] {
                                named(Expr::Identifier(quoted(bound)), &mut out);
                            }
                        }
                        for c in source.non_key_columns() {
                            named(column(c), &mut out);
                        }
                    }
                    Some(keys) => {
                        for k in keys {
                            named(k.expr.clone(), &mut out);
                        }
                        let moved = |c: &&Column| {
                            !keys
                                .iter()
                                .any(|k| k.column.as_deref() == Some(c.name.as_str()))
                        };
                        for c in source
                            .non_key_columns()
                            .chain(source.key_columns())
                            .filter(moved)
                        {
                            named(column(c), &mut out);
                        }
                    }
                }
            }
            SelectItem::UnnamedExpr(expr) => match struct_star(&expr) {
                Some(base) => {
                    let Some(SqlType::Struct(fields)) = field_type(base, source) else {
                        return Err(plan_err!(
                            "`->*` takes every field of a STRUCT column or field: {} is not one",
                            crate::render::ksql_text(base)
                        ));
                    };
                    for (field, _) in fields {
                        named(get_field(base.clone(), &field), &mut out);
                    }
                }
                None => named(expr, &mut out),
            },
            other => out.push(other),
        }
    }
    Ok(out)
}

/// The name ksqlDB gives an unaliased projection item, unless it is a generated `KSQL_COL_<n>`, and
/// whether it is a struct field's name.
/// The base of `base->*` (see [`normalize::STRUCT_STAR`]).
fn struct_star(expr: &Expr) -> Option<&Expr> {
    let (base, field) = field_access(expr)?;
    (field == normalize::STRUCT_STAR).then_some(base)
}

/// `get_field(base, 'field')` as its base and field.
fn field_access(expr: &Expr) -> Option<(&Expr, &str)> {
    let Expr::Function(f) = expr else {
        return None;
    };
    if f.name.to_string() != "get_field" {
        return None;
    }
    let FunctionArguments::List(l) = &f.args else {
        return None;
    };
    match l.args.as_slice() {
        [
            FunctionArg::Unnamed(FunctionArgExpr::Expr(base)),
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))),
        ] => match &v.value {
            Value::SingleQuotedString(s) => Some((base, s.as_str())),
            _ => None,
        },
        _ => None,
    }
}

/// The type of a column of `source`, or of a field of one (`s->a->b`).
fn field_type(expr: &Expr, source: &Source) -> Option<SqlType> {
    match expr {
        Expr::Identifier(i) => source.column(&i.value).map(|c| c.sql_type.clone()),
        Expr::CompoundIdentifier(parts) => parts
            .last()
            .and_then(|p| source.column(&p.value))
            .map(|c| c.sql_type.clone()),
        _ => {
            let (base, field) = field_access(expr)?;
            match field_type(base, source)? {
                SqlType::Struct(fields) => fields
                    .into_iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(field))
                    .map(|(_, t)| t),
                _ => None,
            }
        }
    }
}

fn output_name(expr: &Expr) -> Option<(String, bool)> {
    match expr {
        Expr::Identifier(i) => Some((i.value.clone(), false)),
        Expr::CompoundIdentifier(parts) => parts.last().map(|p| (p.value.clone(), false)),
        _ => field_access(expr).map(|(_, field)| (field.to_string(), true)),
    }
}

/// The alias prefix of the PARTITION BY expressions planned along with the projection.
const HIDDEN_PARTITION: &str = "__EDDY_PARTITION_";

/// One expression of `PARTITION BY`.
#[derive(Debug, Clone)]
struct PartitionKey {
    expr: Expr,
    /// The source column it names, if it is a plain column.
    column: Option<String>,
    /// How ksqlDB's messages show it.
    text: String,
}

/// Checks PARTITION BY's expressions; `PARTITION BY NULL` gives no key columns at all.
fn partition_exprs(exprs: &[Expr], qualifier: &str) -> Result<Vec<PartitionKey>> {
    if exprs.is_empty() {
        return Err(plan_err!("PARTITION BY requires at least one expression"));
    }
    let is_null = |e: &Expr| matches!(e, Expr::Value(v) if v.value == Value::Null);
    if exprs.iter().any(is_null) {
        if exprs.len() > 1 {
            return Err(plan_err!(
                "Cannot PARTITION BY multiple columns including NULL"
            ));
        }
        return Ok(Vec::new());
    }
    Ok(exprs
        .iter()
        .map(|e| {
            let column = match e {
                Expr::Identifier(i) => Some(i.value.clone()),
                Expr::CompoundIdentifier(parts) if parts.len() == 2 => Some(parts[1].value.clone()),
                _ => None,
            };
            let text = match &column {
                Some(c) => format!("{qualifier}.{c}"),
                None => e.to_string().replace('"', ""),
            };
            PartitionKey {
                expr: e.clone(),
                column,
                text,
            }
        })
        .collect())
}

fn next_generated(n: &mut usize) -> String {
    let name = format!("KSQL_COL_{n}");
    *n += 1;
    name
}

fn quoted(s: &str) -> Ident {
    Ident::with_quote('"', s)
}

/// DataFusion's messages start with "Error during planning: " and wrap a function's own refusal in
/// "Function 'f' user-defined coercion failed with: " (once per coercion pass); ksqlDB users
/// expect the innermost message itself.
fn strip_df(message: &str) -> String {
    const COERCION: &str = "user-defined coercion failed with: ";
    let mut m = message
        .rfind(COERCION)
        .map_or(message, |at| &message[at + COERCION.len()..]);
    for prefix in [
        "Schema error: ",
        "Error during planning: ",
        "This feature is not implemented: ",
        "Execution error: ",
        "Error during planning: ",
    ] {
        m = m.strip_prefix(prefix).unwrap_or(m);
    }
    m.to_string()
}

/// Over a table, a changed row is taken out of its old group before it is added to its new one: every
/// aggregate function must be able to retract values.
fn check_retractable(spec: &AggregateSpec) -> Result<()> {
    let mut refused = Vec::new();
    for a in &spec.aggregates {
        let retracts = a
            .create_sliding_accumulator()
            .is_ok_and(|acc| acc.supports_retract_batch());
        if !retracts {
            refused.push(a.fun().name().to_uppercase());
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(plan_err!(
        "The aggregation function(s) {} cannot be applied to a table source, only to a stream source: a table's changed rows must be taken out of their groups, which these functions cannot do.",
        refused.join(", ")
    ))
}

/// The schema a query's column references resolve against: the source's input schema, plus the
/// window bounds when a windowed aggregation fills them in.
fn planning_schema(source: &Source, windowed_query: bool) -> SchemaRef {
    let schema = source.input_schema();
    if !windowed_query {
        return schema;
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(window_bound_fields());
    Arc::new(Schema::new(fields))
}

/// The window bound (WINDOWSTART or WINDOWEND) an expression mentions first, if any.
fn window_bound_in(e: &Expr) -> Option<&'static str> {
    let mut found = None;
    let _ = sqlparser::ast::visit_expressions(e, |e| {
        let name = match e {
            Expr::Identifier(i) => Some(&i.value),
            Expr::CompoundIdentifier(parts) => parts.last().map(|i| &i.value),
            _ => None,
        };
        found = name.and_then(|n| {
            [WINDOWSTART, WINDOWEND]
                .into_iter()
                .find(|b| n.eq_ignore_ascii_case(b))
        });
        if found.is_some() {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    found
}

/// In a windowed aggregation the window bounds are known only once rows are grouped, so they may be
/// used in the SELECT clause but not in WHERE, GROUP BY, HAVING or aggregate function arguments.
fn check_window_bounds_use(select: &Select, state: &SessionState) -> Result<()> {
    if let Some(bound) = select.selection.as_ref().and_then(window_bound_in) {
        return Err(plan_err!(
            "Error in WHERE expression: Unknown column {bound}."
        ));
    }
    let misplaced = |bound: &str| {
        plan_err!(
            "Window bounds column {bound} can only be used in the SELECT clause of windowed aggregations"
        )
    };
    if let GroupByExpr::Expressions(exprs, _) = &select.group_by
        && let Some(bound) = exprs.iter().find_map(window_bound_in)
    {
        return Err(misplaced(bound));
    }
    if let Some(bound) = select.having.as_ref().and_then(window_bound_in) {
        return Err(misplaced(bound));
    }
    for item in &select.projection {
        let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item else {
            continue;
        };
        let mut found = None;
        let _ = sqlparser::ast::visit_expressions(e, |e| {
            if let Expr::Function(f) = e
                && state
                    .aggregate_functions()
                    .contains_key(&f.name.to_string().to_lowercase())
                && let FunctionArguments::List(list) = &f.args
            {
                found = list.args.iter().find_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                    | FunctionArg::Named {
                        arg: FunctionArgExpr::Expr(e),
                        ..
                    } => window_bound_in(e),
                    _ => None,
                });
            }
            if found.is_some() {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        });
        if let Some(bound) = found {
            return Err(misplaced(bound));
        }
    }
    Ok(())
}

/// The column named by DataFusion's "No field named ..." message.
fn unresolved_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("No field named ")?;
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
    Some(field.to_string())
}

/// ksqlDB's message for a call whose arguments match no signature of the function.
fn no_matching_signature(message: &str) -> Option<String> {
    const MARKER: &str = "No function matches the given name and argument types '";
    let at = message.find(MARKER)?;
    // A function's own ksqlDB message comes first, ending in ". ".
    if let Some(own) = message[..at].strip_suffix(". ")
        && own.starts_with("Function '")
    {
        return Some(own.to_string());
    }
    let call = &message[at + MARKER.len()..];
    let (name, rest) = call.split_once('(')?;
    let args = &rest[..rest.find(")'")?];
    // Types are separated by ", " outside parentheses (`Decimal128(12, 2)` is one).
    let mut types = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in args.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                types.push(arrow_type_name(args[start..i].trim()));
                start = i + 1;
            }
            _ => {}
        }
    }
    if !args.trim().is_empty() {
        types.push(arrow_type_name(args[start..].trim()));
    }
    Some(format!(
        "Function '{name}' does not accept parameters ({}).",
        types.join(", ")
    ))
}

/// ksqlDB's name for an Arrow type as DataFusion's messages print it.
fn arrow_type_name(t: &str) -> String {
    match t {
        "Utf8" | "Utf8View" | "LargeUtf8" => "STRING".to_string(),
        "Int32" => "INTEGER".to_string(),
        "Int64" => "BIGINT".to_string(),
        "Float64" => "DOUBLE".to_string(),
        "Boolean" => "BOOLEAN".to_string(),
        "Date32" => "DATE".to_string(),
        "Binary" => "BYTES".to_string(),
        "Null" => "null".to_string(),
        t if t.starts_with("Time32") => "TIME".to_string(),
        t if t.starts_with("Timestamp") => "TIMESTAMP".to_string(),
        t => match t.strip_prefix("Decimal128") {
            Some(ps) => format!("DECIMAL{ps}"),
            None => t.to_uppercase(),
        },
    }
}

fn plan_error(e: datafusion::error::DataFusionError, source: &Source) -> Error {
    let msg = strip_df(&e.to_string());
    if let Some(m) = no_matching_signature(&msg) {
        return plan_err!("{m}");
    }
    for (clause, prefix) in [
        ("SELECT", "Column in SELECT must be in GROUP BY"),
        ("HAVING", "Column in HAVING must be in GROUP BY"),
    ] {
        // DataFusion names the first column that is neither grouped nor aggregated.
        if msg.starts_with(prefix)
            && let Some(column) = msg
                .split("column \"")
                .nth(1)
                .and_then(|r| r.split('"').next())
        {
            let column = column.rsplit('.').next().unwrap_or(column);
            return if clause == "SELECT" {
                plan_err!(
                    "Non-aggregate SELECT expression(s) not part of GROUP BY: {column}\nEither add the column(s) to the GROUP BY or remove them from the SELECT."
                )
            } else {
                plan_err!("Non-aggregate HAVING expression not part of GROUP BY: {column}")
            };
        }
    }
    if let Some(rest) = msg.strip_prefix("Invalid function '")
        && let Some(name) = rest.split('\'').next()
    {
        return plan_err!(
            "Can't find any functions with the name '{}'",
            name.to_uppercase()
        );
    }
    if let Some(rest) = msg.strip_prefix("Cannot access field at argument ")
        && let Some((_, given)) = rest.split_once(": type ")
        && let Some(given) = given.strip_suffix(" is not Struct, Map, or Null")
    {
        return plan_err!(
            "Cannot read a field of a {} value: `->` reads a field of a STRUCT.",
            arrow_type_name(given)
        );
    }
    if let Some(field) = unresolved_field(&msg) {
        return plan_err!(
            "Column '{field}' cannot be resolved in {} {}.",
            source.kind.as_str().to_lowercase(),
            source.name
        );
    }
    plan_err!("{msg}")
}

/// A persistent query may not select ROWPARTITION or ROWOFFSET under their own names (its output
/// would have a column named as the pseudo-column).
fn check_unaliased_pseudo_columns(select: &Select) -> Result<()> {
    for item in &select.projection {
        let SelectItem::UnnamedExpr(Expr::Identifier(i)) = item else {
            continue;
        };
        let name = crate::identifier::ident_name(&i.value, i.quote_style);
        if [crate::catalog::ROWPARTITION, crate::catalog::ROWOFFSET].contains(&name.as_str()) {
            return Err(plan_err!(
                "Reserved column name in select: `{name}`. Please remove or alias the column."
            ));
        }
    }
    Ok(())
}

/// Resolves the one source of a query and DataFusion's functions.
struct Provider<'a> {
    state: &'a SessionState,
    expr_planners: &'a [Arc<dyn ExprPlanner>],
    /// The query's source, with the schema its columns resolve against.
    source: Option<(&'a Source, SchemaRef)>,
}

impl ContextProvider for Provider<'_> {
    fn get_table_source(
        &self,
        name: TableReference,
    ) -> datafusion::error::Result<Arc<dyn TableSource>> {
        if let Some((_, schema)) = self.source.as_ref().filter(|(s, _)| s.name == name.table()) {
            Ok(Arc::new(LogicalTableSource::new(schema.clone())))
        } else {
            datafusion::common::plan_err!("{} does not exist.", name.table())
        }
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        self.expr_planners
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

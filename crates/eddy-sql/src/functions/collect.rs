//! ksqlDB's aggregate functions that keep the values they saw: COLLECT_LIST, COLLECT_SET,
//! LATEST_BY_OFFSET, EARLIEST_BY_OFFSET, TOPK, TOPKDISTINCT, HISTOGRAM, COUNT_DISTINCT and ATTR (the
//! one value a group holds, NULL when it holds several). One
//! accumulator serves them all: it keeps values in arrival (offset) order, and each function reads its
//! result off them. Values can be retracted (aggregation over a table) where ksqlDB allows it.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, MapArray, StringArray, StructArray,
};
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::ColumnarValue;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::utils::collect_columns;

/// Most values COLLECT_LIST and COLLECT_SET keep unless configured otherwise (ksqlDB's default for
/// `ksql.functions.collect_list.limit` and `ksql.functions.collect_set.limit`).
pub const COLLECTION_LIMIT: usize = 1000;

/// Which function an accumulator computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    CollectList,
    CollectSet,
    Latest,
    Earliest,
    TopK,
    TopKDistinct,
    Histogram,
    CountDistinct,
    Attr,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::CollectList => "collect_list",
            Kind::CollectSet => "collect_set",
            Kind::Latest => "latest_by_offset",
            Kind::Earliest => "earliest_by_offset",
            Kind::TopK => "topk",
            Kind::TopKDistinct => "topkdistinct",
            Kind::Histogram => "histogram",
            Kind::CountDistinct => "count_distinct",
            Kind::Attr => "attr",
        }
    }

    /// Whether a table's changed row can be taken back out (ksqlDB's "undo").
    fn retracts(self) -> bool {
        matches!(
            self,
            Kind::CollectList
                | Kind::CollectSet
                | Kind::Histogram
                | Kind::CountDistinct
                | Kind::Attr
        )
    }
}

/// COLLECT_LIST (or with `set`, COLLECT_SET) keeping at most `limit` values.
pub fn collection(set: bool, limit: usize) -> AggregateUDF {
    AggregateUDF::from(Collect {
        kind: if set {
            Kind::CollectSet
        } else {
            Kind::CollectList
        },
        signature: Signature::variadic_any(Volatility::Immutable),
        limit,
    })
}

/// The aggregate functions of this module, ready to register.
pub fn all() -> Vec<AggregateUDF> {
    [
        Kind::CollectList,
        Kind::CollectSet,
        Kind::Latest,
        Kind::Earliest,
        Kind::TopK,
        Kind::TopKDistinct,
        Kind::Histogram,
        Kind::CountDistinct,
        Kind::Attr,
    ]
    .into_iter()
    .map(|kind| {
        AggregateUDF::from(Collect {
            kind,
            signature: Signature::variadic_any(Volatility::Immutable),
            limit: COLLECTION_LIMIT,
        })
    })
    .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Collect {
    kind: Kind,
    signature: Signature,
    /// Most values COLLECT_LIST and COLLECT_SET keep.
    limit: usize,
}

/// The constant arguments after the first: `(n, ignore_nulls)` of LATEST/EARLIEST_BY_OFFSET, `k` of TOPK.
#[derive(Debug, Clone, Copy)]
struct Options {
    /// How many values the result holds; `None`: a single value (not a list).
    n: Option<usize>,
    ignore_nulls: bool,
}

fn options(kind: Kind, constants: &[Option<ScalarValue>]) -> Result<Options> {
    let int = |v: &Option<ScalarValue>| -> Result<usize> {
        match v {
            Some(v) if !v.is_null() => match v.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(n)) if n > 0 => Ok(n as usize),
                other => plan_err!(
                    "{} needs a positive count, got {other}",
                    kind.name().to_uppercase()
                ),
            },
            _ => plan_err!("{} needs a constant count", kind.name().to_uppercase()),
        }
    };
    let boolean = |v: &Option<ScalarValue>| -> Result<bool> {
        match v {
            Some(ScalarValue::Boolean(Some(b))) => Ok(*b),
            _ => plan_err!(
                "{} needs TRUE or FALSE to say whether to ignore nulls",
                kind.name().to_uppercase()
            ),
        }
    };
    let none = Options {
        n: None,
        ignore_nulls: true,
    };
    let arity_error = || {
        plan_err!(
            "Function '{}' does not accept {} parameters",
            kind.name().to_uppercase(),
            constants.len() + 1
        )
    };
    Ok(match (kind, constants) {
        (Kind::Latest | Kind::Earliest, []) => none,
        (Kind::Latest | Kind::Earliest, [b]) if matches!(b, Some(ScalarValue::Boolean(_))) => {
            Options {
                n: None,
                ignore_nulls: boolean(b)?,
            }
        }
        (Kind::Latest | Kind::Earliest, [n]) => Options {
            n: Some(int(n)?),
            ignore_nulls: true,
        },
        (Kind::Latest | Kind::Earliest, [n, b]) => Options {
            n: Some(int(n)?),
            ignore_nulls: boolean(b)?,
        },
        (Kind::TopK | Kind::TopKDistinct, [k]) => Options {
            n: Some(int(k)?),
            ignore_nulls: true,
        },
        // TOPK(sort, other columns..., k): the other columns ride along in a struct.
        (Kind::TopK, [columns @ .., k]) if columns.iter().all(Option::is_none) => Options {
            n: Some(int(k)?),
            ignore_nulls: true,
        },
        (
            Kind::CollectList
            | Kind::CollectSet
            | Kind::Histogram
            | Kind::CountDistinct
            | Kind::Attr,
            [],
        ) => Options {
            n: None,
            ignore_nulls: !matches!(kind, Kind::CollectList | Kind::CollectSet),
        },
        _ => return arity_error(),
    })
}

/// The value of an argument expression that reads no column (a literal, possibly cast).
fn constant(e: &Arc<dyn PhysicalExpr>) -> Option<ScalarValue> {
    if !collect_columns(e).is_empty() {
        return None;
    }
    let one_row = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .ok()?;
    match e.evaluate(&one_row).ok()? {
        ColumnarValue::Scalar(v) => Some(v),
        ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0).ok(),
    }
}

fn histogram_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Int64, true),
            ])),
            false,
        )),
        false,
    )
}

/// The element of TOPK's result when it carries other columns: `STRUCT<sort_col, col0, col1, ...>`.
fn top_struct(columns: &[DataType]) -> DataType {
    DataType::Struct(
        columns
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let name = match i {
                    0 => "sort_col".to_string(),
                    i => format!("col{}", i - 1),
                };
                Field::new(name, t.clone(), true)
            })
            .collect(),
    )
}

fn list_of(t: &DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", t.clone(), true)))
}

impl AggregateUDFImpl for Collect {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let Some(t) = args.first() else {
            return plan_err!(
                "{} needs a column to aggregate",
                self.kind.name().to_uppercase()
            );
        };
        Ok(match self.kind {
            Kind::TopK if args.len() > 2 => list_of(&top_struct(&args[..args.len() - 1])),
            Kind::CollectList | Kind::CollectSet | Kind::TopK | Kind::TopKDistinct => list_of(t),
            Kind::Latest | Kind::Earliest if args.len() == 1 || args[1] == DataType::Boolean => {
                t.clone()
            }
            Kind::Latest | Kind::Earliest => list_of(t),
            Kind::Histogram => {
                if !matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) {
                    return Err(super::refuse("histogram", args));
                }
                histogram_type()
            }
            Kind::CountDistinct => DataType::Int64,
            Kind::Attr => t.clone(),
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<Arc<Field>>> {
        let t = args.input_fields[0].data_type();
        // The kept values: TOPK keeps what it returns (structs when it carries other columns).
        let kept = if self.kind == Kind::TopK {
            args.return_field.data_type().clone()
        } else {
            list_of(t)
        };
        Ok(vec![Arc::new(Field::new(
            format!("{}[values]", args.name),
            kept,
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let constants: Vec<Option<ScalarValue>> = args.exprs[1..].iter().map(constant).collect();
        let options = options(self.kind, &constants)?;
        let carried = if self.kind == Kind::TopK {
            constants.len().saturating_sub(1)
        } else {
            0
        };
        let data_type = match args.return_field.data_type() {
            DataType::List(item) if carried > 0 => item.data_type().clone(),
            _ => args.expr_fields[0].data_type().clone(),
        };
        let mut accumulator = CollectAccumulator::new(
            self.kind,
            options,
            self.limit,
            data_type,
            args.return_field.data_type().clone(),
        );
        accumulator.carried = carried;
        Ok(Box::new(accumulator))
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if !self.kind.retracts() {
            return exec_err!(
                "{} cannot take values back out, so it cannot aggregate a table",
                self.kind.name().to_uppercase()
            );
        }
        self.accumulator(args)
    }
}

#[derive(Debug)]
struct CollectAccumulator {
    kind: Kind,
    options: Options,
    /// Most values COLLECT_LIST and COLLECT_SET keep.
    limit: usize,
    data_type: DataType,
    return_type: DataType,
    /// The values kept, in arrival order (lists, latest/earliest, top-k).
    values: Vec<ScalarValue>,
    /// Distinct values with how often each was seen, in first-seen order (sets, histograms, counts).
    counted: Vec<(ScalarValue, i64)>,
    index: HashMap<ScalarValue, usize>,
    /// TOPK's columns carried along with the sorted one.
    carried: usize,
}

impl CollectAccumulator {
    fn new(
        kind: Kind,
        options: Options,
        limit: usize,
        data_type: DataType,
        return_type: DataType,
    ) -> Self {
        CollectAccumulator {
            kind,
            options,
            limit,
            data_type,
            return_type,
            values: Vec::new(),
            counted: Vec::new(),
            index: HashMap::new(),
            carried: 0,
        }
    }

    fn counts_values(&self) -> bool {
        matches!(
            self.kind,
            Kind::CollectSet | Kind::Histogram | Kind::CountDistinct | Kind::Attr
        )
    }

    fn add(&mut self, v: ScalarValue, times: i64) {
        if v.is_null() && self.options.ignore_nulls {
            return;
        }
        if self.counts_values() {
            match self.index.get(&v) {
                Some(p) => self.counted[*p].1 += times,
                None if matches!(self.kind, Kind::CountDistinct | Kind::Attr)
                    || self.counted.len() < self.limit =>
                {
                    self.index.insert(v.clone(), self.counted.len());
                    self.counted.push((v, times));
                }
                None => {}
            }
            return;
        }
        match (self.kind, self.options.n) {
            (Kind::Earliest, n) if self.values.len() >= n.unwrap_or(1) => {}
            (Kind::Latest, n) => {
                self.values.push(v);
                let keep = n.unwrap_or(1);
                if self.values.len() > keep {
                    self.values.drain(..self.values.len() - keep);
                }
            }
            (Kind::CollectList, _) if self.values.len() >= self.limit => {}
            // TOPK keeps its best k (and sorts rarely: only when twice as many have gathered).
            (Kind::TopK, n) => {
                self.values.push(v);
                let keep = n.unwrap_or(1);
                if self.values.len() >= 2 * keep {
                    self.values = self.top(self.values.clone(), keep);
                }
            }
            _ => self.values.push(v),
        }
    }

    /// The `k` greatest values, largest first; equal ones in arrival order. A struct (TOPK carrying
    /// other columns) sorts by its first field.
    fn top(&self, mut values: Vec<ScalarValue>, k: usize) -> Vec<ScalarValue> {
        let key = |v: &ScalarValue| match v {
            ScalarValue::Struct(s) => ScalarValue::try_from_array(s.column(0), 0).ok(),
            other => Some(other.clone()),
        };
        values.sort_by(|a, b| {
            key(b)
                .partial_cmp(&key(a))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        values.truncate(k);
        values
    }

    fn remove(&mut self, v: &ScalarValue) {
        if !self.counts_values() {
            if let Some(p) = self.values.iter().position(|x| x == v) {
                self.values.remove(p);
            }
            return;
        }
        let Some(p) = self.index.get(v).copied() else {
            return;
        };
        self.counted[p].1 -= 1;
        if self.counted[p].1 <= 0 {
            self.counted.remove(p);
            self.index = self
                .counted
                .iter()
                .enumerate()
                .map(|(i, (v, _))| (v.clone(), i))
                .collect();
        }
    }

    fn distinct(&self) -> Vec<ScalarValue> {
        let mut out: Vec<ScalarValue> = Vec::new();
        for v in &self.values {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        out
    }

    fn list(&self, values: Vec<ScalarValue>) -> ScalarValue {
        ScalarValue::List(ScalarValue::new_list_nullable(&values, &self.data_type))
    }
}

impl Accumulator for CollectAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if self.carried > 0 {
            // TOPK(sort, others..., k): rows with a NULL sort value are left out.
            let DataType::Struct(fields) = &self.data_type else {
                return exec_err!("TOPK keeps structs, not {}", self.data_type);
            };
            let rows =
                StructArray::try_new(fields.clone(), values[..=self.carried].to_vec(), None)?;
            for i in 0..rows.len() {
                if values[0].is_valid(i) {
                    let row: ArrayRef = Arc::new(rows.slice(i, 1));
                    self.add(ScalarValue::try_from_array(&row, 0)?, 1);
                }
            }
            return Ok(());
        }
        let column = &values[0];
        for i in 0..column.len() {
            self.add(ScalarValue::try_from_array(column, i)?, 1);
        }
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let column = &values[0];
        for i in 0..column.len() {
            self.remove(&ScalarValue::try_from_array(column, i)?);
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        self.kind.retracts()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(match self.kind {
            Kind::CollectList => self.list(self.values.clone()),
            Kind::CollectSet => self.list(self.counted.iter().map(|(v, _)| v.clone()).collect()),
            Kind::Latest | Kind::Earliest => match self.options.n {
                Some(_) => self.list(self.values.clone()),
                None => match self.values.first() {
                    Some(v) => v.clone(),
                    None => ScalarValue::try_from(&self.return_type)?,
                },
            },
            Kind::TopK | Kind::TopKDistinct => {
                let candidates = if self.kind == Kind::TopKDistinct {
                    self.distinct()
                } else {
                    self.values.clone()
                };
                self.list(self.top(candidates, self.options.n.unwrap_or(1)))
            }
            Kind::Histogram => histogram(&self.counted)?,
            Kind::CountDistinct => ScalarValue::Int64(Some(self.counted.len() as i64)),
            Kind::Attr => match self.counted.as_slice() {
                [(one, _)] => one.clone(),
                _ => ScalarValue::try_from(&self.return_type)?,
            },
        })
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.values.iter().map(ScalarValue::size).sum::<usize>()
            + self
                .counted
                .iter()
                .map(|(v, _)| 2 * v.size() + 16)
                .sum::<usize>()
    }

    /// The values, each as often as it was seen.
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut all = self.values.clone();
        for (v, n) in &self.counted {
            all.extend(std::iter::repeat_n(v.clone(), *n as usize));
        }
        Ok(vec![self.list(all)])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        for i in 0..lists.len() {
            if lists.is_valid(i) {
                let values = lists.value(i);
                for j in 0..values.len() {
                    self.add(ScalarValue::try_from_array(&values, j)?, 1);
                }
            }
        }
        Ok(())
    }
}

/// A histogram's map: how often each string occurred, in first-seen order.
fn histogram(counted: &[(ScalarValue, i64)]) -> Result<ScalarValue> {
    let (keys, counts): (Vec<String>, Vec<i64>) = counted
        .iter()
        .filter_map(|(v, n)| Some((v.try_as_str().flatten()?.to_string(), *n)))
        .unzip();
    let DataType::Map(entries, _) = histogram_type() else {
        unreachable!("a map type")
    };
    let DataType::Struct(fields) = entries.data_type().clone() else {
        unreachable!("map entries are a struct")
    };
    let n = keys.len();
    let entries_array = StructArray::try_new(
        fields,
        vec![
            Arc::new(StringArray::from(keys)) as ArrayRef,
            Arc::new(Int64Array::from(counts)),
        ],
        None,
    )?;
    let map = MapArray::try_new(
        entries,
        OffsetBuffer::from_lengths([n]),
        entries_array,
        None,
        false,
    )?;
    Ok(ScalarValue::Map(Arc::new(map)))
}

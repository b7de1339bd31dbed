//! Functions behaving as the test UDFs and UDAFs that ksqlDB's query-validation tests call, so that
//! `eddy test --plugin-dir` can run those cases: `TEST_UDF` (overloads and varargs), `TEST_UDAF` (a sum
//! that can retract), `MULTI_ARG`, `FOUR_ARG`, `FIVE_ARG` (aggregates with constant initial arguments)
//! and `VAR_ARG` (a variadic aggregate), `WHENCONDITION` and `WHENRESULT` (which fail when evaluated
//! where they should not be). Their results are what the test files expect.

use std::sync::Arc;

use eddy_udf::arrow_array::cast::AsArray;
use eddy_udf::arrow_array::{Int32Array, StructArray};
use eddy_udf::arrow_schema::{DataType, Field};
use eddy_udf::prelude::*;

/// Names the overload it is: (BIGINT, STRING).
#[udf(name = "test_udf")]
fn long_string(_a: Option<i64>, _b: Option<&str>) -> &'static str {
    "doStuffLongString"
}

/// Names the overload it is: (BIGINT, BIGINT, STRING).
#[udf(name = "test_udf")]
fn long_long_string(_a: Option<i64>, _b: Option<i64>, _c: Option<&str>) -> &'static str {
    "doStuffLongLongString"
}

/// Names the overload it is: (BIGINT...).
#[udf(name = "test_udf")]
fn long_varargs(_values: Variadic<Option<i64>>) -> &'static str {
    "doStuffLongVarargs"
}

/// The field A of a struct.
#[udf(name = "test_udf", args = ["STRUCT<A STRING>"], returns = "STRING")]
struct StructField;

impl BatchFunction for StructField {
    fn create(_: &Options) -> Result<Self> {
        Ok(StructField)
    }

    fn invoke(&mut self, args: &[ArrayRef], _rows: usize) -> Result<ArrayRef> {
        let fields = args[0].as_struct_opt().ok_or("expected a struct")?;
        fields
            .column_by_name("A")
            .cloned()
            .ok_or_else(|| "the struct has no field A".into())
    }
}

/// Returns `value`, failing if it is evaluated when `should_be_evaluated` is false: tests that CASE
/// evaluates its conditions lazily.
#[udf]
fn whencondition(
    value: bool,
    should_be_evaluated: bool,
) -> std::result::Result<bool, &'static str> {
    should_be_evaluated
        .then_some(value)
        .ok_or("WHENCONDITION was evaluated where it should not have been")
}

/// Returns `value`, failing if it is evaluated when `should_be_evaluated` is false: tests that CASE
/// evaluates only the branch it takes.
#[udf]
fn whenresult(value: i32, should_be_evaluated: bool) -> std::result::Result<i32, &'static str> {
    should_be_evaluated
        .then_some(value)
        .ok_or("WHENRESULT was evaluated where it should not have been")
}

/// Adds up the fields A and B of `STRUCT<A INT, B INT>` values (NULL fields count as 0).
#[derive(Default)]
#[udaf(
    name = "test_udaf",
    args = ["STRUCT<A INT, B INT>"],
    returns = "STRUCT<A INT, B INT>",
    state = ["STRUCT<A INT, B INT>"]
)]
struct StructSum {
    a: i32,
    b: i32,
}

impl StructSum {
    fn add(&mut self, values: &ArrayRef) -> Result<()> {
        let fields = values.as_struct_opt().ok_or("expected a struct")?;
        let field = |name: &str| -> Result<&Int32Array> {
            fields
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<Int32Array>())
                .ok_or_else(|| format!("expected an INT field {name}").into())
        };
        let (a, b) = (field("A")?, field("B")?);
        let value = |c: &Int32Array, row: usize| if c.is_valid(row) { c.value(row) } else { 0 };
        for row in (0..fields.len()).filter(|r| fields.is_valid(*r)) {
            self.a = self.a.wrapping_add(value(a, row));
            self.b = self.b.wrapping_add(value(b, row));
        }
        Ok(())
    }

    fn value(&self) -> ArrayRef {
        let field = |name: &str| Arc::new(Field::new(name, DataType::Int32, true));
        Arc::new(StructArray::from(vec![
            (
                field("A"),
                Arc::new(Int32Array::from(vec![self.a])) as ArrayRef,
            ),
            (
                field("B"),
                Arc::new(Int32Array::from(vec![self.b])) as ArrayRef,
            ),
        ]))
    }
}

impl Accumulator for StructSum {
    fn update(&mut self, args: &[ArrayRef], _rows: usize) -> Result<()> {
        self.add(&args[0])
    }

    fn merge(&mut self, states: &[ArrayRef], _rows: usize) -> Result<()> {
        self.add(&states[0])
    }

    fn state(&self) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.value()])
    }

    fn evaluate(&self) -> Result<ArrayRef> {
        Ok(self.value())
    }
}

/// A running total starting from `initial` plus the lengths of the extra constant strings.
fn start(initial: i32, extra: &[&str]) -> i64 {
    i64::from(initial) + extra.iter().map(|s| s.len() as i64).sum::<i64>()
}

fn length(s: Option<&str>) -> i64 {
    s.map_or(0, |s| s.len() as i64)
}

/// A running BIGINT total: each row adds `update`'s expression (`retract`, with the same parameters,
/// takes it away again); constant initial arguments, if any, give the starting total.
macro_rules! total {
    ($(#[$doc:meta])* $ty:ident $name:tt,
     $(init($($ip:ident: $it:ty),*) => $start:expr,)?
     update($($p:ident: $t:ty),*) => $add:expr $(, retract($($rp:ident: $rt:ty),*))?) => {
        $(#[$doc])*
        #[derive(Default)]
        struct $ty(i64);

        #[udaf(name = $name)]
        impl $ty {
            $(fn init($($ip: $it),*) -> Self {
                $ty($start)
            })?
            fn update(&mut self, $($p: $t),*) {
                self.0 += $add;
            }
            $(fn retract(&mut self, $($rp: $rt),*) {
                self.0 -= $add;
            })?
            fn merge(&mut self, state: i64) {
                self.0 += state;
            }
            fn state(&self) -> i64 {
                self.0
            }
            fn result(&self) -> i64 {
                self.0
            }
        }
    };
}

total!(
    /// Adds up BIGINTs; retracts, so it aggregates tables too.
    TestUdaf "test_udaf",
    update(value: i64) => value,
    retract(value: i64)
);

total!(
    /// Adds each row's BIGINT and string lengths to a total started by constant arguments:
    /// `MULTI_ARG(col BIGINT, col STRING, initial INT, extra STRING...)`.
    MultiArg "multi_arg",
    init(initial: i32, extra: Variadic<&str>) => start(initial, &extra),
    update(first: Option<i64>, second: Option<&str>) => first.unwrap_or(0) + length(second)
);

total!(
    /// As `MULTI_ARG`, over four columns.
    FourArg "four_arg",
    init(initial: i32, extra: Variadic<&str>) => start(initial, &extra),
    update(a: Option<i64>, b: Option<&str>, c: Option<&str>, d: Option<&str>) =>
        a.unwrap_or(0) + length(b) + length(c) + length(d)
);

total!(
    /// As `MULTI_ARG`, over five columns (the fifth an INT).
    FiveArg "five_arg",
    init(initial: i32, extra: Variadic<&str>) => start(initial, &extra),
    update(a: Option<i64>, b: Option<&str>, c: Option<&str>, d: Option<&str>, e: Option<i32>) =>
        a.unwrap_or(0) + length(b) + length(c) + length(d) + i64::from(e.unwrap_or(0))
);

total!(
    /// Adds each row's BIGINT and the lengths of any number of strings:
    /// `VAR_ARG(col BIGINT, STRING...)`.
    VarArg "var_arg",
    update(first: Option<i64>, rest: Variadic<Option<&str>>) =>
        first.unwrap_or(0) + rest.iter().map(|s| length(*s)).sum::<i64>()
);

eddy_udf::plugin!(
    long_string,
    long_long_string,
    long_varargs,
    StructField,
    whencondition,
    whenresult,
    TestUdaf,
    StructSum,
    MultiArg,
    FourArg,
    FiveArg,
    VarArg
);

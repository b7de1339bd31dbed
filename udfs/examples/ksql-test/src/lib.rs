//! Functions behaving as the test UDFs and UDAFs that ksqlDB's query-validation tests call, so that
//! `eddy test --plugin-dir` can run those cases: `TEST_UDF` (overloads and varargs), `TEST_UDAF` (a sum
//! that can retract), `MULTI_ARG`, `FOUR_ARG`, `FIVE_ARG` (aggregates with constant initial arguments)
//! and `VAR_ARG` (a variadic aggregate). Their results are what the test files expect.

use eddy_udf::arrow_array::cast::AsArray;
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

/// Adds up BIGINTs; retracts, so it aggregates tables too.
#[derive(Default)]
struct TestUdaf(i64);

#[udaf(name = "test_udaf")]
impl TestUdaf {
    fn update(&mut self, value: i64) {
        self.0 += value;
    }
    fn retract(&mut self, value: i64) {
        self.0 -= value;
    }
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

/// A running total starting from `initial` plus the lengths of the extra constant strings.
fn start(initial: i32, extra: &[&str]) -> i64 {
    i64::from(initial) + extra.iter().map(|s| s.len() as i64).sum::<i64>()
}

fn length(s: Option<&str>) -> i64 {
    s.map_or(0, |s| s.len() as i64)
}

/// Adds each row's BIGINT and string lengths to a total started by constant arguments:
/// `MULTI_ARG(col BIGINT, col STRING, initial INT, extra STRING...)`.
struct MultiArg(i64);

#[udaf(name = "multi_arg")]
impl MultiArg {
    fn init(initial: i32, extra: Variadic<&str>) -> Self {
        MultiArg(start(initial, &extra))
    }
    fn update(&mut self, first: Option<i64>, second: Option<&str>) {
        self.0 += first.unwrap_or(0) + length(second);
    }
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

/// As `MULTI_ARG`, over four columns.
struct FourArg(i64);

#[udaf(name = "four_arg")]
impl FourArg {
    fn init(initial: i32, extra: Variadic<&str>) -> Self {
        FourArg(start(initial, &extra))
    }
    fn update(&mut self, a: Option<i64>, b: Option<&str>, c: Option<&str>, d: Option<&str>) {
        self.0 += a.unwrap_or(0) + length(b) + length(c) + length(d);
    }
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

/// As `MULTI_ARG`, over five columns (the fifth an INT).
struct FiveArg(i64);

#[udaf(name = "five_arg")]
impl FiveArg {
    fn init(initial: i32, extra: Variadic<&str>) -> Self {
        FiveArg(start(initial, &extra))
    }
    fn update(
        &mut self,
        a: Option<i64>,
        b: Option<&str>,
        c: Option<&str>,
        d: Option<&str>,
        e: Option<i32>,
    ) {
        self.0 += a.unwrap_or(0) + length(b) + length(c) + length(d) + i64::from(e.unwrap_or(0));
    }
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

/// Adds each row's BIGINT and the lengths of any number of strings: `VAR_ARG(col BIGINT, STRING...)`.
#[derive(Default)]
struct VarArg(i64);

#[udaf(name = "var_arg")]
impl VarArg {
    fn update(&mut self, first: Option<i64>, rest: Variadic<Option<&str>>) {
        self.0 += first.unwrap_or(0) + rest.iter().map(|s| length(*s)).sum::<i64>();
    }
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

eddy_udf::plugin!(
    long_string,
    long_long_string,
    long_varargs,
    StructField,
    TestUdaf,
    MultiArg,
    FourArg,
    FiveArg,
    VarArg
);

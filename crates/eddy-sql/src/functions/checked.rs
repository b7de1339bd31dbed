//! A built-in scalar function under its ksqlDB name, resolved as ksqlDB resolves it: the arguments
//! must fit one of the function's documented overloads (crate::functions::overloads) before
//! DataFusion's own coercion runs, so `UCASE(true)` is refused as in ksqlDB (DataFusion would make
//! the BOOLEAN a string) and every refusal reads `Function 'ucase' does not accept parameters
//! (BOOLEAN).` with the name the user wrote. Where ksqlDB's function has fewer parameters than
//! DataFusion's (ARRAY_SORT's NULLS LAST, REGEXP_REPLACE's every-match flag, the characters TRIM
//! strips), the rest are passed
//! as constants. Everything else is the wrapped function's.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{ExprSchema, Result, ScalarValue};
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::type_coercion::functions::fields_with_udf;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};

use super::overloads::fits_any;
use super::reference::find;
use super::refuse;

/// `inner` registered as `name`, with ksqlDB's overload check.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Checked {
    name: String,
    /// The name its refusals show: ksqlDB's own spelling (`COALESCE` is upper case there).
    shown: String,
    inner: ScalarUDF,
    signature: Signature,
    /// Other names that reach it: the wrapped function's (SQL's `SUBSTRING(... FROM ...)` and
    /// `TRIM(...)` are planned by those).
    aliases: Vec<String>,
    /// Arguments the wrapped function takes after ksqlDB's, when a call leaves them out: the
    /// value for each position from the first.
    defaults: (usize, &'static [&'static str]),
}

/// The characters Java's `String.trim` strips: every one up to the space.
const JAVA_BLANKS: &str = "\0\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f ";

/// DataFusion's trailing arguments for ksqlDB's shorter calls: (first position, values).
fn defaults_of(name: &str) -> (usize, &'static [&'static str]) {
    match name {
        // ksqlDB sorts NULLs last in both directions; DataFusion puts them first unless told.
        "array_sort" => (1, &["ASC", "NULLS LAST"]),
        // ksqlDB replaces every match; DataFusion does with the `g` flag.
        "regexp_replace" => (3, &["g"]),
        // ksqlDB's TRIM is Java's: it strips every character up to the space, not only spaces.
        "trim" => (1, &[JAVA_BLANKS]),
        _ => (0, &[]),
    }
}

impl Checked {
    /// `inner` as the ksqlDB function `name`, also reached by the wrapped function's names that
    /// `taken` (the other documented functions) leaves free.
    pub fn new(name: &str, inner: ScalarUDF, taken: &dyn Fn(&str) -> bool) -> Self {
        let signature = Signature::user_defined(inner.signature().volatility);
        let name = name.to_ascii_lowercase();
        let shown = match name.as_str() {
            "coalesce" => name.to_ascii_uppercase(),
            _ => name.clone(),
        };
        let aliases = std::iter::once(inner.name())
            .chain(inner.aliases().iter().map(String::as_str))
            .filter(|a| *a != name && !taken(a))
            .map(str::to_string)
            .collect();
        Checked {
            defaults: defaults_of(&name),
            name,
            shown,
            inner,
            signature,
            aliases,
        }
    }

    /// The defaults a call of `given` arguments leaves to add.
    fn missing(&self, given: usize) -> &'static [&'static str] {
        let (first, values) = self.defaults;
        values
            .get(given.saturating_sub(first)..)
            .filter(|_| given >= first)
            .unwrap_or(&[])
    }

    /// The types with the missing arguments' (text) added.
    fn padded(&self, arg_types: &[DataType]) -> Vec<DataType> {
        let mut all = arg_types.to_vec();
        all.extend(self.missing(arg_types.len()).iter().map(|_| DataType::Utf8));
        all
    }
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let fields: Vec<FieldRef> = self
            .padded(arg_types)
            .into_iter()
            .map(|t| Arc::new(Field::new("arg", t, true)))
            .collect();
        let coerced: Result<Vec<DataType>> = fields_with_udf(&fields, &self.inner).map(|fields| {
            fields
                .iter()
                .take(arg_types.len())
                .map(|f| f.data_type().clone())
                .collect()
        });
        let documented = find(&self.name).is_none_or(|doc| fits_any(&doc.overloads, arg_types));
        // DataFusion asks again once its casts are in, and the second question cannot be told
        // from a first one: arguments the wrapped function takes as they are are not refused. So
        // a type the wrapped function takes unchanged passes even where ksqlDB's signature is
        // narrower (CHR of a BIGINT); types it would convert (a BOOLEAN to text) are refused.
        let settled = coerced.as_ref().is_ok_and(|c| c.as_slice() == arg_types);
        if !documented && !settled {
            return Err(refuse(&self.shown, arg_types));
        }
        coerced
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(&self.padded(arg_types))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let missing = self.missing(args.arg_fields.len());
        if missing.is_empty() {
            return self.inner.return_field_from_args(args);
        }
        let values: Vec<ScalarValue> = missing.iter().map(|v| ScalarValue::from(*v)).collect();
        let mut fields = args.arg_fields.to_vec();
        let mut scalars = args.scalar_arguments.to_vec();
        for v in &values {
            fields.push(Arc::new(Field::new("arg", DataType::Utf8, false)));
            scalars.push(Some(v));
        }
        self.inner.return_field_from_args(ReturnFieldArgs {
            arg_fields: &fields,
            scalar_arguments: &scalars,
        })
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        #[allow(deprecated)]
        self.inner.is_nullable(args, schema)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        for v in self.missing(args.args.len()) {
            args.args.push(ColumnarValue::Scalar(ScalarValue::from(*v)));
            args.arg_fields
                .push(Arc::new(Field::new("arg", DataType::Utf8, false)));
        }
        self.inner.invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.inner().conditional_arguments(args)
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.evaluate_bounds(input)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

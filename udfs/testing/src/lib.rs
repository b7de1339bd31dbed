//! Functions that exercise the UDF boundary in Eddy's own tests: `ECHO(x)` returns its argument for
//! every SQL type (round trips through the C Data Interface), and the others misbehave on purpose —
//! they panic, fail, or return arrays of the wrong length, type or contents — so the tests can check
//! the host turns each into an error and keeps going.

use std::sync::Arc;

use eddy_udf::arrow_array::{Int64Array, StringArray};
use eddy_udf::arrow_buffer::{Buffer, OffsetBuffer};
use eddy_udf::prelude::*;

/// `ECHO(x)` overloads, one per SQL type, returning the argument as it came.
macro_rules! echo {
    ($($ty:ident: $sql:tt),* $(,)?) => {$(
        #[udf(name = "echo", args = [$sql], returns = $sql)]
        struct $ty;

        impl BatchFunction for $ty {
            fn create(_: &Options) -> Result<Self> {
                Ok($ty)
            }

            fn invoke(&mut self, args: &[ArrayRef], _rows: usize) -> Result<ArrayRef> {
                Ok(args[0].clone())
            }
        }
    )*};
}

echo!(
    EchoBoolean: "BOOLEAN",
    EchoInt: "INT",
    EchoBigint: "BIGINT",
    EchoDouble: "DOUBLE",
    EchoDecimal: "DECIMAL(10, 2)",
    EchoString: "STRING",
    EchoBytes: "BYTES",
    EchoTimestamp: "TIMESTAMP",
    EchoDate: "DATE",
    EchoTime: "TIME",
    EchoArray: "ARRAY<STRING>",
    EchoMap: "MAP<STRING, BIGINT>",
    EchoStruct: "STRUCT<A INT, B ARRAY<DOUBLE>>",
);

/// Returns its argument, but panics on 13.
#[udf]
fn fragile(x: i64) -> i64 {
    if x == 13 {
        panic!("unlucky thirteen");
    }
    x
}

/// Returns its argument, failing on negative numbers.
#[udf]
fn positive(x: i64) -> std::result::Result<i64, String> {
    if x < 0 {
        Err(format!("{x} is negative"))
    } else {
        Ok(x)
    }
}

/// Returns one value more than it was given rows.
#[udf(args = ["BIGINT"], returns = "BIGINT")]
struct TooLong;

impl BatchFunction for TooLong {
    fn create(_: &Options) -> Result<Self> {
        Ok(TooLong)
    }

    fn invoke(&mut self, _args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from(vec![0; rows + 1])))
    }
}

/// Promises a BIGINT and returns strings.
#[udf(args = ["BIGINT"], returns = "BIGINT")]
struct WrongType;

impl BatchFunction for WrongType {
    fn create(_: &Options) -> Result<Self> {
        Ok(WrongType)
    }

    fn invoke(&mut self, _args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        Ok(Arc::new(StringArray::from(vec!["x"; rows])))
    }
}

/// Returns strings that are not UTF-8.
#[udf(args = ["BIGINT"], returns = "STRING")]
struct BadUtf8;

impl BatchFunction for BadUtf8 {
    fn create(_: &Options) -> Result<Self> {
        Ok(BadUtf8)
    }

    fn invoke(&mut self, _args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        let offsets = OffsetBuffer::from_lengths(vec![2; rows]);
        let values = Buffer::from(vec![0xff_u8; rows * 2]);
        // Safety: deliberately not; the host must catch it before reading the strings.
        Ok(Arc::new(unsafe {
            StringArray::new_unchecked(offsets, values, None)
        }))
    }
}

/// Reads its configuration: `ksql.functions.greeting.word`.
#[udf(args = ["STRING"], returns = "STRING")]
struct Greeting {
    word: String,
}

impl BatchFunction for Greeting {
    fn create(options: &Options) -> Result<Self> {
        Ok(Greeting {
            word: options.config("word").unwrap_or("hello").to_string(),
        })
    }

    fn invoke(&mut self, args: &[ArrayRef], _rows: usize) -> Result<ArrayRef> {
        let names = args[0]
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("expected strings")?;
        Ok(Arc::new(
            names
                .iter()
                .map(|n| n.map(|n| format!("{} {n}", self.word)))
                .collect::<StringArray>(),
        ))
    }
}

eddy_udf::plugin!(
    EchoBoolean,
    EchoInt,
    EchoBigint,
    EchoDouble,
    EchoDecimal,
    EchoString,
    EchoBytes,
    EchoTimestamp,
    EchoDate,
    EchoTime,
    EchoArray,
    EchoMap,
    EchoStruct,
    fragile,
    positive,
    TooLong,
    WrongType,
    BadUtf8,
    Greeting,
);

//! `INITCAP(text)` as ksqlDB has it: the first letter of each word upper case, every other letter
//! lower case, words being separated by whitespace only (DataFusion's `initcap` also starts a word
//! after any character that is not a letter or digit).

use datafusion::arrow::array::{Array, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// Registered as `initcap`, in place of DataFusion's.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct InitCap {
    signature: Signature,
}

impl Default for InitCap {
    fn default() -> Self {
        InitCap {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for InitCap {
    fn name(&self) -> &str {
        "initcap"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let texts = cast(&args.args[0].to_array(rows)?, &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(rows, texts.value_data().len());
        let mut word = String::new();
        for i in 0..rows {
            if texts.is_null(i) {
                out.append_null();
                continue;
            }
            word.clear();
            let mut starts_word = true;
            for c in texts.value(i).chars() {
                if starts_word {
                    word.extend(c.to_uppercase());
                } else {
                    word.extend(c.to_lowercase());
                }
                starts_word = c.is_whitespace();
            }
            out.append_value(&word);
        }
        Ok(ColumnarValue::Array(std::sync::Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::Field;
    use std::sync::Arc;

    #[test]
    fn words_are_separated_by_whitespace_only() {
        let input = StringArray::from(vec![
            Some("some_STRING"),
            None,
            Some("the   Quick br0wn fOx"),
        ]);
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(Arc::new(input))],
            arg_fields: vec![Arc::new(Field::new("t", DataType::Utf8, true))],
            number_rows: 3,
            return_field: Arc::new(Field::new("r", DataType::Utf8, true)),
            config_options: Arc::default(),
        };
        let ColumnarValue::Array(out) = InitCap::default().invoke_with_args(args).unwrap() else {
            panic!("an array")
        };
        let out = out.as_string::<i32>();
        assert_eq!(out.value(0), "Some_string");
        assert!(out.is_null(1));
        assert_eq!(out.value(2), "The   Quick Br0wn Fox");
    }
}

//! Rust values as SQL values: [`Arg`] reads a function's arguments out of Arrow arrays row by row,
//! [`Ret`] builds the result array; the macros generate loops over these so a function can be written
//! over plain Rust scalars (`i64`, `f64`, `&str`, `Option<T>` for NULL, `Vec<T>` for arrays).

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, ListBuilder, PrimitiveBuilder, StringBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, ListArray, PrimitiveArray, StringArray,
};

use crate::{Error, Result};

/// A type a function's argument can have. NULL arguments are `None` from [`Arg::get`]: the generated
/// code then makes the row's result NULL without calling the function, except for `Option<T>`
/// arguments, which receive the NULL.
pub trait Arg {
    /// The SQL type of the parameter (`BIGINT`, `ARRAY<STRING>`, ...).
    fn sql_type() -> String;
    /// Whether the function is called with NULLs (an `Option<T>` parameter).
    const NULLABLE: bool = false;
    /// The typed view of an argument array.
    type Column<'a>;
    /// The value handed to the function.
    type Value<'a>;
    /// Views an argument array as this type; fails if the array has another type.
    fn column(array: &ArrayRef) -> Result<Self::Column<'_>>;
    /// The value at `row`, or `None` if it is NULL.
    fn get<'a>(column: &Self::Column<'a>, row: usize) -> Option<Self::Value<'a>>;
}

/// A type a function can return; `Option<T>` returns NULL, `Result<T, E>` fails the batch with `E`'s
/// message (the host then finds the failing rows and handles them by the query's error policy).
pub trait Ret: Sized {
    fn sql_type() -> String;
    /// Whether the function can return NULL itself.
    const NULLABLE: bool = false;
    type Builder: ArrayBuilder;
    fn builder(capacity: usize) -> Self::Builder;
    fn append(builder: &mut Self::Builder, value: Self) -> Result<()>;
    fn append_null(builder: &mut Self::Builder);
}

/// The trailing arguments of a variadic function: `fn f(first: i64, rest: Variadic<&str>)` is called as
/// `F(1)`, `F(1, 'a')`, `F(1, 'a', 'b')`, ...
#[derive(Debug, Clone, PartialEq)]
pub struct Variadic<T>(pub Vec<T>);

impl<T> std::ops::Deref for Variadic<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> IntoIterator for Variadic<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

fn wrong_type(expected: &str, array: &ArrayRef) -> Error {
    Error(format!(
        "expected an argument of Arrow type {expected}, got {}",
        array.data_type()
    ))
}

/// `Arg` and `Ret` for a type stored in a primitive Arrow array.
macro_rules! primitive {
    ($rust:ty, $arrow:ty, $sql:literal) => {
        impl Arg for $rust {
            fn sql_type() -> String {
                $sql.into()
            }
            type Column<'a> = &'a PrimitiveArray<$arrow>;
            type Value<'a> = $rust;
            fn column(array: &ArrayRef) -> Result<Self::Column<'_>> {
                array
                    .as_primitive_opt::<$arrow>()
                    .ok_or_else(|| wrong_type(stringify!($arrow), array))
            }
            fn get<'a>(column: &Self::Column<'a>, row: usize) -> Option<Self::Value<'a>> {
                column.is_valid(row).then(|| column.value(row))
            }
        }

        impl Ret for $rust {
            fn sql_type() -> String {
                $sql.into()
            }
            type Builder = PrimitiveBuilder<$arrow>;
            fn builder(capacity: usize) -> Self::Builder {
                PrimitiveBuilder::with_capacity(capacity)
            }
            fn append(builder: &mut Self::Builder, value: Self) -> Result<()> {
                builder.append_value(value);
                Ok(())
            }
            fn append_null(builder: &mut Self::Builder) {
                builder.append_null();
            }
        }
    };
}

primitive!(i32, Int32Type, "INT");
primitive!(i64, Int64Type, "BIGINT");
primitive!(f64, Float64Type, "DOUBLE");

impl Arg for bool {
    fn sql_type() -> String {
        "BOOLEAN".into()
    }
    type Column<'a> = &'a BooleanArray;
    type Value<'a> = bool;
    fn column(array: &ArrayRef) -> Result<Self::Column<'_>> {
        array
            .as_boolean_opt()
            .ok_or_else(|| wrong_type("Boolean", array))
    }
    fn get<'a>(column: &Self::Column<'a>, row: usize) -> Option<Self::Value<'a>> {
        column.is_valid(row).then(|| column.value(row))
    }
}

impl Ret for bool {
    fn sql_type() -> String {
        "BOOLEAN".into()
    }
    type Builder = BooleanBuilder;
    fn builder(capacity: usize) -> Self::Builder {
        BooleanBuilder::with_capacity(capacity)
    }
    fn append(builder: &mut Self::Builder, value: Self) -> Result<()> {
        builder.append_value(value);
        Ok(())
    }
    fn append_null(builder: &mut Self::Builder) {
        builder.append_null();
    }
}

fn strings(array: &ArrayRef) -> Result<&StringArray> {
    array
        .as_string_opt::<i32>()
        .ok_or_else(|| wrong_type("Utf8", array))
}

impl Arg for &str {
    fn sql_type() -> String {
        "STRING".into()
    }
    type Column<'a> = &'a StringArray;
    type Value<'a> = &'a str;
    fn column(array: &ArrayRef) -> Result<Self::Column<'_>> {
        strings(array)
    }
    fn get<'a>(column: &Self::Column<'a>, row: usize) -> Option<Self::Value<'a>> {
        column.is_valid(row).then(|| column.value(row))
    }
}

impl Arg for String {
    fn sql_type() -> String {
        "STRING".into()
    }
    type Column<'a> = &'a StringArray;
    type Value<'a> = String;
    fn column(array: &ArrayRef) -> Result<Self::Column<'_>> {
        strings(array)
    }
    fn get<'a>(column: &Self::Column<'a>, row: usize) -> Option<Self::Value<'a>> {
        column.is_valid(row).then(|| column.value(row).to_string())
    }
}

/// `Ret` for a type appended to a `StringBuilder` through `AsRef<str>`.
macro_rules! string_ret {
    ($rust:ty) => {
        impl Ret for $rust {
            fn sql_type() -> String {
                "STRING".into()
            }
            type Builder = StringBuilder;
            fn builder(capacity: usize) -> Self::Builder {
                StringBuilder::with_capacity(capacity, capacity * 8)
            }
            fn append(builder: &mut Self::Builder, value: Self) -> Result<()> {
                builder.append_value(value);
                Ok(())
            }
            fn append_null(builder: &mut Self::Builder) {
                builder.append_null();
            }
        }
    };
}

string_ret!(String);
string_ret!(&'static str);

impl Arg for &[u8] {
    fn sql_type() -> String {
        "BYTES".into()
    }
    type Column<'a> = &'a BinaryArray;
    type Value<'a> = &'a [u8];
    fn column(array: &ArrayRef) -> Result<Self::Column<'_>> {
        array
            .as_binary_opt::<i32>()
            .ok_or_else(|| wrong_type("Binary", array))
    }
    fn get<'a>(column: &Self::Column<'a>, row: usize) -> Option<Self::Value<'a>> {
        column.is_valid(row).then(|| column.value(row))
    }
}

impl Ret for Vec<u8> {
    fn sql_type() -> String {
        "BYTES".into()
    }
    type Builder = BinaryBuilder;
    fn builder(capacity: usize) -> Self::Builder {
        BinaryBuilder::with_capacity(capacity, capacity * 8)
    }
    fn append(builder: &mut Self::Builder, value: Self) -> Result<()> {
        builder.append_value(value);
        Ok(())
    }
    fn append_null(builder: &mut Self::Builder) {
        builder.append_null();
    }
}

impl<T: Arg> Arg for Option<T> {
    fn sql_type() -> String {
        T::sql_type()
    }
    const NULLABLE: bool = true;
    type Column<'a> = T::Column<'a>;
    type Value<'a> = Option<T::Value<'a>>;
    fn column(array: &ArrayRef) -> Result<Self::Column<'_>> {
        T::column(array)
    }
    fn get<'a>(column: &Self::Column<'a>, row: usize) -> Option<Self::Value<'a>> {
        Some(T::get(column, row))
    }
}

impl<T: Ret> Ret for Option<T> {
    fn sql_type() -> String {
        T::sql_type()
    }
    const NULLABLE: bool = true;
    type Builder = T::Builder;
    fn builder(capacity: usize) -> Self::Builder {
        T::builder(capacity)
    }
    fn append(builder: &mut Self::Builder, value: Self) -> Result<()> {
        match value {
            Some(v) => T::append(builder, v),
            None => {
                T::append_null(builder);
                Ok(())
            }
        }
    }
    fn append_null(builder: &mut Self::Builder) {
        T::append_null(builder);
    }
}

impl<T: Ret, E: std::fmt::Display> Ret for std::result::Result<T, E> {
    fn sql_type() -> String {
        T::sql_type()
    }
    const NULLABLE: bool = T::NULLABLE;
    type Builder = T::Builder;
    fn builder(capacity: usize) -> Self::Builder {
        T::builder(capacity)
    }
    fn append(builder: &mut Self::Builder, value: Self) -> Result<()> {
        match value {
            Ok(v) => T::append(builder, v),
            Err(e) => Err(Error(e.to_string())),
        }
    }
    fn append_null(builder: &mut Self::Builder) {
        T::append_null(builder);
    }
}

/// An `ARRAY<T>` argument: a NULL element makes the whole argument NULL unless `T` is an `Option`.
impl<T: Arg> Arg for Vec<T> {
    fn sql_type() -> String {
        format!("ARRAY<{}>", T::sql_type())
    }
    type Column<'a> = (&'a ListArray, T::Column<'a>);
    type Value<'a> = Vec<T::Value<'a>>;
    fn column(array: &ArrayRef) -> Result<Self::Column<'_>> {
        let list = array
            .as_list_opt::<i32>()
            .ok_or_else(|| wrong_type("List", array))?;
        Ok((list, T::column(list.values())?))
    }
    fn get<'a>(column: &Self::Column<'a>, row: usize) -> Option<Self::Value<'a>> {
        let (list, values) = column;
        if list.is_null(row) {
            return None;
        }
        let offsets = list.value_offsets();
        (offsets[row] as usize..offsets[row + 1] as usize)
            .map(|i| T::get(values, i))
            .collect()
    }
}

impl<T: Ret> Ret for Vec<T>
where
    T::Builder: 'static,
{
    fn sql_type() -> String {
        format!("ARRAY<{}>", T::sql_type())
    }
    type Builder = ListBuilder<T::Builder>;
    fn builder(capacity: usize) -> Self::Builder {
        ListBuilder::with_capacity(T::builder(capacity), capacity)
    }
    fn append(builder: &mut Self::Builder, value: Self) -> Result<()> {
        for v in value {
            T::append(builder.values(), v)?;
        }
        builder.append(true);
        Ok(())
    }
    fn append_null(builder: &mut Self::Builder) {
        builder.append(false);
    }
}

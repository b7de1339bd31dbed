//! A row or key as Arrow row bytes, shared: what join operators keep and hand out is cloned by a
//! reference count, never copied, and laid back out as columns through its converter's parser.

use std::sync::Arc;

use datafusion::arrow::row::{Row, RowConverter, RowParser};

/// Arrow row bytes made by one [`RowConverter`] (a side's rows, or the join keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharedRow(Arc<[u8]>);

impl SharedRow {
    /// A copy of `row`'s bytes.
    pub fn of(row: Row<'_>) -> Self {
        SharedRow(Arc::from(row.data()))
    }

    /// The row bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether `other` is this very row (handed on, not copied).
    pub fn is(&self, other: &SharedRow) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Reads [`SharedRow`]s of one converter back as rows.
#[derive(Debug)]
pub struct Parser(RowParser);

impl Parser {
    /// The parser of `converter`'s rows; only rows that converter made may be parsed with it.
    pub fn of(converter: &RowConverter) -> Self {
        // SAFETY: the rows parsed are `SharedRow`s copied from rows `converter` made (from columns,
        // or from columns decoded out of Eddy's state encoding), whose strings it checked as UTF-8.
        Parser(unsafe { converter.parser_skip_utf8_validation() })
    }

    /// `row` as a row of the converter.
    pub fn row<'a>(&'a self, row: &'a SharedRow) -> Row<'a> {
        self.0.parse(row.bytes())
    }
}

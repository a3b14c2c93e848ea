//! The values of one log column as plain Rust vectors, and the field types a column can hold,
//! so that a row struct maps to columns without knowing the file format.

use std::borrow::Cow;

use anyhow::Context;

use super::{ColumnType, Modality};

/// The values of one column for a run of rows, in row order: what log rows become on their
/// way to a file (their strings borrowed) and come back from.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnData<'a> {
    /// A non-nullable [`ColumnType::Int32`] column.
    Int32(Vec<i32>),
    /// A nullable [`ColumnType::Int32`] column.
    NullableInt32(Vec<Option<i32>>),
    /// A [`ColumnType::Int64`] column.
    Int64(Vec<i64>),
    /// A [`ColumnType::Float64`] column.
    Float64(Vec<f64>),
    /// A [`ColumnType::Utf8`] column.
    Utf8(Vec<Cow<'a, str>>),
}

/// A Rust type a log row's field may have: the column type it is written as, and its
/// conversion to and from that column's [`ColumnData`].
pub trait ColumnValue: Sized {
    /// The column's type.
    const TYPE: ColumnType;
    /// Whether the column may hold nulls.
    const NULLABLE: bool = false;

    /// The column holding `values`.
    fn to_column<'a>(values: impl Iterator<Item = &'a Self>) -> ColumnData<'a>
    where
        Self: 'a;

    /// The values of `column` (named `name` in errors), which holds this type's data.
    fn from_column(column: ColumnData<'_>, name: &str) -> anyhow::Result<Vec<Self>>;
}

/// The error of a column whose data is not of its field's type (a reader's mistake).
fn mismatch<T: ColumnValue>(name: &str, column: &ColumnData) -> anyhow::Error {
    let found = match column {
        ColumnData::Int32(_) => "Int32",
        ColumnData::NullableInt32(_) => "nullable Int32",
        ColumnData::Int64(_) => "Int64",
        ColumnData::Float64(_) => "Float64",
        ColumnData::Utf8(_) => "Utf8",
    };
    anyhow::anyhow!(
        "column `{name}` came as {found} data, its field needs {:?}",
        T::TYPE
    )
}

/// [`ColumnValue`] for a number type stored as it is, in the `ColumnData::$variant` column.
macro_rules! number_column {
    ($ty:ty, $variant:ident) => {
        impl ColumnValue for $ty {
            const TYPE: ColumnType = ColumnType::$variant;

            fn to_column<'a>(values: impl Iterator<Item = &'a Self>) -> ColumnData<'a> {
                ColumnData::$variant(values.copied().collect())
            }

            fn from_column(column: ColumnData<'_>, name: &str) -> anyhow::Result<Vec<Self>> {
                match column {
                    ColumnData::$variant(values) => Ok(values),
                    other => Err(mismatch::<Self>(name, &other)),
                }
            }
        }
    };
}

number_column!(i32, Int32);
number_column!(i64, Int64);
number_column!(f64, Float64);

impl ColumnValue for Option<i32> {
    const TYPE: ColumnType = ColumnType::Int32;
    const NULLABLE: bool = true;

    fn to_column<'a>(values: impl Iterator<Item = &'a Self>) -> ColumnData<'a> {
        ColumnData::NullableInt32(values.copied().collect())
    }

    fn from_column(column: ColumnData<'_>, name: &str) -> anyhow::Result<Vec<Self>> {
        match column {
            ColumnData::NullableInt32(values) => Ok(values),
            other => Err(mismatch::<Self>(name, &other)),
        }
    }
}

/// The strings of a [`ColumnType::Utf8`] column.
fn strings<'a, T: ColumnValue>(
    column: ColumnData<'a>,
    name: &str,
) -> anyhow::Result<Vec<Cow<'a, str>>> {
    match column {
        ColumnData::Utf8(values) => Ok(values),
        other => Err(mismatch::<T>(name, &other)),
    }
}

impl ColumnValue for String {
    const TYPE: ColumnType = ColumnType::Utf8;

    fn to_column<'a>(values: impl Iterator<Item = &'a Self>) -> ColumnData<'a> {
        ColumnData::Utf8(values.map(|s| Cow::Borrowed(s.as_str())).collect())
    }

    fn from_column(column: ColumnData<'_>, name: &str) -> anyhow::Result<Vec<Self>> {
        Ok(strings::<Self>(column, name)?
            .into_iter()
            .map(Cow::into_owned)
            .collect())
    }
}

/// Written as its [`Modality::name`].
impl ColumnValue for Modality {
    const TYPE: ColumnType = ColumnType::Utf8;

    fn to_column<'a>(values: impl Iterator<Item = &'a Self>) -> ColumnData<'a> {
        ColumnData::Utf8(values.map(|m| Cow::Borrowed(m.name())).collect())
    }

    fn from_column(column: ColumnData<'_>, name: &str) -> anyhow::Result<Vec<Self>> {
        let values = strings::<Self>(column, name)?;
        let modality = |(i, value): (usize, Cow<str>)| {
            Modality::from_name(&value).with_context(|| {
                format!("column `{name}`, row {i}: unknown modality `{value}` (image or text)")
            })
        };
        values.into_iter().enumerate().map(modality).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_mismatches_are_errors() {
        let labels = [Some(3), None];
        let column = <Option<i32>>::to_column(labels.iter());
        assert_eq!(column, ColumnData::NullableInt32(labels.to_vec()));
        assert_eq!(<Option<i32>>::from_column(column, "label").unwrap(), labels);
        let modalities = [Modality::Text, Modality::Image];
        let ColumnData::Utf8(names) = Modality::to_column(modalities.iter()) else {
            panic!("modalities are strings");
        };
        let column = ColumnData::Utf8(names.into_iter().chain(["audio".into()]).collect());
        let err = Modality::from_column(column, "modality").unwrap_err();
        assert_eq!(
            err.to_string(),
            "column `modality`, row 2: unknown modality `audio` (image or text)"
        );
        let err = i64::from_column(ColumnData::Float64(vec![1.0]), "step").unwrap_err();
        assert_eq!(
            err.to_string(),
            "column `step` came as Float64 data, its field needs Int64"
        );
    }
}

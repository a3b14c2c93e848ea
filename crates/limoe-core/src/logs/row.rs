//! [`LogRow`], and `log_row!`, which declares a log from one line per column.

use super::{ColumnData, LogSchema};

/// A row of one run log: which log it belongs to and how rows map to its columns.
pub trait LogRow: Clone + std::fmt::Debug + Sized {
    /// The log's schema.
    const LOG: &'static LogSchema;

    /// The step the row was recorded at.
    fn step(&self) -> i64;

    /// The values of `rows`, a [`ColumnData`] per column of [`LogRow::LOG`], in its order.
    fn to_columns(rows: &[Self]) -> Vec<ColumnData<'_>>;

    /// The rows whose columns (a [`ColumnData`] per column of [`LogRow::LOG`], in its
    /// order) are `columns`.
    fn from_columns(columns: Vec<ColumnData<'_>>) -> anyhow::Result<Vec<Self>>;
}

/// Declares a log once: its [`LogSchema`] constant, its row struct (a `step` field first,
/// then one field per column), a module of its column names and the row's [`LogRow`]
/// conversion. Each column is one line, `NAME field: Type = "what it means",`, where `Type`
/// is a [`ColumnValue`](super::ColumnValue) and the column is named after the field.
macro_rules! log_row {
    (
        $(#[$schema_meta:meta])*
        pub const $schema:ident = $name:literal: $doc:literal;
        $(#[$row_meta:meta])*
        pub struct $row:ident;
        $(#[$names_meta:meta])*
        pub mod $names:ident {
            $($column:ident $field:ident: $ty:ty = $column_doc:literal,)*
        }
    ) => {
        $(#[$schema_meta])*
        pub const $schema: $crate::logs::LogSchema = $crate::logs::LogSchema {
            name: $name,
            doc: $doc,
            columns: &[
                $crate::logs::STEP,
                $($crate::logs::Column {
                    name: stringify!($field),
                    ty: <$ty as $crate::logs::ColumnValue>::TYPE,
                    nullable: <$ty as $crate::logs::ColumnValue>::NULLABLE,
                    doc: $column_doc,
                },)*
            ],
        };

        $(#[$row_meta])*
        pub struct $row {
            /// Optimizer steps completed when the row was recorded.
            pub step: i64,
            $(#[doc = $column_doc] pub $field: $ty,)*
        }

        $(#[$names_meta])*
        pub mod $names {
            /// Optimizer steps completed when the row was recorded.
            pub const STEP: &str = $crate::logs::STEP.name;
            $(#[doc = $column_doc] pub const $column: &str = stringify!($field);)*
        }

        impl $crate::logs::LogRow for $row {
            const LOG: &'static $crate::logs::LogSchema = &$schema;

            fn step(&self) -> i64 {
                self.step
            }

            fn to_columns(rows: &[Self]) -> Vec<$crate::logs::ColumnData<'_>> {
                use $crate::logs::ColumnValue;
                vec![
                    i64::to_column(rows.iter().map(|r| &r.step)),
                    $(<$ty>::to_column(rows.iter().map(|r| &r.$field)),)*
                ]
            }

            fn from_columns(
                columns: Vec<$crate::logs::ColumnData<'_>>,
            ) -> anyhow::Result<Vec<Self>> {
                use anyhow::Context as _;
                use $crate::logs::ColumnValue;
                let mut columns = columns.into_iter();
                let mut next = |name: &str| {
                    columns
                        .next()
                        .with_context(|| format!("log `{}`: no values for column `{name}`", $name))
                };
                let step = $names::STEP;
                let mut step = i64::from_column(next(step)?, step)?.into_iter();
                $(
                    let name = stringify!($field);
                    let mut $field = <$ty>::from_column(next(name)?, name)?.into_iter();
                )*
                Ok(std::iter::from_fn(|| {
                    Some($row {
                        step: step.next()?,
                        $($field: $field.next()?,)*
                    })
                })
                .collect())
            }
        }
    };
}

pub(super) use log_row;

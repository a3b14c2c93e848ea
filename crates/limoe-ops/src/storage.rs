//! Typed access to the contiguous values of CPU storage.

use std::ops::Range;

use candle_core::{CpuStorage, Layout, Result};

/// The part of a storage's buffer that `layout` views, or an error naming `op` when the view
/// is not contiguous.
fn span(layout: &Layout, op: &str) -> Result<Range<usize>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(start..end),
        None => candle_core::bail!("{op}: the input must be contiguous"),
    }
}

/// The contiguous values of a storage, or an error naming `op`.
pub(crate) fn contiguous<'a, T>(data: &'a [T], layout: &Layout, op: &str) -> Result<&'a [T]> {
    Ok(&data[span(layout, op)?])
}

/// The contiguous values of an f32 storage, or an error naming `op`.
pub(crate) fn f32_values<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    match storage {
        CpuStorage::F32(data) => contiguous(data, layout, op),
        _ => candle_core::bail!("{op}: needs an f32 tensor"),
    }
}

/// The contiguous values of an f32 storage, writable (for in-place ops).
pub(crate) fn f32_values_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a mut [f32]> {
    match storage {
        CpuStorage::F32(data) => Ok(&mut data[span(layout, op)?]),
        _ => candle_core::bail!("{op}: needs an f32 tensor"),
    }
}

/// Evaluates `$body` with each `$value` bound to the contiguous values of `($storage,
/// $layout)` when the storages are all f32 or all f64, and wraps the result back into a
/// storage of that type; any other mix of types is an error naming `$op`.
macro_rules! same_float {
    ($op:expr, [$(($value:ident, $storage:expr, $layout:expr)),+ $(,)?] => $body:expr) => {
        match ($($storage,)+) {
            ($(candle_core::CpuStorage::F32($value),)+) => {
                $(let $value = $crate::storage::contiguous($value, $layout, $op)?;)+
                candle_core::CpuStorage::F32($body)
            }
            ($(candle_core::CpuStorage::F64($value),)+) => {
                $(let $value = $crate::storage::contiguous($value, $layout, $op)?;)+
                candle_core::CpuStorage::F64($body)
            }
            _ => candle_core::bail!("{}: the inputs must be all f32 or all f64", $op),
        }
    };
}
pub(crate) use same_float;

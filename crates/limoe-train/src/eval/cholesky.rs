//! A small dense Cholesky factorisation and solver in f64.

use anyhow::{Result, bail};

use super::matrix::dot;

/// Solves `A X = B` for symmetric positive definite `A` (`[n, n]`, row-major; only its lower
/// triangle is read) and `B` (`[n, m]`, row-major), returning `X` `[n, m]`. Errors on
/// mismatched sizes or when `A` is not (numerically) positive definite, naming the pivot.
pub fn cholesky_solve(a: &[f64], n: usize, b: &[f64]) -> Result<Vec<f64>> {
    if n == 0 || a.len() != n * n {
        bail!(
            "matrix of {} values is not a non-empty {n}x{n} square",
            a.len()
        );
    }
    if !b.len().is_multiple_of(n) {
        bail!(
            "right-hand side of {} values does not have {n} rows",
            b.len()
        );
    }
    let m = b.len() / n;
    let l = factor(a, n)?;
    // Forward substitution L Y = B, then back substitution L^T X = Y, column block at once.
    let mut x = b.to_vec();
    for i in 0..n {
        for k in 0..i {
            let lik = l[i * n + k];
            for c in 0..m {
                x[i * m + c] -= lik * x[k * m + c];
            }
        }
        let d = l[i * n + i];
        x[i * m..(i + 1) * m].iter_mut().for_each(|v| *v /= d);
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            let lki = l[k * n + i];
            for c in 0..m {
                x[i * m + c] -= lki * x[k * m + c];
            }
        }
        let d = l[i * n + i];
        x[i * m..(i + 1) * m].iter_mut().for_each(|v| *v /= d);
    }
    Ok(x)
}

/// The lower-triangular `L` with `A = L L^T` (row-major, upper triangle zero).
fn factor(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut l = vec![0.0f64; n * n];
    for j in 0..n {
        let row_j = &l[j * n..j * n + j];
        let pivot = a[j * n + j] - dot(row_j, row_j);
        if !(pivot > 0.0 && pivot.is_finite()) {
            bail!("matrix is not positive definite: pivot {j} is {pivot}");
        }
        let d = pivot.sqrt();
        l[j * n + j] = d;
        for i in j + 1..n {
            let s = dot(&l[i * n..i * n + j], &l[j * n..j * n + j]);
            l[i * n + j] = (a[i * n + j] - s) / d;
        }
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_of_a_known_matrix() {
        let a = [4.0, 12.0, -16.0, 12.0, 37.0, -43.0, -16.0, -43.0, 98.0];
        let l = factor(&a, 3).unwrap();
        assert_eq!(l, vec![2.0, 0.0, 0.0, 6.0, 1.0, 0.0, -8.0, 5.0, 3.0]);
    }
}

//! The small dense linear algebra behind [`regression`](super::regression): non-negative
//! least squares on the normal equations, and the eigen-decomposition that gives a fit's
//! condition number and standard errors. Matrices are a few unknowns across (the
//! background and each component kind), so plain `Vec<Vec<f64>>` and O(p^3) methods do.

/// Non-negative least squares on the normal equations `G x = b` (Lawson and Hanson's
/// active-set method). `G` is symmetric positive definite (checked by the caller).
pub(super) fn nnls(gram: &[Vec<f64>], rhs: &[f64]) -> Vec<f64> {
    let p = rhs.len();
    let tol = 1e-12 * rhs.iter().fold(1.0, |m: f64, v| m.max(v.abs()));
    let mut x = vec![0.0; p];
    let mut passive = vec![false; p];
    let gradient = |x: &[f64]| -> Vec<f64> {
        (0..p)
            .map(|i| rhs[i] - (0..p).map(|j| gram[i][j] * x[j]).sum::<f64>())
            .collect()
    };
    for _ in 0..3 * p + 10 {
        let w = gradient(&x);
        let Some(j) = (0..p)
            .filter(|&j| !passive[j] && w[j] > tol)
            .max_by(|&a, &b| w[a].total_cmp(&w[b]))
        else {
            break;
        };
        passive[j] = true;
        for _ in 0..3 * p + 10 {
            let z = solve_on(gram, rhs, &passive);
            if (0..p).all(|i| !passive[i] || z[i] > 0.0) {
                x = z;
                break;
            }
            // Step from x towards z until the first passive unknown reaches zero.
            let alpha = (0..p)
                .filter(|&i| passive[i] && z[i] <= 0.0)
                .map(|i| x[i] / (x[i] - z[i]))
                .fold(1.0, f64::min);
            for i in 0..p {
                x[i] += alpha * (z[i] - x[i]);
                if passive[i] && x[i] <= tol {
                    x[i] = 0.0;
                    passive[i] = false;
                }
            }
        }
    }
    x
}

/// Solves `G_PP z_P = b_P` for the passive unknowns (others 0), by Gaussian elimination
/// with partial pivoting.
fn solve_on(gram: &[Vec<f64>], rhs: &[f64], passive: &[bool]) -> Vec<f64> {
    let idx: Vec<usize> = (0..rhs.len()).filter(|&i| passive[i]).collect();
    let m = idx.len();
    let mut a: Vec<Vec<f64>> = idx
        .iter()
        .map(|&i| {
            let mut row: Vec<f64> = idx.iter().map(|&j| gram[i][j]).collect();
            row.push(rhs[i]);
            row
        })
        .collect();
    for c in 0..m {
        let pivot = (c..m)
            .max_by(|&r, &s| a[r][c].abs().total_cmp(&a[s][c].abs()))
            .unwrap_or(c);
        a.swap(c, pivot);
        if a[c][c] == 0.0 {
            continue;
        }
        let pivot_row = a[c].clone();
        for row in a.iter_mut().skip(c + 1) {
            let f = row[c] / pivot_row[c];
            for (x, y) in row[c..].iter_mut().zip(&pivot_row[c..]) {
                *x -= f * y;
            }
        }
    }
    let mut z_p = vec![0.0; m];
    for c in (0..m).rev() {
        let s: f64 = (c + 1..m).map(|k| a[c][k] * z_p[k]).sum();
        z_p[c] = if a[c][c] == 0.0 {
            0.0
        } else {
            (a[c][m] - s) / a[c][c]
        };
    }
    let mut z = vec![0.0; rhs.len()];
    for (k, &i) in idx.iter().enumerate() {
        z[i] = z_p[k];
    }
    z
}

/// Eigenvalues and eigenvectors (columns) of a small symmetric matrix, by cyclic Jacobi
/// rotations.
pub(super) fn symmetric_eigen(matrix: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let p = matrix.len();
    let mut a = matrix.to_vec();
    let mut v: Vec<Vec<f64>> = (0..p)
        .map(|i| (0..p).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for _ in 0..100 {
        let off: f64 = (0..p)
            .flat_map(|i| (0..p).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        if off < 1e-30 {
            break;
        }
        for i in 0..p {
            for j in i + 1..p {
                if a[i][j].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[j][j] - a[i][i]) / (2.0 * a[i][j]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (aki, akj) = (row[i], row[j]);
                    row[i] = c * aki - s * akj;
                    row[j] = s * aki + c * akj;
                }
                let (upper, lower) = a.split_at_mut(j);
                for (aik, ajk) in upper[i].iter_mut().zip(lower[0].iter_mut()) {
                    let (x, y) = (*aik, *ajk);
                    *aik = c * x - s * y;
                    *ajk = s * x + c * y;
                }
                for row in v.iter_mut() {
                    let (vki, vkj) = (row[i], row[j]);
                    row[i] = c * vki - s * vkj;
                    row[j] = s * vki + c * vkj;
                }
            }
        }
    }
    ((0..p).map(|i| a[i][i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_decomposition_reconstructs_the_matrix() {
        let m = vec![
            vec![4.0, 1.0, 0.5],
            vec![1.0, 3.0, 0.2],
            vec![0.5, 0.2, 2.0],
        ];
        let (vals, vecs) = symmetric_eigen(&m);
        for i in 0..3 {
            for j in 0..3 {
                let r: f64 = (0..3).map(|k| vecs[i][k] * vals[k] * vecs[j][k]).sum();
                assert!((r - m[i][j]).abs() < 1e-10, "({i},{j}) {r} vs {}", m[i][j]);
            }
        }
    }
}

//! Rounding many small times to integers without losing their sum.
//!
//! Rounding every value on its own can be off by up to half a unit per
//! value, so thousands of call paths of 0.4 µs each would add up to 0 µs
//! instead of hundreds. [`apportion`] uses the largest-remainder method
//! instead: every value is rounded down, and the units the sum is then
//! short of are handed out, one each, to the values with the largest
//! fractional parts (ties go to the earlier value). The results add up to
//! the rounded sum of the inputs exactly, and each result is its input
//! rounded down or up.

/// Rounds non-negative `values` to integers whose sum is the sum of
/// `values` rounded to the nearest integer (halves up). Negative and NaN
/// values count as 0; values beyond `u64::MAX` saturate.
pub(crate) fn apportion(values: &[f64]) -> Vec<u64> {
    let clean = |v: f64| if v > 0.0 { v } else { 0.0 };
    let total: f64 = values.iter().map(|&v| clean(v)).sum();
    let mut out: Vec<u64> = values.iter().map(|&v| clean(v).floor() as u64).collect();
    let floors: u128 = out.iter().map(|&v| u128::from(v)).sum();
    let target = (total + 0.5).floor() as u128;
    let short = usize::try_from(target.saturating_sub(floors))
        .unwrap_or(usize::MAX)
        .min(values.len());
    if short > 0 {
        let mut order: Vec<usize> = (0..values.len()).collect();
        let frac = |i: usize| {
            let v = clean(values[i]);
            v - v.floor()
        };
        // Stable: equal remainders keep index order.
        order.sort_by(|&a, &b| frac(b).total_cmp(&frac(a)));
        for &i in &order[..short] {
            out[i] = out[i].saturating_add(1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::apportion;

    #[test]
    fn keeps_the_sum() {
        assert_eq!(apportion(&[]), Vec::<u64>::new());
        assert_eq!(apportion(&[0.4; 10]), vec![1, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(apportion(&[2.5]), vec![3]);
        assert_eq!(apportion(&[0.2, 0.7, 1.6]), vec![0, 1, 2]);
        assert_eq!(apportion(&[0.3, 0.3, 0.3]), vec![1, 0, 0]);
        assert_eq!(apportion(&[-1.0, f64::NAN, 1.0]), vec![0, 0, 1]);
        assert_eq!(apportion(&[5.0, 7.0]), vec![5, 7]);
    }

    #[test]
    fn each_value_moves_less_than_one() {
        let values: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1009) as f64 / 97.0)
            .collect();
        let out = apportion(&values);
        let total: f64 = values.iter().sum();
        assert_eq!(out.iter().sum::<u64>(), total.round() as u64);
        for (v, r) in values.iter().zip(&out) {
            assert!((*r as f64 - v).abs() < 1.0, "{v} -> {r}");
        }
    }
}

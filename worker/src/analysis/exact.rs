//! Exact `statistics.mean` and `statistics.pstdev` (`docs/quirks.md`,
//! E-16): the
//! doubles are summed exactly as integers scaled by a common power of two,
//! divided exactly, and rounded once to the nearest double (ties to even).

use num_bigint::{BigInt, BigUint, Sign};

/// A finite double as `m × 2^e` with integer `m` (sign kept apart).
fn decompose(x: f64) -> (bool, u64, i32) {
    let bits = x.to_bits();
    let neg = bits >> 63 == 1;
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    if exp == 0 {
        (neg, frac, -1074)
    } else {
        (neg, frac | (1u64 << 52), exp - 1075)
    }
}

/// A fixed-point accumulator: limbs of `2^(64·i)` units of `2^base`.
struct Acc {
    limbs: Vec<u64>,
}

impl Acc {
    fn new() -> Self {
        Acc { limbs: Vec::new() }
    }
    /// Adds `v << shift`.
    fn add(&mut self, value: u128, shift: u32) {
        if value == 0 {
            return;
        }
        let word = (shift / 64) as usize;
        let bit = shift % 64;
        let low = value as u64;
        let high = (value >> 64) as u64;
        let (lo, mid, hi) = if bit == 0 {
            (low, high, 0u64)
        } else {
            (
                low << bit,
                (high << bit) | (low >> (64 - bit)),
                high >> (64 - bit),
            )
        };
        let need = word + 4;
        if self.limbs.len() < need {
            self.limbs.resize(need, 0);
        }
        let mut carry = 0u128;
        for (offset, part) in [lo, mid, hi].into_iter().enumerate() {
            let sum = self.limbs[word + offset] as u128 + part as u128 + carry;
            self.limbs[word + offset] = sum as u64;
            carry = sum >> 64;
        }
        let mut i = word + 3;
        while carry != 0 {
            if i >= self.limbs.len() {
                self.limbs.push(0);
            }
            let sum = self.limbs[i] as u128 + carry;
            self.limbs[i] = sum as u64;
            carry = sum >> 64;
            i += 1;
        }
    }
    fn into_big(self) -> BigUint {
        let mut digits = Vec::with_capacity(self.limbs.len() * 2);
        for limb in self.limbs {
            digits.push(limb as u32);
            digits.push((limb >> 32) as u32);
        }
        BigUint::new(digits)
    }
}

/// Sums of a data set: `Σx = A·2^E`, `Σx² = B·2^(2E)`.
struct Sums {
    /// `A`.
    sum: BigInt,
    /// `B`.
    sum_of_squares: BigUint,
    /// `E`.
    exponent: i32,
    /// How many values.
    count: u64,
}

fn sums(xs: &[f64], want_squares: bool) -> Option<Sums> {
    if xs.is_empty() || xs.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let e_min = xs
        .iter()
        .filter(|x| **x != 0.0)
        .map(|x| decompose(*x).2)
        .min()
        .unwrap_or(0);
    let mut pos = Acc::new();
    let mut neg = Acc::new();
    let mut sq = Acc::new();
    for &x in xs {
        if x == 0.0 {
            continue;
        }
        let (is_neg, mantissa, exponent) = decompose(x);
        let shift = (exponent - e_min) as u32;
        if is_neg {
            neg.add(mantissa as u128, shift);
        } else {
            pos.add(mantissa as u128, shift);
        }
        if want_squares {
            sq.add((mantissa as u128) * (mantissa as u128), 2 * shift);
        }
    }
    let sum = BigInt::from(pos.into_big()) - BigInt::from(neg.into_big());
    Some(Sums {
        sum,
        sum_of_squares: sq.into_big(),
        exponent: e_min,
        count: xs.len() as u64,
    })
}

/// The double nearest to `q × 2^exp`, where `q` is an integer and `sticky`
/// says whether the true value is strictly above `q × 2^exp` (by less than
/// one unit). Ties go to even.
fn round_to_f64(quotient: &BigUint, sticky: bool, exp: i64, neg: bool) -> f64 {
    let bits = quotient.bits() as i64;
    if bits == 0 {
        // Only possible when sticky is set, and then the value is tiny but
        // the callers always scale enough bits for that not to happen.
        return if neg { -0.0 } else { 0.0 };
    }
    // The value is in [2^(bits-1+exp), 2^(bits+exp)).
    let top = bits - 1 + exp; // binary exponent of the leading bit
                              // Number of significant bits available for this exponent.
    let prec: i64 = if top >= -1022 { 53 } else { 53 - (-1022 - top) };
    if prec <= 0 {
        // Far below the smallest subnormal: round to zero or the smallest.
        let value = if prec == 0 && (bits > 1 || sticky) {
            f64::from_bits(1)
        } else {
            0.0
        };
        return if neg { -value } else { value };
    }
    let drop = bits - prec;
    let (mut mant, round_up) = if drop > 0 {
        let dropped = drop as u64;
        let kept: BigUint = quotient >> dropped;
        let rem: BigUint = quotient - (&kept << dropped);
        let half: BigUint = BigUint::from(1u8) << (dropped - 1);
        let up = if rem > half {
            true
        } else if rem < half {
            false
        } else if sticky {
            true
        } else {
            // exact tie: to even
            kept.bit(0)
        };
        (kept.iter_u64_digits().next().unwrap_or(0), up)
    } else {
        let shifted: BigUint = quotient << ((-drop) as u64);
        (shifted.iter_u64_digits().next().unwrap_or(0), false)
    };
    let mut result_exp = exp + drop;
    if round_up {
        mant += 1;
        if mant == (1u64 << prec) {
            mant >>= 1;
            result_exp += 1;
        }
    }
    let value = (mant as f64) * pow2(result_exp);
    if neg {
        -value
    } else {
        value
    }
}

/// `2^e` as an f64 product that stays exact (two steps for tiny values).
fn pow2(exponent: i64) -> f64 {
    if exponent > 1023 {
        return f64::INFINITY;
    }
    if exponent >= -1022 {
        return f64::from_bits(((exponent + 1023) as u64) << 52);
    }
    // split to avoid underflow of the factor itself
    let half = exponent / 2;
    pow2(half) * pow2(exponent - half)
}

/// `statistics.mean(xs)`: exact, rounded once. `NaN` for an empty list.
pub fn mean(xs: &[f64]) -> f64 {
    let Some(totals) = sums(xs, false) else {
        return if xs.is_empty() {
            f64::NAN
        } else {
            naive_mean(xs)
        };
    };
    let neg = totals.sum.sign() == Sign::Minus;
    let magnitude = totals.sum.magnitude().clone();
    if magnitude.bits() == 0 {
        return 0.0;
    }
    // q = floor(a · 2^k / n) with enough bits; value = q · 2^(E − k).
    let n = BigUint::from(totals.count);
    let shift = (66 + n.bits() as i64 - magnitude.bits() as i64).max(0) as u64;
    let numerator: BigUint = &magnitude << shift;
    let quotient = &numerator / &n;
    let sticky = &quotient * &n != numerator;
    round_to_f64(
        &quotient,
        sticky,
        totals.exponent as i64 - shift as i64,
        neg,
    )
}

/// `statistics.pstdev(xs)`: exact population variance, correctly rounded
/// square root. `0.0` for one element, `NaN` for none.
pub fn pstdev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return if xs.is_empty() { f64::NAN } else { 0.0 };
    }
    let Some(totals) = sums(xs, true) else {
        return naive_pstdev(xs);
    };
    // var = (n·B − A²) / n² · 2^(2E); std = sqrt(n·B − A²) / n · 2^E.
    let n = BigUint::from(totals.count);
    let a2 = totals.sum.magnitude() * totals.sum.magnitude();
    let nb = &n * &totals.sum_of_squares;
    if nb <= a2 {
        return 0.0;
    }
    let numerator = nb - a2;
    let n2 = &n * &n;
    // F = floor(num · 2^(2k) / n²); r = isqrt(F) has ≥ 64 significant bits.
    let target_bits = 140i64;
    let cur = numerator.bits() as i64 - n2.bits() as i64;
    let shift = ((target_bits - cur) / 2).max(0) as u64;
    let scaled: BigUint = &numerator << (2 * shift);
    let quotient = &scaled / &n2;
    let exact_div = &quotient * &n2 == scaled;
    let root = quotient.sqrt();
    let sticky = !exact_div || &root * &root != quotient;
    round_to_f64(&root, sticky, totals.exponent as i64 - shift as i64, false)
}

fn naive_mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn naive_pstdev(xs: &[f64]) -> f64 {
    let avg = naive_mean(xs);
    (xs.iter().map(|x| (x - avg) * (x - avg)).sum::<f64>() / xs.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_mean() {
        let m = mean(&[11.73, 19.05, 15.73, 98.91]);
        assert_eq!(crate::analysis::num::py_round(m, 2), 36.35);
        assert_eq!(m, 36.355); // the double nearest 36.35499999999999687…
    }

    #[test]
    fn simple_values() {
        assert_eq!(mean(&[1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(mean(&[0.1, 0.2, 0.3]), 0.2);
        assert_eq!(mean(&[-1.0, 1.0]), 0.0);
        assert_eq!(mean(&[-3.0, -1.0]), -2.0);
        assert_eq!(mean(&[1e300, 1e300]), 1e300);
        assert_eq!(mean(&[5e-324, 5e-324]), 5e-324);
        assert_eq!(pstdev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]), 2.0);
        assert_eq!(pstdev(&[1.0, 1.0]), 0.0);
        assert_eq!(pstdev(&[1.0]), 0.0);
        // statistics.pstdev([1, 2]) == 0.5
        assert_eq!(pstdev(&[1.0, 2.0]), 0.5);
        // statistics.pstdev([1.0, 2.0, 3.0]) == 0.816496580927726
        assert_eq!(pstdev(&[1.0, 2.0, 3.0]), 0.816496580927726);
        // statistics.pstdev([0.1, 0.2, 0.3]) == 0.0816496580927726
        assert_eq!(pstdev(&[0.1, 0.2, 0.3]), 0.0816496580927726);
    }

    #[test]
    fn accumulator_shifts() {
        let mut acc = Acc::new();
        for shift in 0..300u32 {
            acc.add(u128::MAX >> 1, shift);
        }
        let big = acc.into_big();
        let mut want = BigUint::from(0u8);
        for shift in 0..300u32 {
            want += BigUint::from(u128::MAX >> 1) << shift;
        }
        assert_eq!(big, want);
    }
}

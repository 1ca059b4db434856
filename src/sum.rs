//! [`CompensatedSum`]: the host's sum over rows in f64, the CPU engine's, the reference
//! path's and the Python package's alike.

/// A streaming Neumaier (compensated) sum in f64, added to in a fixed order; NaN and
/// infinities propagate as in a plain sum.
#[derive(Clone, Copy, Debug, Default)]
pub struct CompensatedSum {
    s: f64,
    c: f64,
}

impl CompensatedSum {
    /// Adds `x`.
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() || !self.s.is_finite() {
            self.s += x;
            return;
        }
        let t = self.s + x;
        self.c += if self.s.abs() >= x.abs() { (self.s - t) + x } else { (x - t) + self.s };
        self.s = t;
    }

    /// The sum so far.
    pub fn value(&self) -> f64 {
        if self.s.is_finite() { self.s + self.c } else { self.s }
    }
}

#[cfg(test)]
mod tests {
    use super::CompensatedSum;

    #[test]
    fn compensation_keeps_what_a_plain_sum_loses() {
        let mut s = CompensatedSum::default();
        for x in [1e16, 1.0, -1e16, 1.0] {
            s.add(x);
        }
        assert_eq!(s.value(), 2.0);
        s.add(f64::INFINITY);
        assert_eq!(s.value(), f64::INFINITY);
        s.add(f64::NEG_INFINITY);
        assert!(s.value().is_nan());
    }
}

//! Example aggregates: `STREAM_MEAN(x)` and `STREAM_VARIANCE(x)` (sample variance; NULL below two
//! values) keep a running count, mean and sum of squared deviations with Welford's algorithm
//! (numerically stable), merge states with Chan's formula, and retract values, so they aggregate
//! tables too.

use eddy_udf::prelude::*;

/// Count, mean and sum of squared deviations.
#[derive(Debug, Default, Clone, Copy)]
pub struct Welford {
    n: i64,
    mean: f64,
    m2: f64,
}

impl Welford {
    fn add(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    fn remove(&mut self, x: f64) {
        if self.n <= 1 {
            *self = Welford::default();
            return;
        }
        let delta = x - self.mean;
        self.mean = (self.mean * self.n as f64 - x) / (self.n - 1) as f64;
        self.n -= 1;
        self.m2 -= delta * (x - self.mean);
    }

    fn combine(&mut self, (n, mean, m2): (i64, f64, f64)) {
        if n == 0 {
            return;
        }
        let total = self.n + n;
        let delta = mean - self.mean;
        self.m2 += m2 + delta * delta * (self.n as f64) * (n as f64) / total as f64;
        self.mean += delta * n as f64 / total as f64;
        self.n = total;
    }

    fn parts(&self) -> (i64, f64, f64) {
        (self.n, self.mean, self.m2)
    }
}

/// An aggregate over a [`Welford`] state whose result is `result`'s expression of it.
macro_rules! moments {
    ($(#[$doc:meta])* $ty:ident $name:tt, |$w:ident| $result:expr) => {
        $(#[$doc])*
        #[derive(Default)]
        pub struct $ty(Welford);

        #[udaf(name = $name)]
        impl $ty {
            fn update(&mut self, x: f64) {
                self.0.add(x);
            }
            fn retract(&mut self, x: f64) {
                self.0.remove(x);
            }
            fn merge(&mut self, state: (i64, f64, f64)) {
                self.0.combine(state);
            }
            fn state(&self) -> (i64, f64, f64) {
                self.0.parts()
            }
            fn result(&self) -> Option<f64> {
                let $w = &self.0;
                $result
            }
        }
    };
}

moments!(
    /// The mean of the values seen (NULLs skipped).
    StreamMean "stream_mean", |w| (w.n > 0).then_some(w.mean)
);

moments!(
    /// The sample variance of the values seen (NULLs skipped; NULL below two values).
    StreamVariance "stream_variance", |w| (w.n > 1).then(|| w.m2 / (w.n - 1) as f64)
);

eddy_udf::plugin!(StreamMean, StreamVariance);

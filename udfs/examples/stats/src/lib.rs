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

/// The mean of the values seen (NULLs skipped).
#[derive(Default)]
pub struct StreamMean(Welford);

#[udaf(name = "stream_mean")]
impl StreamMean {
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
        (self.0.n > 0).then_some(self.0.mean)
    }
}

/// The sample variance of the values seen (NULLs skipped; NULL below two values).
#[derive(Default)]
pub struct StreamVariance(Welford);

#[udaf(name = "stream_variance")]
impl StreamVariance {
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
        (self.0.n > 1).then(|| self.0.m2 / (self.0.n - 1) as f64)
    }
}

eddy_udf::plugin!(StreamMean, StreamVariance);

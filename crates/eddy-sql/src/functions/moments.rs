//! ksqlDB's statistical aggregates: STDDEV_SAMPLE, STDDEV_SAMP (which in ksqlDB answers the sample
//! *variance*; Eddy keeps that for compatibility), STDDEV_POP and CORRELATION, computed with running
//! moments that stay accurate on large values, can be merged (sessions) and, for the deviations,
//! retracted (aggregation over a table). The sum of squared deviations is updated from the running
//! sum, `(n·x − Σx)² / (n(n−1))`, the form ksqlDB uses, so results agree with it to the last digit.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    StddevSample,
    /// ksqlDB's STDDEV_SAMP: the sample variance.
    VarianceSample,
    StddevPopulation,
    Correlation,
}

/// The aggregate functions of this module, ready to register.
pub fn all() -> Vec<AggregateUDF> {
    let make = |kind, name: &str, aliases: &[&'static str]| {
        AggregateUDF::from(Moments {
            kind,
            name: name.to_string(),
            signature: Signature::variadic_any(Volatility::Immutable),
        })
        .with_aliases(aliases.iter().copied())
    };
    vec![
        make(Kind::StddevSample, "stddev_sample", &[]),
        make(Kind::VarianceSample, "stddev_samp", &[]),
        make(Kind::StddevPopulation, "stddev_pop", &[]),
        make(Kind::Correlation, "correlation", &[]),
    ]
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Moments {
    kind: Kind,
    name: String,
    signature: Signature,
}

fn numeric(t: &DataType) -> bool {
    t.is_numeric()
}

impl AggregateUDFImpl for Moments {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let arity = if self.kind == Kind::Correlation { 2 } else { 1 };
        if args.len() != arity || !args.iter().all(numeric) {
            return Err(super::refuse(&self.name.to_ascii_lowercase(), args));
        }
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<Arc<Field>>> {
        Ok(["n", "sum_x", "mean_y", "m2_x", "m2_y", "c_xy"]
            .iter()
            .map(|part| {
                Arc::new(Field::new(
                    format!("{}[{part}]", args.name),
                    DataType::Float64,
                    true,
                ))
            })
            .collect())
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(MomentsAccumulator {
            kind: self.kind,
            m: Running::default(),
        }))
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if self.kind == Kind::Correlation {
            return exec_err!(
                "CORRELATION cannot take values back out, so it cannot aggregate a table"
            );
        }
        self.accumulator(args)
    }
}

/// Count, sum of x, mean of y, sums of squared deviations and the co-moment of the values seen.
#[derive(Debug, Default, Clone, Copy)]
struct Running {
    n: f64,
    sum_x: f64,
    mean_y: f64,
    m2_x: f64,
    m2_y: f64,
    c_xy: f64,
}

impl Running {
    fn mean_x(&self) -> f64 {
        if self.n == 0.0 {
            0.0
        } else {
            self.sum_x / self.n
        }
    }

    /// The change in the sum of squared deviations of x when `x` joins (or leaves) a set of `n`
    /// values summing to `sum`, both counted with `x`.
    fn deviation(x: f64, n: f64, sum: f64) -> f64 {
        let d = x * n - sum;
        d * d / (n * (n - 1.0))
    }

    fn add(&mut self, x: f64, y: f64) {
        let dx = x - self.mean_x();
        self.n += 1.0;
        self.sum_x += x;
        if self.n > 1.0 {
            self.m2_x += Running::deviation(x, self.n, self.sum_x);
        }
        let dy = y - self.mean_y;
        self.mean_y += dy / self.n;
        self.m2_y += dy * (y - self.mean_y);
        self.c_xy += dx * (y - self.mean_y);
    }

    /// Takes one value back out (the deviations only use x).
    fn remove(&mut self, x: f64) {
        if self.n <= 1.0 {
            *self = Running::default();
            return;
        }
        self.m2_x -= Running::deviation(x, self.n, self.sum_x);
        self.sum_x -= x;
        self.n -= 1.0;
    }

    /// Combines two sets of moments (Chan et al.'s parallel formulas).
    fn merge(&mut self, o: &Running) {
        if o.n == 0.0 {
            return;
        }
        let n = self.n + o.n;
        let dx = o.mean_x() - self.mean_x();
        let dy = o.mean_y - self.mean_y;
        self.m2_x += o.m2_x + dx * dx * self.n * o.n / n;
        self.m2_y += o.m2_y + dy * dy * self.n * o.n / n;
        self.c_xy += o.c_xy + dx * dy * self.n * o.n / n;
        self.sum_x += o.sum_x;
        self.mean_y += dy * o.n / n;
        self.n = n;
    }
}

#[derive(Debug)]
struct MomentsAccumulator {
    kind: Kind,
    m: Running,
}

fn doubles(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(a, &DataType::Float64)?)
}

impl Accumulator for MomentsAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let xs = doubles(&values[0])?;
        let xs = xs.as_primitive::<Float64Type>();
        let ys = match values.get(1) {
            Some(y) => Some(doubles(y)?),
            None => None,
        };
        let ys = ys.as_ref().map(|y| y.as_primitive::<Float64Type>());
        for i in 0..xs.len() {
            match ys {
                Some(ys) if xs.is_valid(i) && ys.is_valid(i) => {
                    self.m.add(xs.value(i), ys.value(i))
                }
                None if xs.is_valid(i) => self.m.add(xs.value(i), 0.0),
                _ => {}
            }
        }
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let xs = doubles(&values[0])?;
        let xs = xs.as_primitive::<Float64Type>();
        for x in xs.iter().flatten() {
            self.m.remove(x);
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        self.kind != Kind::Correlation
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let m = &self.m;
        let value = match self.kind {
            _ if m.n == 0.0 => None,
            // One value deviates by nothing: ksqlDB answers 0.0 for a sample of one.
            Kind::StddevSample | Kind::VarianceSample if m.n < 2.0 => Some(0.0),
            Kind::StddevSample => Some((m.m2_x / (m.n - 1.0)).max(0.0).sqrt()),
            Kind::VarianceSample => Some((m.m2_x / (m.n - 1.0)).max(0.0)),
            Kind::StddevPopulation => Some((m.m2_x / m.n).max(0.0).sqrt()),
            Kind::Correlation => {
                let denominator = (m.m2_x * m.m2_y).sqrt();
                (denominator > 0.0).then(|| m.c_xy / denominator)
            }
        };
        Ok(ScalarValue::Float64(value))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let m = self.m;
        Ok([m.n, m.sum_x, m.mean_y, m.m2_x, m.m2_y, m.c_xy]
            .into_iter()
            .map(|v| ScalarValue::Float64(Some(v)))
            .collect())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let parts: Vec<_> = states
            .iter()
            .map(|s| s.as_primitive::<Float64Type>())
            .collect();
        for i in 0..parts[0].len() {
            let v = |p: usize| parts[p].value(i);
            self.m.merge(&Running {
                n: v(0),
                sum_x: v(1),
                mean_y: v(2),
                m2_x: v(3),
                m2_y: v(4),
                c_xy: v(5),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_add_remove_and_merge() {
        let mut a = Running::default();
        for x in [0.0, 10.0, 7.0, 6.0] {
            a.add(x, 0.0);
        }
        // Sample standard deviation of 0, 10, 7, 6.
        assert!(((a.m2_x / 3.0).sqrt() - 4.193248541803041).abs() < 1e-12);
        a.remove(6.0);
        assert!(((a.m2_x / 2.0).sqrt() - 5.131601439446884).abs() < 1e-12);
        let mut b = Running::default();
        b.add(6.0, 0.0);
        a.merge(&b);
        assert!(((a.m2_x / 3.0).sqrt() - 4.193248541803041).abs() < 1e-12);
    }
}

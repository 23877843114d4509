//! What a context holds between flushes: a count, a gauge, a set's members,
//! a histogram's samples or a distribution's sketch.

use crate::receivers::dogstatsd::parser::MetricKind;
use crate::telemetry::sketch::Sketch;
use crate::telemetry::DogSketch;

#[derive(Debug)]
pub(super) enum Value {
    Count(f64),
    Gauge(f64),
    /// Hashes of the members: distinct count is all a set reports.
    Set(hashbrown::HashSet<u64, foldhash::fast::FixedState>),
    Histogram(Histogram),
    Distribution(Box<DogSketch>),
}

impl Value {
    /// What the value holds on the heap: a set's table, a histogram's
    /// samples or sketch, a distribution's sketch. Constant time, so it can
    /// be asked at every sample of the kinds that grow.
    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            Value::Count(_) | Value::Gauge(_) => 0,
            // A hashbrown slot: the member and one control byte.
            Value::Set(members) => members.capacity() * (size_of::<u64>() + 1),
            Value::Histogram(hist) => {
                hist.samples.capacity() * size_of::<(f64, f64)>()
                    + hist
                        .sketch
                        .as_ref()
                        .map_or(0, |s| size_of::<Sketch>() + s.heap_bytes())
            }
            Value::Distribution(sketch) => size_of::<DogSketch>() + sketch.heap_bytes(),
        }
    }

    /// Whether a sample can make the value hold more bytes.
    pub(super) fn grows(&self) -> bool {
        matches!(
            self,
            Value::Set(_) | Value::Histogram(_) | Value::Distribution(_)
        )
    }

    pub(super) fn new(kind: MetricKind) -> Self {
        match kind {
            MetricKind::Count => Value::Count(0.0),
            MetricKind::Gauge => Value::Gauge(0.0),
            MetricKind::Set => Value::Set(Default::default()),
            MetricKind::Timer | MetricKind::Histogram => Value::Histogram(Histogram::default()),
            MetricKind::Distribution => Value::Distribution(Box::default()),
        }
    }
}

/// The samples of a histogram or timer context: exact up to a cap, then a sketch.
#[derive(Debug, Default)]
pub(super) struct Histogram {
    /// `(value, weight)`; emptied into `sketch` when it reaches the cap.
    samples: Vec<(f64, f64)>,
    sketch: Option<Box<Sketch>>,
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
}

/// Exact totals of a histogram.
pub(super) struct HistogramStats {
    pub(super) count: f64,
    pub(super) sum: f64,
    pub(super) min: f64,
    pub(super) max: f64,
}

impl Histogram {
    pub(super) fn add(&mut self, value: f64, weight: f64, max_samples: usize) {
        if self.count == 0.0 {
            (self.min, self.max) = (value, value);
        }
        self.count += weight;
        self.sum += value * weight;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if let Some(sketch) = &mut self.sketch {
            sketch.add(value, weight);
        } else if self.samples.len() < max_samples {
            self.samples.push((value, weight));
        } else {
            let mut sketch = Box::new(Sketch::new());
            for (v, w) in self.samples.drain(..) {
                sketch.add(v, w);
            }
            sketch.add(value, weight);
            self.samples = Vec::new();
            self.sketch = Some(sketch);
        }
    }

    pub(super) fn stats(&self) -> Option<HistogramStats> {
        (self.count > 0.0).then_some(HistogramStats {
            count: self.count,
            sum: self.sum,
            min: self.min,
            max: self.max,
        })
    }

    /// Nearest rank over the weighted samples (sorts them on first use).
    pub(super) fn quantile(&mut self, q: f64) -> f64 {
        if let Some(sketch) = &self.sketch {
            return sketch.quantile(q).unwrap_or(self.max);
        }
        if !self.samples.is_sorted_by(|a, b| a.0 <= b.0) {
            self.samples.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        }
        let target = q * self.count;
        let mut seen = 0.0;
        for (value, weight) in &self.samples {
            seen += weight;
            // A relative epsilon so 0.95 × 100 reaching 95 is not lost to rounding.
            if seen >= target * (1.0 - 1e-12) {
                return *value;
            }
        }
        self.max
    }
}

//! A DDSketch: quantiles with a bounded relative error in bounded memory.
//!
//! Values are counted in logarithmic bins: bin `k` holds the values in
//! `(γ^(k-1), γ^k]` with `γ = (1+α)/(1-α)`, and reports `2γ^k/(γ+1)`, which
//! is within `α` (1 %) of every value in the bin. A bin count is a weight
//! (an `f64`), so DogStatsD sample rates weigh in exactly. Each sign has a
//! dense store of at most [`MAX_BINS`] bins; past that, the bins nearest zero
//! are merged, as DDSketch's "collapsing lowest" store does, so high
//! quantiles stay exact to `α` and only values near zero lose accuracy.
//! With 1 % accuracy 2048 bins span 2048 × ln(γ) ≈ 41 natural-log units:
//! from a nanosecond to 10⁹ years without collapsing.
//!
//! Count, sum, min and max are kept exactly beside the bins.

/// Relative accuracy of quantiles (1 %), as the Datadog agent's sketches.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Bins per sign; bounds a sketch to 2 × 2048 × 8 bytes = 32 KiB.
pub const MAX_BINS: usize = 2048;

/// Values with a smaller magnitude are counted as zero.
const MIN_INDEXABLE: f64 = 1e-9;

/// `1 / ln(γ)`, γ = (1+α)/(1-α).
fn multiplier() -> f64 {
    let gamma = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);
    1.0 / gamma.ln()
}

/// A mergeable quantile sketch with ~1 % relative accuracy.
#[derive(Clone, Debug)]
pub struct Sketch {
    positive: Store,
    negative: Store,
    zero: f64,
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    /// Cached `1/ln γ`, so `add` does one `ln` and one multiply.
    multiplier: f64,
}

impl Default for Sketch {
    fn default() -> Self {
        Self::new()
    }
}

impl Sketch {
    /// An empty sketch.
    pub fn new() -> Self {
        Self {
            positive: Store::default(),
            negative: Store::default(),
            zero: 0.0,
            count: 0.0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            multiplier: multiplier(),
        }
    }

    /// Adds `value` with `weight` (1 / sample rate). Non-finite values and
    /// non-positive weights are ignored: they would poison every estimate.
    pub fn add(&mut self, value: f64, weight: f64) {
        if !value.is_finite() || weight <= 0.0 || !weight.is_finite() {
            return;
        }
        self.count += weight;
        self.sum += value * weight;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if value > MIN_INDEXABLE {
            self.positive.add(self.key(value), weight);
        } else if value < -MIN_INDEXABLE {
            self.negative.add(self.key(-value), weight);
        } else {
            self.zero += weight;
        }
    }

    fn key(&self, magnitude: f64) -> i32 {
        // |ln(v)| ≤ 710 for finite v, so the key fits an i32 with room.
        (magnitude.ln() * self.multiplier).ceil() as i32
    }

    fn value_of(&self, key: i32) -> f64 {
        let gamma_ln = 1.0 / self.multiplier;
        // The midpoint (in relative terms) of (γ^(k-1), γ^k].
        2.0 * (f64::from(key) * gamma_ln).exp() / (1.0 + gamma_ln.exp())
    }

    /// Total weight added.
    pub fn count(&self) -> f64 {
        self.count
    }

    /// Weighted sum of the values.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Smallest value, exact; `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0.0).then_some(self.min)
    }

    /// Largest value, exact; `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0.0).then_some(self.max)
    }

    /// Weighted mean; `None` when empty.
    pub fn avg(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The `q`-quantile (0 ≤ q ≤ 1), within 1 % of a value of the data at
    /// that rank; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        // DDSketch's rank: the 0-based position among the weighted values.
        let rank = q * (self.count - 1.0).max(0.0);
        let mut seen = 0.0;
        // Negative values, most negative (largest magnitude key) first.
        for (key, weight) in self.negative.iter().rev() {
            seen += weight;
            if seen > rank {
                return Some(self.clamp(-self.value_of(key)));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(self.clamp(0.0));
        }
        for (key, weight) in self.positive.iter() {
            seen += weight;
            if seen > rank {
                return Some(self.clamp(self.value_of(key)));
            }
        }
        // Rounding in the running sum can leave the last bin a hair short.
        Some(self.max)
    }

    /// Estimates never leave the exact range of the data.
    fn clamp(&self, value: f64) -> f64 {
        value.clamp(self.min, self.max)
    }

    /// Adds every value of `other` into `self`.
    pub fn merge(&mut self, other: &Sketch) {
        if other.count <= 0.0 {
            return;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.zero += other.zero;
        for (key, weight) in other.positive.iter() {
            self.positive.add(key, weight);
        }
        for (key, weight) in other.negative.iter() {
            self.negative.add(key, weight);
        }
    }

    /// Bytes held on the heap, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        (self.positive.counts.capacity() + self.negative.counts.capacity())
            * std::mem::size_of::<f64>()
    }
}

/// Dense bin counts for consecutive keys starting at `offset`.
#[derive(Clone, Debug, Default)]
struct Store {
    counts: Vec<f64>,
    offset: i32,
}

impl Store {
    fn add(&mut self, key: i32, weight: f64) {
        if self.counts.is_empty() {
            self.offset = key;
            self.counts.push(weight);
            return;
        }
        let max_bins = MAX_BINS as i64;
        let lo = i64::from(self.offset);
        let hi = lo + self.counts.len() as i64 - 1;
        let mut key = i64::from(key);
        if key < lo {
            // Grow downwards, but never past MAX_BINS: lower keys collapse
            // into the lowest bin kept.
            key = key.max(hi - max_bins + 1);
            let grow = (lo - key) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0.0, grow));
            self.offset = key as i32;
        } else if key > hi {
            let new_lo = key - max_bins + 1;
            if new_lo > lo {
                // Collapse the lowest bins into the new lowest one.
                let drop = ((new_lo - lo) as usize).min(self.counts.len());
                let collapsed: f64 = self.counts.drain(..drop).sum();
                self.offset = new_lo as i32;
                if self.counts.is_empty() {
                    self.counts.push(0.0);
                }
                if let Some(first) = self.counts.first_mut() {
                    *first += collapsed;
                }
            }
            let len = (key - i64::from(self.offset) + 1) as usize;
            self.counts.resize(len, 0.0);
        }
        if let Some(count) = self.counts.get_mut((key - i64::from(self.offset)) as usize) {
            *count += weight;
        }
    }

    /// `(key, weight)` of the non-empty bins, lowest key first.
    fn iter(&self) -> impl DoubleEndedIterator<Item = (i32, f64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, w)| **w > 0.0)
            .map(|(i, w)| (self.offset + i as i32, *w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact `q`-quantile by DDSketch's rank convention.
    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    fn assert_close(got: f64, want: f64, what: &str) {
        let err = if want == 0.0 {
            got.abs()
        } else {
            ((got - want) / want).abs()
        };
        assert!(
            err <= RELATIVE_ACCURACY + 1e-9,
            "{what}: got {got}, want {want} (error {err})"
        );
    }

    #[test]
    fn quantiles_within_one_percent() {
        let datasets: Vec<(&str, Vec<f64>)> = vec![
            ("1..=1000", (1..=1000).map(f64::from).collect()),
            ("exponential", (0..2000).map(|i| 1.01f64.powi(i)).collect()),
            ("tiny", (1..=500).map(|i| f64::from(i) * 1e-6).collect()),
            (
                "negative and positive",
                (-500..=500).map(f64::from).collect(),
            ),
            ("constant", vec![42.0; 100]),
        ];
        for (name, mut data) in datasets {
            let mut sketch = Sketch::new();
            for v in &data {
                sketch.add(*v, 1.0);
            }
            data.sort_by(f64::total_cmp);
            for q in [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0] {
                assert_close(
                    sketch.quantile(q).unwrap(),
                    exact(&data, q),
                    &format!("{name} q={q}"),
                );
            }
            assert_eq!(sketch.count(), data.len() as f64);
            assert_eq!(sketch.min(), data.first().copied());
            assert_eq!(sketch.max(), data.last().copied());
        }
    }

    #[test]
    fn weights_count_as_repeated_values() {
        let mut weighted = Sketch::new();
        weighted.add(10.0, 9.0);
        weighted.add(1000.0, 1.0);
        assert_eq!(weighted.count(), 10.0);
        assert_eq!(weighted.sum(), 1090.0);
        assert_close(weighted.quantile(0.5).unwrap(), 10.0, "median");
        assert_close(weighted.quantile(1.0).unwrap(), 1000.0, "max");
    }

    #[test]
    fn ignores_what_would_poison_it() {
        let mut sketch = Sketch::new();
        sketch.add(f64::NAN, 1.0);
        sketch.add(f64::INFINITY, 1.0);
        sketch.add(1.0, 0.0);
        sketch.add(1.0, -1.0);
        assert_eq!(sketch.count(), 0.0);
        assert_eq!(sketch.quantile(0.5), None);
        assert_eq!(sketch.avg(), None);
    }

    #[test]
    fn wide_ranges_collapse_the_lowest_bins() {
        let mut sketch = Sketch::new();
        for exp in -300..=300 {
            sketch.add(10f64.powi(exp), 1.0);
        }
        assert!(sketch.positive.counts.len() <= MAX_BINS);
        assert_close(sketch.quantile(1.0).unwrap(), 1e300, "max");
        assert_close(sketch.quantile(0.99).unwrap(), 1e294, "p99");
        // Collapsing in the other direction: a huge value first, then tiny ones.
        let mut sketch = Sketch::new();
        sketch.add(1e300, 1.0);
        sketch.add(1e-8, 1.0);
        assert!(sketch.positive.counts.len() <= MAX_BINS);
        assert_eq!(sketch.count(), 2.0);
    }

    #[test]
    fn merge_equals_adding_everything() {
        let (mut a, mut b, mut all) = (Sketch::new(), Sketch::new(), Sketch::new());
        for i in 1..=100 {
            let v = f64::from(i);
            if i % 2 == 0 {
                a.add(v, 1.0)
            } else {
                b.add(v, 1.0)
            }
            all.add(v, 1.0);
        }
        a.merge(&b);
        for q in [0.1, 0.5, 0.99] {
            assert_eq!(a.quantile(q), all.quantile(q));
        }
        assert_eq!((a.count(), a.sum()), (all.count(), all.sum()));
    }
}

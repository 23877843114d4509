//! The Datadog Agent's DDSketch: what a distribution is in Datadog.
//!
//! Datadog merges distributions from every host into one sketch per series,
//! so the sidecar must send the sketch the Agent would have sent, bin for bin
//! (datadog-agent `pkg/quantile`; PROTOCOLS.md §5). That is not the paper's
//! DDSketch (nor [`super::sketch`], which histograms use): the Agent's
//! parameters are fixed.
//!
//! | parameter | value |
//! | --- | --- |
//! | relative accuracy ε | [`RELATIVE_ACCURACY`] = 1/128 |
//! | γ | [`GAMMA`] = 1 + 2ε = 1.015625 |
//! | key of `v > 0` | `round_half_even(ln v / ln γ) + 1338`, clamped to `1..=i16::MAX` ([`key`]) |
//! | key of `v < 0` | `-key(-v)` |
//! | key of `\|v\| < γ^-1337 ≈ 9.94e-10` | 0 |
//! | bins on the wire | `(int16 key, uint16 count)`, at most [`BIN_LIMIT`]; a larger count spans several bins of one key |
//!
//! Past the bin limit the lowest bins are collapsed into the lowest bin kept,
//! as the Agent does, so high quantiles keep their accuracy. Below 4096
//! distinct keys in a bucket the bins are the Agent's exactly; past it the
//! Agent trims after each batch of buffered values and this sketch after
//! each new key, so which low bins fold where can differ (counts, sum, min,
//! max and the high bins do not).
//!
//! Keys are rounded, so key `k` stands for `γ^(k-1338)` and every value in
//! its bin is within `√γ - 1 ≈ 0.778 %` of that, inside the 1/128 bound.
//!
//! Here the bins are kept as one `u64` count per distinct key (sorted); the
//! Agent's `u16` splitting and trimming happen in [`DogSketch::bins`], when
//! the sketch is encoded. Count, sum, min and max are exact beside them.

/// Relative accuracy of the Agent's sketches (ε).
pub const RELATIVE_ACCURACY: f64 = 1.0 / 128.0;
/// γ = 1 + 2ε.
pub const GAMMA: f64 = 1.0 + 2.0 * RELATIVE_ACCURACY;
/// The smallest value the Agent's config indexes (its `minValue`).
pub const MIN_VALUE: f64 = 1e-9;
/// Most bins a sketch sends.
pub const BIN_LIMIT: usize = 4096;
/// The key of 1.0: `-floor(ln(MIN_VALUE) / ln γ) + 1`.
pub const KEY_BIAS: i32 = 1338;
/// Largest count of one bin on the wire.
pub const MAX_BIN_COUNT: u64 = u16::MAX as u64;

/// The quantiles sinks without sketches report for a distribution (Prometheus
/// summaries, jsonl, OTLP has the buckets): `(q, name)`. Datadog's default
/// percentiles of distributions, without p75, which Prometheus' own summaries
/// rarely carry.
pub const SUMMARY_QUANTILES: [(f64, &str); 4] =
    [(0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99")];

/// `ln γ`, as the Agent computes it (`log1p(2ε)`).
fn gamma_ln() -> f64 {
    (2.0 * RELATIVE_ACCURACY).ln_1p()
}

/// The smallest magnitude with a key other than 0: `γ^(1 - KEY_BIAS)`.
fn norm_min() -> f64 {
    GAMMA.powi(1 - KEY_BIAS)
}

/// The Agent's key of `v`. NaN has no key (callers drop it first); ±∞ take the largest key.
pub fn key(v: f64) -> i16 {
    if v < 0.0 {
        return -key(-v);
    }
    if v.is_nan() || v < norm_min() {
        return 0;
    }
    // |ln v / ln γ| ≤ 710 / 0.0155 < 2^16, so the i32 holds it.
    let rounded = (v.ln() / gamma_ln()).round_ties_even() as i32;
    rounded
        .saturating_add(KEY_BIAS)
        .clamp(1, i32::from(i16::MAX)) as i16
}

/// The value a key stands for: `γ^(k - KEY_BIAS)`, signed; 0 for key 0.
pub fn value(k: i16) -> f64 {
    match k {
        0 => 0.0,
        k if k < 0 => -value(-k),
        i16::MAX => f64::INFINITY,
        k => GAMMA.powi(i32::from(k) - KEY_BIAS),
    }
}

/// A distribution's values in one bucket, as the Agent sketches them.
#[derive(Clone, Debug, PartialEq)]
pub struct DogSketch {
    /// `(key, count)` per distinct key, sorted by key; at most [`BIN_LIMIT`] entries.
    bins: Vec<(i16, u64)>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for DogSketch {
    fn default() -> Self {
        Self::new()
    }
}

impl DogSketch {
    /// An empty sketch.
    pub fn new() -> Self {
        Self {
            bins: Vec::new(),
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Adds `value` `n` times. Non-finite values are dropped: they would
    /// poison sum and avg.
    pub fn insert(&mut self, value: f64, n: u64) {
        self.add(value, n, n as f64);
    }

    /// Adds `value` sampled at rate `1/weight`, as the Agent's
    /// `quantile.Agent.Insert(v, sampleRate)` does: the bins and the count
    /// take the weight truncated to a whole number (`uint(1/rate)`,
    /// `int64(n)`), the sum takes it whole (`v * n`). A weight below 1 (a
    /// rate outside (0, 1], which the parser refuses) counts once.
    pub fn insert_weighted(&mut self, value: f64, weight: f64) {
        let weight = if weight >= 1.0 { weight } else { 1.0 };
        // Saturating float-to-int conversion; weight >= 1, so n >= 1.
        self.add(value, weight as u64, weight);
    }

    /// `value` into `n` bins' counts and the count, `weight` times into the sum.
    fn add(&mut self, value: f64, n: u64, weight: f64) {
        if !value.is_finite() || n == 0 {
            return;
        }
        self.count = self.count.saturating_add(n);
        self.sum += value * weight;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        let k = key(value);
        match self.bins.binary_search_by_key(&k, |(key, _)| *key) {
            Ok(i) => {
                if let Some((_, count)) = self.bins.get_mut(i) {
                    *count = count.saturating_add(n);
                }
            }
            Err(i) => {
                self.bins.insert(i, (k, n));
                if self.bins.len() > BIN_LIMIT {
                    // Keeps memory bounded between encodings: the lowest key folds
                    // into the next, as the Agent's trimming would fold it.
                    let (_, lowest) = self.bins.remove(0);
                    if let Some((_, next)) = self.bins.first_mut() {
                        *next = next.saturating_add(lowest);
                    }
                }
            }
        }
    }

    /// Replaces sum, min and max with exact ones known beside the bins (an
    /// OTLP histogram's), as the Agent's OTLP translator does: the values
    /// inserted for its buckets stand for their buckets only. A min or max
    /// that is not finite is left as inserted.
    pub fn set_exact(&mut self, sum: Option<f64>, min: Option<f64>, max: Option<f64>) {
        if self.count == 0 {
            return;
        }
        if let Some(sum) = sum.filter(|s| s.is_finite()) {
            self.sum = sum;
        }
        if let Some(min) = min.filter(|m| m.is_finite()) {
            self.min = min;
        }
        if let Some(max) = max.filter(|m| m.is_finite()) {
            self.max = max;
        }
    }

    /// Values added (the Agent's `cnt`).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the values, exact.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Smallest value, exact; `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest value, exact; `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Mean; `None` when empty.
    pub fn avg(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// Distinct keys held (one per bin before `u16` splitting).
    pub fn distinct_keys(&self) -> usize {
        self.bins.len()
    }

    /// `(key, count)` of every distinct key, lowest first.
    pub fn key_counts(&self) -> &[(i16, u64)] {
        &self.bins
    }

    /// The bins as the Agent sends them (`k`, `n`): counts above 65535 split
    /// over several bins of the same key, and past [`BIN_LIMIT`] bins the
    /// lowest collapsed into the lowest bin kept.
    pub fn bins(&self) -> (Vec<i32>, Vec<u32>) {
        let mut split: Vec<(i16, u64)> = Vec::with_capacity(self.bins.len());
        for &(k, mut n) in &self.bins {
            while n > MAX_BIN_COUNT {
                split.push((k, MAX_BIN_COUNT));
                n -= MAX_BIN_COUNT;
            }
            split.push((k, n));
        }
        let split = trim_left(split);
        split
            .into_iter()
            .map(|(k, n)| (i32::from(k), n as u32))
            .unzip()
    }

    /// The `q`-quantile (0 ≤ q ≤ 1): the value of the bin holding rank
    /// `q × (count - 1)`, clamped to `[min, max]`; within 1/128 of the
    /// value at that rank. `None` when empty or `q` is out of range.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * (self.count - 1) as f64;
        let mut seen = 0u64;
        for &(k, n) in &self.bins {
            seen += n;
            if seen as f64 > rank {
                return Some(value(k).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Bytes held on the heap, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.bins.capacity() * std::mem::size_of::<(i16, u64)>()
    }
}

/// Collapses the lowest bins past [`BIN_LIMIT`] into the lowest bin kept, as
/// the Agent's `trimLeft` does: whenever the counts being folded pass 65535,
/// a full bin stays behind at the key where that happened, and what the
/// lowest kept bin cannot hold goes into extra bins of its key.
fn trim_left(bins: Vec<(i16, u64)>) -> Vec<(i16, u64)> {
    if bins.len() <= BIN_LIMIT {
        return bins;
    }
    let cut = bins.len() - BIN_LIMIT;
    let mut out = Vec::new();
    let mut missing = 0;
    for &(k, n) in &bins[..cut] {
        missing += n;
        if missing > MAX_BIN_COUNT {
            out.push((k, MAX_BIN_COUNT));
            missing -= MAX_BIN_COUNT;
        }
    }
    let mut kept = bins[cut..].to_vec();
    if let Some(first) = kept.first_mut() {
        let total = first.1 + missing;
        first.1 = total.min(MAX_BIN_COUNT);
        let mut spill = total - first.1;
        while spill > 0 {
            let n = spill.min(MAX_BIN_COUNT);
            out.push((first.0, n));
            spill -= n;
        }
    }
    out.extend(kept);
    // Keys ascending, as the Agent sends them; bins of one key stay together.
    out.sort_by_key(|(k, _)| *k);
    out
}

#[cfg(test)]
#[path = "dogsketch/tests.rs"]
mod tests;

//! What the aggregator is told: histogram aggregates and percentiles, name
//! mappings, and its bounds, with their defaults.

use dynoscope_crds::dyno::DogStatsdConfig;

/// Default of [`AggregatorConfig::max_bytes`]: 8 MiB, some 35 000 counter
/// contexts with three short tags (~240 bytes each).
pub const DEFAULT_MAX_BYTES: usize = 8 << 20;
/// Default of [`AggregatorConfig::max_samples`].
pub const DEFAULT_MAX_SAMPLES: usize = 4096;

/// Which aggregates histograms and timers report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistogramAggregates {
    /// `.max` (default on).
    pub max: bool,
    /// `.min` (default off).
    pub min: bool,
    /// `.median` (default on).
    pub median: bool,
    /// `.avg` (default on).
    pub avg: bool,
    /// `.sum` (default off).
    pub sum: bool,
    /// `.count`, as a rate (default on).
    pub count: bool,
}

impl Default for HistogramAggregates {
    fn default() -> Self {
        Self::from_names(
            dynoscope_crds::defaults::HISTOGRAM_AGGREGATES
                .iter()
                .copied(),
        )
    }
}

impl HistogramAggregates {
    /// From the config's names (`max`, `min`, `median`, `avg`, `sum`, `count`);
    /// unknown names were refused by validation and are ignored here.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = Self {
            max: false,
            min: false,
            median: false,
            avg: false,
            sum: false,
            count: false,
        };
        for name in names {
            match name {
                "max" => out.max = true,
                "min" => out.min = true,
                "median" => out.median = true,
                "avg" => out.avg = true,
                "sum" => out.sum = true,
                "count" => out.count = true,
                _ => {}
            }
        }
        out
    }
}

/// How the aggregator folds and bounds; built with [`AggregatorConfig::from_dogstatsd`].
#[derive(Clone, Debug, PartialEq)]
pub struct AggregatorConfig {
    /// Percentiles of histograms and timers, in (0, 1). Default: `[0.95]`.
    pub percentiles: Vec<f64>,
    /// Aggregates of histograms and timers. Default: max, median, avg, count.
    pub aggregates: HistogramAggregates,
    /// Name mappings, first match wins. Default: none.
    pub mappings: Vec<dynoscope_crds::observability::MappingSpec>,
    /// Bytes held across open buckets and pending `|T` points: each
    /// context's entry, name, tags, origin and samples. Default:
    /// [`DEFAULT_MAX_BYTES`].
    pub max_bytes: usize,
    /// Exact samples per histogram context before it turns into a sketch.
    /// Default: [`DEFAULT_MAX_SAMPLES`].
    pub max_samples: usize,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            percentiles: dynoscope_crds::defaults::HISTOGRAM_PERCENTILES.to_vec(),
            aggregates: HistogramAggregates::default(),
            mappings: Vec::new(),
            max_bytes: DEFAULT_MAX_BYTES,
            max_samples: DEFAULT_MAX_SAMPLES,
        }
    }
}

impl AggregatorConfig {
    /// The aggregator's part of a dyno's DogStatsD config; bounds keep their defaults.
    pub fn from_dogstatsd(config: &DogStatsdConfig) -> Self {
        Self {
            percentiles: config.histogram_percentiles.clone(),
            aggregates: HistogramAggregates::from_names(
                config.histogram_aggregates.iter().map(String::as_str),
            ),
            mappings: config.mappings.clone(),
            ..Self::default()
        }
    }
}

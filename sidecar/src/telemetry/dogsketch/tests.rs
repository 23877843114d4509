use super::*;

/// The key as PROTOCOLS.md §5 states it, written out again here so the table
/// does not check the code against itself: round half to even of
/// `ln v / log1p(1/64)`, plus 1338.
fn reference_key(v: f64) -> i16 {
    if v < 0.0 {
        return -reference_key(-v);
    }
    let x = v.ln() / (1.0f64 / 64.0).ln_1p();
    let floor = x.floor();
    let rounded = match x - floor {
        d if d < 0.5 => floor,
        d if d > 0.5 => floor + 1.0,
        _ if floor % 2.0 == 0.0 => floor,
        _ => floor + 1.0,
    };
    let k = rounded as i64 + 1338;
    if v < 1.015625f64.powi(-1337) {
        0
    } else {
        k.clamp(1, 32767) as i16
    }
}

#[test]
fn keys_are_the_agents() {
    // Expected keys computed with Python's round (half to even) and math.log1p.
    let table: &[(f64, i16)] = &[
        (1.0, 1338),
        (1.015625, 1339),
        (2.0, 1383),
        (10.0, 1487),
        (100.0, 1635),
        (123.456, 1649),
        (0.001, 892),
        (1e6, 2229),
        (1e-9, 1),
        (9.95e-10, 1),
        (9.9e-10, 0),
        (0.0, 0),
        (-1.0, -1338),
        (-100.0, -1635),
        (1e300, i16::MAX),
        (f64::INFINITY, i16::MAX),
    ];
    for &(v, want) in table {
        assert_eq!(key(v), want, "key({v})");
    }
    let mut v = 1e-9;
    while v < 1e12 {
        assert_eq!(key(v), reference_key(v), "key({v})");
        v *= 1.0037;
    }
}

#[test]
fn the_bias_follows_from_the_minimum_value() {
    let ln_gamma = (2.0 * RELATIVE_ACCURACY).ln_1p();
    assert_eq!(GAMMA, 1.015625);
    assert_eq!(-((MIN_VALUE.ln() / ln_gamma).floor() as i32) + 1, KEY_BIAS);
}

#[test]
fn every_value_is_within_the_accuracy_of_its_key() {
    let mut v = 1e-6;
    while v < 1e9 {
        let err = (value(key(v)) - v).abs() / v;
        assert!(err <= RELATIVE_ACCURACY, "{v}: {err}");
        v *= 1.001;
    }
}

/// The exact `q`-quantile at rank `q × (n - 1)`, the sketch's convention.
fn exact(sorted: &[f64], q: f64) -> f64 {
    sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
}

#[test]
fn quantiles_are_within_one_128th() {
    let datasets: Vec<(&str, Vec<f64>)> = vec![
        ("1..=10000", (1..=10_000).map(f64::from).collect()),
        ("exponential", (0..2000).map(|i| 1.01f64.powi(i)).collect()),
        (
            "negative and positive",
            (-500..=500).map(f64::from).collect(),
        ),
        ("constant", vec![42.0; 100]),
    ];
    for (name, mut data) in datasets {
        let mut sketch = DogSketch::new();
        for v in &data {
            sketch.insert(*v, 1);
        }
        data.sort_by(f64::total_cmp);
        for q in [0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0] {
            let (got, want) = (sketch.quantile(q).unwrap_or(f64::NAN), exact(&data, q));
            let err = if want == 0.0 {
                got.abs()
            } else {
                ((got - want) / want).abs()
            };
            assert!(err <= RELATIVE_ACCURACY, "{name} q={q}: {got} vs {want}");
        }
        assert_eq!(sketch.count(), data.len() as u64);
        assert_eq!(sketch.min(), data.first().copied());
        assert_eq!(sketch.max(), data.last().copied());
    }
}

#[test]
fn a_count_above_u16_spans_several_bins_of_one_key() {
    let mut sketch = DogSketch::new();
    sketch.insert(1.0, 70_000);
    sketch.insert(2.0, 3);
    let (k, n) = sketch.bins();
    assert_eq!(k, [1338, 1338, 1383]);
    assert_eq!(n, [65_535, 4_465, 3]);
    assert_eq!(sketch.count(), 70_003);
}

#[test]
fn past_the_bin_limit_the_lowest_bins_collapse() {
    let mut sketch = DogSketch::new();
    // 5000 distinct keys: every key from 1 up.
    for k in 1..=5000 {
        sketch.insert(value(k), 1);
    }
    let (k, n) = sketch.bins();
    assert_eq!(k.len(), BIN_LIMIT);
    assert_eq!(n.iter().map(|n| u64::from(*n)).sum::<u64>(), 5000);
    assert_eq!(k.last(), Some(&5000));
    // The lowest bin kept holds everything below it.
    assert_eq!(n[0], 5000 - 4095);
    assert_eq!(sketch.quantile(1.0), Some(value(5000)));
}

#[test]
fn ignores_what_would_poison_it() {
    let mut sketch = DogSketch::new();
    sketch.insert(f64::NAN, 1);
    sketch.insert(f64::INFINITY, 1);
    sketch.insert(1.0, 0);
    assert_eq!(sketch.count(), 0);
    assert_eq!(sketch.quantile(0.5), None);
    assert_eq!(sketch.bins(), (vec![], vec![]));
}

#[test]
fn collapsing_more_than_a_bin_holds_leaves_full_bins_behind_as_the_agent_does() {
    // 4098 bins: the two lowest (keys 1 and 2, 40 000 each) fold into key 3.
    let mut bins = vec![(1, 40_000), (2, 40_000), (3, 60_000)];
    bins.extend((4..=4098).map(|k| (k as i16, 1)));
    let out = trim_left(bins);
    // 80 000 folded: a full bin stays at key 2 (where the sum passed 65535),
    // 14 465 go to key 3, which then holds 65 535 and spills 8 930.
    // (The order of bins of one key means nothing: Datadog adds them up.)
    let mut low = out[..3].to_vec();
    low.sort_unstable();
    assert_eq!(low, [(2, 65_535), (3, 8_930), (3, 65_535)]);
    assert_eq!(out.iter().map(|(_, n)| n).sum::<u64>(), 140_000 + 4095);
}

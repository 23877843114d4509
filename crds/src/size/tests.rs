use super::*;

const MB: u64 = 1024 * 1024;

#[test]
fn the_table_has_herokus_memory_for_every_size() {
    let cases: &[(&str, u64)] = &[
        ("eco", 512 * MB),
        ("basic", 512 * MB),
        ("standard-1x", 512 * MB),
        ("standard-2x", 1024 * MB),
        ("performance-m", 2560 * MB),
        ("performance-l", 14 * 1024 * MB),
        ("performance-l-ram", 30 * 1024 * MB),
        ("performance-xl", 62 * 1024 * MB),
        ("performance-2xl", 126 * 1024 * MB),
        ("private-s", 1024 * MB),
        ("private-m", 2560 * MB),
        ("private-l", 14 * 1024 * MB),
        ("shield-s", 1024 * MB),
        ("shield-m", 2560 * MB),
        ("shield-l", 14 * 1024 * MB),
    ];
    for (name, bytes) in cases {
        let size = parse(name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(size.memory_bytes, *bytes, "{name}");
        assert_eq!(size.name, *name);
    }
    // Names are unique and lower case.
    for (i, size) in SIZES.iter().enumerate() {
        assert_eq!(size.name, size.name.to_ascii_lowercase());
        assert!(!SIZES[..i].iter().any(|s| s.name == size.name), "{size}");
    }
}

#[test]
fn names_match_in_any_case() {
    for text in ["Standard-1X", "STANDARD-1X", " standard-1x "] {
        assert_eq!(parse(text).map(|s| s.name), Ok("standard-1x"), "{text}");
    }
}

#[test]
fn r15_is_twice_the_quota_except_for_the_largest_sizes() {
    let s = parse("standard-1x").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.r15_bytes(), 1024 * MB);
    let xl = parse("performance-xl").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(xl.r15_bytes(), 62 * 1024 * MB * 12 / 10);
}

#[test]
fn an_unknown_size_lists_every_size() {
    let err = parse("standard-3x")
        .err()
        .unwrap_or_else(|| panic!("refused"));
    let message = err.to_string();
    assert!(
        message.starts_with(
            "unknown dyno size `standard-3x`: use one of eco, basic, standard-1x, standard-2x"
        ),
        "{message}"
    );
    for size in SIZES {
        assert!(message.contains(size.name), "{message}");
    }
}

#[test]
fn size_overrides_parse_all_and_per_type() {
    let all = SizeOverrides::parse("Standard-2X").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.for_type("web").map(|s| s.name), Some("standard-2x"));
    assert_eq!(all.for_type("worker").map(|s| s.name), Some("standard-2x"));

    let mixed = SizeOverrides::parse("standard-2x, web=standard-1x,worker=performance-m")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mixed.for_type("web").map(|s| s.name), Some("standard-1x"));
    assert_eq!(
        mixed.for_type("worker").map(|s| s.name),
        Some("performance-m")
    );
    assert_eq!(mixed.for_type("clock").map(|s| s.name), Some("standard-2x"));

    let some = SizeOverrides::parse("web=basic").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(some.for_type("worker"), None);
    assert!(SizeOverrides::parse("").unwrap_or_default().is_empty());
    assert_eq!(
        SizeOverrides::parse("web=huge").map_err(|e| e.given),
        Err("huge".to_owned())
    );
}

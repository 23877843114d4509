use super::*;
use crate::checks::url::{self, SslMode, Target};

fn env(name: &str) -> Option<String> {
    match name {
        "PG_PASSWORD" => Some("p@ss:w/rd%".into()),
        "PG_HOST" => Some("db.internal".into()),
        "REDIS_PASSWORD" => Some("r3dis".into()),
        "TEAM" => Some("payments".into()),
        _ => None,
    }
}

/// Files as `read_dir` finds them: the check from `<check>.yaml` or `<check>.d/…`.
fn files(entries: &[(&str, &str)]) -> Files {
    entries
        .iter()
        .map(|(path, text)| {
            let relative = path.split_once("conf.d/").map_or(*path, |(_, r)| r);
            let check = match relative.split_once(".d/") {
                Some((check, _)) => check,
                None => relative.trim_end_matches(".yaml"),
            };
            File {
                check: check.to_owned(),
                path: (*path).to_owned(),
                text: (*text).to_owned(),
            }
        })
        .collect()
}

/// The target the scheduler will resolve for `config`.
fn target(loaded: &Loaded, config: &IntegrationConfig) -> Target {
    let values = loaded.values.clone();
    url::resolve(config, &move |k| values.get(k).cloned()).unwrap()
}

#[test]
fn postgres_instances_become_checks_with_templates_resolved() {
    let loaded = load(
        &files(&[(
            "datadog/conf.d/postgres.yaml",
            "init_config:\ninstances:\n  - host: '%%env_PG_HOST%%'\n    port: 6543\n    username: datadog\n    password: '%%env_PG_PASSWORD%%'\n    dbname: shop\n    ssl: true\n    relations: [orders]\n    min_collection_interval: 30\n    tags: ['role:primary', 'team:%%env_TEAM%%']\n",
        )]),
        &env,
    );
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let [config] = loaded.configs.as_slice() else {
        panic!("{loaded:?}")
    };
    assert_eq!(
        config.name,
        "postgres:datadog/conf.d/postgres.yaml instances[0]"
    );
    assert_eq!(config.interval.to_string(), "30s");
    assert!(config.relations);
    assert_eq!(config.tags, ["role:primary", "team:payments"]);
    let Target::Postgres(pg) = target(&loaded, config) else {
        panic!()
    };
    assert_eq!(
        (
            pg.host.as_str(),
            pg.port,
            pg.user.as_str(),
            pg.database.as_str()
        ),
        ("db.internal", 6543, "datadog", "shop")
    );
    // Characters that mean something in a URL survive the round trip.
    assert_eq!(pg.password.unwrap().expose(), "p@ss:w/rd%");
    assert_eq!(pg.ssl_mode, SslMode::Require);
}

#[test]
fn redisdb_and_mcache_in_their_d_directories() {
    let loaded = load(
        &files(&[
            (
                "conf.d/redisdb.d/conf.yaml",
                "instances:\n  - {host: 127.0.0.1, port: 6380, password: '%%env_REDIS_PASSWORD%%', db: 2, ssl: true, ssl_cert_reqs: 2}\n  - {host: cache, port: '6381'}\n",
            ),
            (
                "conf.d/mcache.d/conf.yaml",
                "instances:\n  - {url: mc.internal, port: 11212, username: app, password: secret}\n",
            ),
        ]),
        &env,
    );
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    assert_eq!(loaded.configs.len(), 3);
    let Target::Redis(first) = target(&loaded, &loaded.configs[0]) else {
        panic!()
    };
    assert_eq!(
        (first.host.as_str(), first.port, first.db),
        ("127.0.0.1", 6380, 2)
    );
    assert!(first.tls && loaded.configs[0].tls_verify);
    assert_eq!(first.password.unwrap().expose(), "r3dis");
    let Target::Redis(second) = target(&loaded, &loaded.configs[1]) else {
        panic!()
    };
    assert_eq!((second.host.as_str(), second.port), ("cache", 6381));
    assert!(second.password.is_none() && !second.tls);
    let Target::Memcached(mc) = target(&loaded, &loaded.configs[2]) else {
        panic!()
    };
    assert_eq!(mc.servers, [("mc.internal".to_owned(), 11212)]);
    assert_eq!(mc.username.as_deref(), Some("app"));
    assert_eq!(mc.password.unwrap().expose(), "secret");
}

#[test]
fn problems_name_file_instance_and_field_but_never_a_value() {
    let loaded = load(
        &files(&[
            ("conf.d/postgres.yaml", "instances:\n  - {host: db, password: '%%env_MISSING%%'}\n  - {port: 5432, password: hunter2}\n  - just a string\n"),
            ("conf.d/redisdb.yaml", "instances: [{host: r, port: not-a-port, password: hunter2}]\n"),
            ("conf.d/mcache.yaml", "instances: [{url: m, username: only-user}]\n"),
            ("conf.d/nginx.yaml", "instances: [{nginx_status_url: x}]\n"),
            ("conf.d/broken.d/conf.yaml", "instances: [\n"),
            ("conf.d/postgres.d/conf.yaml", "init_config: {}\n"),
            ("conf.d/redisdb.d/auto.yaml", "instances: [{host: r, password: 'hunter2\n"),
        ]),
        &env,
    );
    assert!(loaded.configs.is_empty(), "{:?}", loaded.configs);
    let expected = [
        "conf.d/postgres.yaml instances[0]: field `password` uses %%env_MISSING%%, which is not set",
        "conf.d/postgres.yaml instances[1]: field `host` is missing",
        "conf.d/postgres.yaml instances[2]: is not a mapping",
        "conf.d/redisdb.yaml instances[0]: field `port` must be a whole number",
        "conf.d/mcache.yaml instances[0]: SASL needs both",
        "conf.d/nginx.yaml: the `nginx` check is not supported",
        "conf.d/broken.d/conf.yaml: the `broken` check is not supported",
        "conf.d/postgres.d/conf.yaml: no `instances:` list",
        "conf.d/redisdb.d/auto.yaml: not valid YAML at line",
    ];
    assert_eq!(
        loaded.problems.len(),
        expected.len(),
        "{:?}",
        loaded.problems
    );
    for (problem, start) in loaded.problems.iter().zip(expected) {
        let problem = problem.to_string();
        assert!(
            problem.starts_with(start),
            "{problem:?} should start with {start:?}"
        );
        assert!(!problem.contains("hunter2"), "{problem}");
    }
}

#[test]
fn read_dir_finds_the_agents_layout_and_skips_examples() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("redisdb.d")).unwrap();
    std::fs::create_dir_all(root.join("notes")).unwrap();
    for (path, text) in [
        ("postgres.yaml", "instances: []\n"),
        ("postgres.yaml.example", "instances: []\n"),
        ("redisdb.d/conf.yaml", "instances: []\n"),
        ("redisdb.d/conf.yaml.default", "instances: []\n"),
        ("notes/mcache.yaml", "instances: []\n"),
    ] {
        std::fs::write(root.join(path), text).unwrap();
    }
    let found: Vec<(String, String)> = read_dir(root)
        .unwrap()
        .into_iter()
        .map(|f| {
            let relative = f.path.strip_prefix(&*root.to_string_lossy()).unwrap();
            (f.check, relative.to_owned())
        })
        .collect();
    assert_eq!(
        found,
        [
            ("postgres".to_owned(), "/postgres.yaml".to_owned()),
            ("redisdb".to_owned(), "/redisdb.d/conf.yaml".to_owned())
        ]
    );
    assert!(read_dir(&root.join("absent")).unwrap().is_empty());
}

#[test]
fn templates() {
    assert_eq!(
        expand("a%%env_TEAM%%b%%env_TEAM%%", &env).unwrap(),
        "apaymentsbpayments"
    );
    assert_eq!(expand("50%% off", &env).unwrap(), "50%% off");
    assert_eq!(expand("%%env_NOPE%%", &env).unwrap_err(), "NOPE");
    assert_eq!(encode("a b/é"), "a%20b%2F%C3%A9");
}

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use dynoscope_crds::duration::HumanDuration;

use super::*;

fn pg(
    host: &str,
    port: u16,
    user: &str,
    password: Option<&str>,
    database: &str,
    ssl_mode: SslMode,
) -> PostgresTarget {
    PostgresTarget {
        host: host.to_owned(),
        port,
        user: user.to_owned(),
        password: password.map(Secret::new),
        database: database.to_owned(),
        ssl_mode,
        application_name: "dynoscope".to_owned(),
    }
}

#[test]
fn postgres_urls() {
    use SslMode::*;
    let cases: &[(&str, PostgresTarget)] = &[
        (
            "postgres://app:s3cret@db.example.com:5433/shop",
            pg(
                "db.example.com",
                5433,
                "app",
                Some("s3cret"),
                "shop",
                Prefer,
            ),
        ),
        (
            "postgresql://app:s3cret@db.example.com/shop",
            pg(
                "db.example.com",
                5432,
                "app",
                Some("s3cret"),
                "shop",
                Prefer,
            ),
        ),
        (
            "POSTGRES://app@localhost/shop",
            pg("localhost", 5432, "app", None, "shop", Prefer),
        ),
        (
            "postgres://localhost",
            pg("localhost", 5432, "postgres", None, "postgres", Prefer),
        ),
        (
            "postgres://app:pw@localhost:5432",
            pg("localhost", 5432, "app", Some("pw"), "app", Prefer),
        ),
        (
            "postgres://app:pw@h/d?sslmode=require",
            pg("h", 5432, "app", Some("pw"), "d", Require),
        ),
        (
            "postgres://app:pw@h/d?sslmode=verify-full",
            pg("h", 5432, "app", Some("pw"), "d", Verify),
        ),
        (
            "postgres://app:pw@h/d?sslmode=verify-ca",
            pg("h", 5432, "app", Some("pw"), "d", Verify),
        ),
        (
            "postgres://app:pw@h/d?sslmode=disable",
            pg("h", 5432, "app", Some("pw"), "d", Disable),
        ),
        (
            "postgres://app:pw@h/d?sslmode=prefer&connect_timeout=10",
            pg("h", 5432, "app", Some("pw"), "d", Prefer),
        ),
        (
            "postgres://app:pw@h/d?sslmode=allow",
            pg("h", 5432, "app", Some("pw"), "d", Prefer),
        ),
        // Percent-encoded user and password, and an unencoded `@` in the password.
        (
            "postgres://us%40er:p%40ss%2Fw%3Ard%25@h/d",
            pg("h", 5432, "us@er", Some("p@ss/w:rd%"), "d", Prefer),
        ),
        (
            "postgres://app:p@ss@h/d",
            pg("h", 5432, "app", Some("p@ss"), "d", Prefer),
        ),
        (
            "postgres://app:@h/d",
            pg("h", 5432, "app", Some(""), "d", Prefer),
        ),
        (
            "postgres://app:pw@[::1]:6000/d",
            pg("::1", 6000, "app", Some("pw"), "d", Prefer),
        ),
        (
            "postgres://app:pw@[2001:db8::5]/my%20db",
            pg("2001:db8::5", 5432, "app", Some("pw"), "my db", Prefer),
        ),
        // Heroku's shape.
        (
            "postgres://u8a7sd:p0a1b2c3d4@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d9f8e7",
            pg(
                "ec2-1-2-3-4.compute-1.amazonaws.com",
                5432,
                "u8a7sd",
                Some("p0a1b2c3d4"),
                "d9f8e7",
                Prefer,
            ),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(&parse_postgres(input).unwrap(), expected, "{input}");
    }
    let named = parse_postgres("postgres://a:b@h/d?application_name=shop%20checks").unwrap();
    assert_eq!(named.application_name, "shop checks");
}

#[test]
fn postgres_errors() {
    let cases: &[(&str, UrlError)] = &[
        (
            "mysql://a:b@h/d",
            UrlError::Scheme {
                expected: "postgres:// or postgresql://",
            },
        ),
        (
            "a:b@h/d",
            UrlError::Scheme {
                expected: "postgres:// or postgresql://",
            },
        ),
        ("postgres://a:b@/d", UrlError::NoHost),
        ("postgres:///d", UrlError::NoHost),
        ("postgres://a:b@h:99999/d", UrlError::Port),
        ("postgres://a:b@h:0/d", UrlError::Port),
        ("postgres://a:b@h:abc/d", UrlError::Port),
        ("postgres://a:b@h1:5432,h2:5432/d", UrlError::SeveralHosts),
        ("postgres://a:b@[::1/d", UrlError::Bracket),
        ("postgres://a:%zz@h/d", UrlError::Encoding("password")),
        ("postgres://a:%ff@h/d", UrlError::Encoding("password")),
        (
            "postgres://a:b@h/d?sslmode=always",
            UrlError::SslMode("always".to_owned()),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(&parse_postgres(input).unwrap_err(), expected, "{input}");
    }
}

#[test]
fn redis_urls() {
    let target =
        |host: &str, port, username: Option<&str>, password: Option<&str>, db, tls| RedisTarget {
            host: host.to_owned(),
            port,
            username: username.map(str::to_owned),
            password: password.map(Secret::new),
            db,
            tls,
        };
    let cases: &[(&str, RedisTarget)] = &[
        (
            "redis://localhost",
            target("localhost", 6379, None, None, 0, false),
        ),
        (
            "redis://localhost:6380/",
            target("localhost", 6380, None, None, 0, false),
        ),
        (
            "redis://:pw@h:25580",
            target("h", 25580, None, Some("pw"), 0, false),
        ),
        (
            "rediss://:p%2Fw@ec2-1-2-3-4.compute-1.amazonaws.com:25580",
            target(
                "ec2-1-2-3-4.compute-1.amazonaws.com",
                25580,
                None,
                Some("p/w"),
                0,
                true,
            ),
        ),
        (
            "redis://default:pw@h/2",
            target("h", 6379, Some("default"), Some("pw"), 2, false),
        ),
        (
            "redis://h:pw@h:6379/15",
            target("h", 6379, Some("h"), Some("pw"), 15, false),
        ),
        ("redis://h?db=3", target("h", 6379, None, None, 3, false)),
        (
            "REDISS://[::1]:7000/1",
            target("::1", 7000, None, None, 1, true),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(&parse_redis(input).unwrap(), expected, "{input}");
    }
    let errors: &[(&str, UrlError)] = &[
        (
            "http://h",
            UrlError::Scheme {
                expected: "redis:// or rediss://",
            },
        ),
        ("redis://h/zero", UrlError::Database),
        ("redis://h/-1", UrlError::Database),
        ("redis://:pw@:6379", UrlError::NoHost),
        ("redis://h:port", UrlError::Port),
    ];
    for (input, expected) in errors {
        assert_eq!(&parse_redis(input).unwrap_err(), expected, "{input}");
    }
}

#[test]
fn memcached_server_lists() {
    let cases: &[(&str, &[(&str, u16)])] = &[
        ("mc1.example.com:11211", &[("mc1.example.com", 11211)]),
        ("mc1:11211,mc2:11212", &[("mc1", 11211), ("mc2", 11212)]),
        ("mc1:11211, mc2", &[("mc1", 11211), ("mc2", 11211)]),
        ("memcached://mc1:1", &[("mc1", 1)]),
        ("[::1]:11211", &[("::1", 11211)]),
    ];
    for (input, expected) in cases {
        let servers = parse_servers(input).unwrap();
        let expected: Vec<(String, u16)> = expected
            .iter()
            .map(|(host, port)| ((*host).to_owned(), *port))
            .collect();
        assert_eq!(servers, expected, "{input}");
    }
    assert_eq!(parse_servers(" , ").unwrap_err(), UrlError::NoServers);
    assert_eq!(parse_servers("mc1:x").unwrap_err(), UrlError::Port);
}

fn config(type_: IntegrationType) -> IntegrationConfig {
    IntegrationConfig {
        name: "check".to_owned(),
        type_,
        url_from: None,
        servers_from: None,
        username_from: None,
        password_from: None,
        relations: false,
        tls_verify: false,
        interval: HumanDuration::from_secs(15),
        timeout: HumanDuration::from_secs(5),
        tags: Vec::new(),
    }
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn resolve_reads_the_named_variables() {
    let mut redis = config(IntegrationType::Redis);
    redis.url_from = Some("REDIS_TLS_URL".to_owned());
    let target = resolve(
        &redis,
        &env(&[("REDIS_TLS_URL", "rediss://:pw@h:1"), ("REDIS_URL", "x")]),
    )
    .unwrap();
    assert!(matches!(
        target,
        Target::Redis(RedisTarget {
            tls: true,
            port: 1,
            ..
        })
    ));

    let target = resolve(
        &config(IntegrationType::Postgres),
        &env(&[("DATABASE_URL", "postgres://a:b@h/d")]),
    )
    .unwrap();
    assert!(matches!(target, Target::Postgres(_)));

    let mut mc = config(IntegrationType::Memcached);
    mc.username_from = Some("MC_USER".to_owned());
    mc.password_from = Some("MC_PASS".to_owned());
    let target = resolve(
        &mc,
        &env(&[
            ("MEMCACHEDCLOUD_SERVERS", "a:1,b:2"),
            ("MC_USER", "u"),
            ("MC_PASS", "hunter22"),
        ]),
    )
    .unwrap();
    let Target::Memcached(target) = target else {
        panic!("not memcached")
    };
    assert_eq!(target.servers.len(), 2);
    assert_eq!(target.username.as_deref(), Some("u"));
    assert_eq!(
        target.password.as_ref().map(Secret::expose),
        Some("hunter22")
    );
}

#[test]
fn resolve_errors_name_the_variable_not_the_password() {
    let password = "Sup3rSecretPw";
    type Case<'a> = (IntegrationConfig, Vec<(&'a str, String)>, &'a str);
    let cases: &[Case] = &[
        (
            config(IntegrationType::Postgres),
            vec![],
            "DATABASE_URL is not set: the postgres check reads its URL from it",
        ),
        (
            config(IntegrationType::Postgres),
            vec![("DATABASE_URL", format!("postgres://u:{password}@h:54x32/d"))],
            "DATABASE_URL is not a valid postgres URL: the port is not a number",
        ),
        (
            config(IntegrationType::Postgres),
            // An unencoded `/` in the password cuts the authority short.
            vec![("DATABASE_URL", format!("postgres://u:{password}/x@h/d"))],
            "DATABASE_URL is not a valid postgres URL: the port is not a number",
        ),
        (
            config(IntegrationType::Redis),
            vec![("REDIS_URL", format!("http://:{password}@h"))],
            "REDIS_URL is not a valid redis URL: it must start with redis:// or rediss://",
        ),
        (
            config(IntegrationType::Redis),
            vec![("REDIS_URL", format!("redis://:{password}%@h"))],
            "REDIS_URL is not a valid redis URL: the password has an invalid percent-encoding",
        ),
        (
            config(IntegrationType::Memcached),
            vec![("MEMCACHEDCLOUD_SERVERS", String::new())],
            "MEMCACHEDCLOUD_SERVERS is not set",
        ),
    ];
    for (config, vars, expected) in cases {
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let error = resolve(config, &env(&pairs)).unwrap_err().to_string();
        assert!(
            error.starts_with(expected),
            "{error:?} should start with {expected:?}"
        );
        assert!(!error.contains(password), "{error:?} leaks the password");
        assert!(
            !error.contains("Sup3r"),
            "{error:?} leaks part of the password"
        );
    }

    let mut mc = config(IntegrationType::Memcached);
    mc.password_from = Some("MC_PASS".to_owned());
    let error = resolve(
        &mc,
        &env(&[("MEMCACHEDCLOUD_SERVERS", "a:1"), ("MC_PASS", password)]),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("set usernameFrom too"), "{error}");
    assert!(!error.contains(password));
}

#[test]
fn targets_print_without_the_password() {
    let pg = parse_postgres("postgres://app:Sup3rSecretPw@h:5433/d?sslmode=require").unwrap();
    assert_eq!(
        pg.to_string(),
        "postgres://app:***@h:5433/d?sslmode=require"
    );
    assert!(!format!("{pg:?}").contains("Sup3r"));
    assert!(format!("{pg:?}").contains("password: Some(***)"));

    let redis = parse_redis("rediss://:Sup3rSecretPw@[::1]:6380/2").unwrap();
    assert_eq!(redis.to_string(), "rediss://:***@[::1]:6380/2");
    assert!(!format!("{redis:?}").contains("Sup3r"));

    let mc = MemcachedTarget {
        servers: vec![("a".to_owned(), 1), ("b".to_owned(), 2)],
        username: Some("u".to_owned()),
        password: Some(Secret::new("Sup3rSecretPw")),
    };
    assert_eq!(mc.to_string(), "a:1,b:2 (SASL user u, password ***)");
    assert!(!format!("{:?}", Target::Memcached(mc)).contains("Sup3r"));
}

//! Turning `DATABASE_URL`, `REDIS_URL` and `MEMCACHEDCLOUD_*` into check targets.
//!
//! Pure: [`resolve`] reads variables through the function it is given. Errors
//! name the variable and what is wrong, never the value (it may hold a
//! password), and the targets' `Debug`/`Display` print `***` for the password.

use std::fmt;

use dynoscope_crds::dyno::IntegrationConfig;
use dynoscope_crds::observability::IntegrationType;

/// What a check connects to, from one [`IntegrationConfig`] and the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A PostgreSQL database.
    Postgres(PostgresTarget),
    /// A Redis server.
    Redis(RedisTarget),
    /// One or more Memcached servers.
    Memcached(MemcachedTarget),
}

/// A password (or any credential) that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the one place that sends it to the server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// libpq's `sslmode`: whether to use TLS and whether to check the certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, else plain (`allow` and `prefer`; libpq's default).
    Prefer,
    /// TLS, certificate not checked unless `tlsVerify` is set.
    Require,
    /// TLS, certificate checked against the system's roots (`verify-ca`, `verify-full`).
    Verify,
}

/// A PostgreSQL database, from a `postgres://` or `postgresql://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresTarget {
    /// Host name or IP address (without IPv6 brackets).
    pub host: String,
    /// Default 5432.
    pub port: u16,
    /// Default `postgres`.
    pub user: String,
    /// Absent: connect without one (trust or peer setups).
    pub password: Option<Secret>,
    /// The path of the URL; default: the user name, as libpq does.
    pub database: String,
    /// `?sslmode=`; default `prefer`.
    pub ssl_mode: SslMode,
    /// `?application_name=`; default `dynoscope`.
    pub application_name: String,
}

/// A Redis server, from a `redis://` or `rediss://` (TLS) URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisTarget {
    /// Host name or IP address.
    pub host: String,
    /// Default 6379.
    pub port: u16,
    /// An ACL user (Redis 6+); absent or empty in most URLs (`redis://:pw@host`).
    pub username: Option<String>,
    /// Sent with `AUTH`.
    pub password: Option<Secret>,
    /// The database number of the path (`/2`); default 0.
    pub db: u32,
    /// `rediss://`.
    pub tls: bool,
}

/// Memcached servers, from a `host:port,host:port` list and SASL credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemcachedTarget {
    /// Each server; the port defaults to 11211.
    pub servers: Vec<(String, u16)>,
    /// SASL PLAIN user, from its own variable.
    pub username: Option<String>,
    /// SASL PLAIN password, from its own variable.
    pub password: Option<Secret>,
}

/// Why a variable could not be turned into a target.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The variable is not in the environment.
    #[error("{variable} is not set: the {kind} check reads its {what} from it")]
    Unset {
        /// The variable's name.
        variable: String,
        /// `postgres`, `redis`, `memcached`.
        kind: &'static str,
        /// What the variable should hold.
        what: &'static str,
    },
    /// The variable's value is not usable.
    #[error("{variable} is not a valid {kind} {what}: {reason}")]
    Invalid {
        /// The variable's name.
        variable: String,
        /// `postgres`, `redis`, `memcached`.
        kind: &'static str,
        /// `URL` or `server list`.
        what: &'static str,
        /// What is wrong; never contains the value.
        reason: UrlError,
    },
    /// A password variable without a username variable, or the reverse.
    #[error("memcached SASL needs both a username and a password variable; {0}")]
    HalfCredentials(String),
}

/// What is wrong with a URL. Messages never quote the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not `scheme://…`, or another scheme.
    #[error("it must start with {expected}")]
    Scheme {
        /// The accepted schemes.
        expected: &'static str,
    },
    /// Nothing between `//` and the path.
    #[error("it has no host")]
    NoHost,
    /// `host1,host2` in a postgres URL.
    #[error("several hosts in one URL are not supported; point the check at one server")]
    SeveralHosts,
    /// `[::1` without `]`.
    #[error("an IPv6 address lacks its closing `]`")]
    Bracket,
    /// Not a number in 1..=65535.
    #[error("the port is not a number between 1 and 65535 (percent-encode `@`, `:` and `/` in the user name and password)")]
    Port,
    /// `%zz`, or bytes that are not UTF-8 once decoded.
    #[error("the {0} has an invalid percent-encoding")]
    Encoding(&'static str),
    /// A redis path that is not a number.
    #[error("the path must be a database number such as /0")]
    Database,
    /// An `sslmode` that libpq does not know.
    #[error("sslmode={0} is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    SslMode(String),
    /// An empty server list.
    #[error("it lists no server")]
    NoServers,
}

/// The pieces of `scheme://user:password@host:port/path?query`, decoded.
#[derive(Debug)]
struct Parts {
    scheme: String,
    user: Option<String>,
    password: Option<String>,
    host: String,
    port: Option<u16>,
    path: String,
    query: Vec<(String, String)>,
}

/// Resolves a check's variables into a target.
pub fn resolve(
    config: &IntegrationConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Target, TargetError> {
    match config.type_ {
        IntegrationType::Postgres => {
            let variable = config.url_from.as_deref().unwrap_or("DATABASE_URL");
            let url = read(env, variable, "postgres", "URL")?;
            parse_postgres(&url)
                .map(Target::Postgres)
                .map_err(|reason| invalid(variable, "postgres", "URL", reason))
        }
        IntegrationType::Redis => {
            let variable = config.url_from.as_deref().unwrap_or("REDIS_URL");
            let url = read(env, variable, "redis", "URL")?;
            parse_redis(&url)
                .map(Target::Redis)
                .map_err(|reason| invalid(variable, "redis", "URL", reason))
        }
        IntegrationType::Memcached => {
            let variable = config
                .servers_from
                .as_deref()
                .unwrap_or("MEMCACHEDCLOUD_SERVERS");
            let list = read(env, variable, "memcached", "server list")?;
            let servers = parse_servers(&list)
                .map_err(|reason| invalid(variable, "memcached", "server list", reason))?;
            let username = match &config.username_from {
                Some(name) => Some(read(env, name, "memcached", "SASL username")?),
                None => None,
            };
            let password = match &config.password_from {
                Some(name) => Some(Secret(read(env, name, "memcached", "SASL password")?)),
                None => None,
            };
            match (&username, &password, &config.password_from) {
                (Some(_), None, _) => Err(TargetError::HalfCredentials(
                    "set passwordFrom too".to_owned(),
                )),
                (None, Some(_), _) => Err(TargetError::HalfCredentials(
                    "set usernameFrom too".to_owned(),
                )),
                _ => Ok(Target::Memcached(MemcachedTarget {
                    servers,
                    username,
                    password,
                })),
            }
        }
    }
}

fn read(
    env: &dyn Fn(&str) -> Option<String>,
    variable: &str,
    kind: &'static str,
    what: &'static str,
) -> Result<String, TargetError> {
    match env(variable) {
        Some(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
        _ => Err(TargetError::Unset {
            variable: variable.to_owned(),
            kind,
            what,
        }),
    }
}

fn invalid(
    variable: &str,
    kind: &'static str,
    what: &'static str,
    reason: UrlError,
) -> TargetError {
    TargetError::Invalid {
        variable: variable.to_owned(),
        kind,
        what,
        reason,
    }
}

/// Parses a `postgres://` or `postgresql://` URL.
pub fn parse_postgres(input: &str) -> Result<PostgresTarget, UrlError> {
    const EXPECTED: &str = "postgres:// or postgresql://";
    let parts = split(input, EXPECTED)?;
    if parts.scheme != "postgres" && parts.scheme != "postgresql" {
        return Err(UrlError::Scheme { expected: EXPECTED });
    }
    if parts.host.contains(',') {
        return Err(UrlError::SeveralHosts);
    }
    let mut ssl_mode = SslMode::Prefer;
    let mut application_name = "dynoscope".to_owned();
    for (key, value) in &parts.query {
        match key.as_str() {
            "sslmode" => {
                ssl_mode = match value.as_str() {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" | "verify-full" => SslMode::Verify,
                    other => return Err(UrlError::SslMode(other.to_owned())),
                }
            }
            "application_name" => application_name.clone_from(value),
            // connect_timeout, options, …: the check has its own timeout.
            _ => {}
        }
    }
    let user = parts
        .user
        .filter(|user| !user.is_empty())
        .unwrap_or_else(|| "postgres".to_owned());
    let database = if parts.path.is_empty() {
        user.clone()
    } else {
        parts.path
    };
    Ok(PostgresTarget {
        host: parts.host,
        port: parts.port.unwrap_or(5432),
        user,
        password: parts.password.map(Secret),
        database,
        ssl_mode,
        application_name,
    })
}

/// Parses a `redis://` or `rediss://` URL.
pub fn parse_redis(input: &str) -> Result<RedisTarget, UrlError> {
    const EXPECTED: &str = "redis:// or rediss://";
    let parts = split(input, EXPECTED)?;
    let tls = match parts.scheme.as_str() {
        "redis" => false,
        "rediss" => true,
        _ => return Err(UrlError::Scheme { expected: EXPECTED }),
    };
    let mut db = match parts.path.trim_end_matches('/') {
        "" => 0,
        path => path.parse().map_err(|_| UrlError::Database)?,
    };
    for (key, value) in &parts.query {
        if key == "db" {
            db = value.parse().map_err(|_| UrlError::Database)?;
        }
    }
    Ok(RedisTarget {
        host: parts.host,
        port: parts.port.unwrap_or(6379),
        username: parts.user.filter(|user| !user.is_empty()),
        password: parts
            .password
            .filter(|password| !password.is_empty())
            .map(Secret),
        db,
        tls,
    })
}

/// Parses `host:port,host:port` (commas or spaces); the port defaults to 11211.
pub fn parse_servers(input: &str) -> Result<Vec<(String, u16)>, UrlError> {
    let mut servers = Vec::new();
    for item in input.split([',', ' ', ';']).filter(|s| !s.is_empty()) {
        // Some add-ons write `memcached://host:port`.
        let item = item.strip_prefix("memcached://").unwrap_or(item);
        let (host, port) = split_host_port(item)?;
        servers.push((host, port.unwrap_or(11211)));
    }
    if servers.is_empty() {
        return Err(UrlError::NoServers);
    }
    Ok(servers)
}

fn split(input: &str, expected: &'static str) -> Result<Parts, UrlError> {
    let (scheme, rest) = input
        .split_once("://")
        .ok_or(UrlError::Scheme { expected })?;
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    // The last `@`: an unencoded `@` in a password still parses.
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(userinfo) => match userinfo.split_once(':') {
            Some((user, password)) => (
                Some(decode(user, "user name")?),
                Some(decode(password, "password")?),
            ),
            None => (Some(decode(userinfo, "user name")?), None),
        },
    };
    let (host, port) = split_host_port(hostport)?;
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        pairs.push((decode(key, "query string")?, decode(value, "query string")?));
    }
    Ok(Parts {
        scheme: scheme.to_ascii_lowercase(),
        user,
        password,
        host,
        port,
        path: decode(path, "database name")?,
        query: pairs,
    })
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), UrlError> {
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or(UrlError::Bracket)?;
        match after {
            "" => (host, None),
            after => (host, Some(after.strip_prefix(':').ok_or(UrlError::Port)?)),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) if !host.contains(',') => (host, Some(port)),
            _ => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    let port = match port {
        None | Some("") => None,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => Some(port),
            _ => return Err(UrlError::Port),
        },
    };
    Ok((decode(host, "host")?, port))
}

/// Decodes `%XX` escapes (and nothing else: `+` stays a plus, as in libpq).
fn decode(input: &str, what: &'static str) -> Result<String, UrlError> {
    if !input.contains('%') {
        return Ok(input.to_owned());
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(UrlError::Encoding(what))?;
            let hex = std::str::from_utf8(hex).map_err(|_| UrlError::Encoding(what))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| UrlError::Encoding(what))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::Encoding(what))
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl fmt::Display for PostgresTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.password.is_some() { ":***" } else { "" };
        let mode = match self.ssl_mode {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::Verify => "verify-full",
        };
        write!(
            f,
            "postgres://{}{password}@{}/{}?sslmode={mode}",
            self.user,
            host_port(&self.host, self.port),
            self.database
        )
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = self.username.as_deref().unwrap_or("");
        let auth = match (user, &self.password) {
            ("", None) => String::new(),
            (user, Some(_)) => format!("{user}:***@"),
            (user, None) => format!("{user}@"),
        };
        write!(
            f,
            "{scheme}://{auth}{}/{}",
            host_port(&self.host, self.port),
            self.db
        )
    }
}

impl fmt::Display for MemcachedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = self
            .servers
            .iter()
            .map(|(host, port)| host_port(host, *port))
            .collect();
        f.write_str(&servers.join(","))?;
        if let Some(user) = &self.username {
            write!(f, " (SASL user {user}, password ***)")?;
        }
        Ok(())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Postgres(target) => target.fmt(f),
            Target::Redis(target) => target.fmt(f),
            Target::Memcached(target) => target.fmt(f),
        }
    }
}

impl Target {
    /// The credential, so messages that might echo it can be scrubbed.
    pub fn password(&self) -> Option<&Secret> {
        match self {
            Target::Postgres(target) => target.password.as_ref(),
            Target::Redis(target) => target.password.as_ref(),
            Target::Memcached(target) => target.password.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests;

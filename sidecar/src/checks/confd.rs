//! A Datadog Agent `conf.d` directory as integration checks, for apps that
//! migrate from the Datadog buildpack without rewriting their check configs.
//!
//! The layout is the Agent's: `<check>.yaml` or `<check>.d/*.yaml`, each with
//! `instances:`; `init_config` and files ending in `.example` or `.default`
//! are ignored. Three checks are understood — `postgres`, `redisdb` and
//! `mcache` — with the fields below; any other check is reported and skipped.
//!
//! | check | fields read |
//! | --- | --- |
//! | `postgres` | `host`, `port`, `username`, `password`, `dbname`, `ssl` (`true`/`false` or a libpq `sslmode`), `relations`, `tags`, `min_collection_interval` |
//! | `redisdb` | `host`, `port`, `username`, `password`, `db`, `ssl`, `ssl_cert_reqs` (2: verify), `tags`, `min_collection_interval` |
//! | `mcache` | `url` (host), `port`, `username`, `password`, `tags`, `min_collection_interval` |
//!
//! String values may hold the Agent's `%%env_NAME%%` template, replaced with
//! the variable's value at run time — the way to keep passwords out of the
//! files instead of `sed`-ing them in from `prerun.sh`.
//!
//! [`load`] is pure: it reads what [`read_dir`] found and the environment
//! through the function it is given. Each instance becomes one
//! [`IntegrationConfig`] whose `urlFrom` / `serversFrom` / `usernameFrom` /
//! `passwordFrom` name a key of [`Loaded::values`] (e.g.
//! `datadog/conf.d/postgres.yaml instances[0]`) instead of an environment
//! variable, so the scheduler resolves it like any other check and its
//! messages name the file and instance. Values — credentials included — stay
//! in memory; problems name the file, instance and field, never a value.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use dynoscope_crds::duration::HumanDuration;
use dynoscope_crds::dyno::IntegrationConfig;
use dynoscope_crds::observability::IntegrationType;
use serde_yaml::Value;

/// What could not be used in a `conf.d` directory: each names the file (and the
/// instance and field), never a value, and says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfDError {
    /// The directory or a file in it could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The directory or file.
        path: String,
        /// The OS error's text (kept as text so that problems can be compared and cloned).
        message: String,
    },
    /// A check other than postgres, redisdb and mcache.
    #[error(
        "{file}: the `{check}` check is not supported (only postgres, redisdb and mcache): skipped"
    )]
    Unsupported {
        /// The file.
        file: String,
        /// The check it configures.
        check: String,
    },
    /// Not YAML.
    #[error("{file}: not valid YAML{at}: fix the file")]
    Yaml {
        /// The file.
        file: String,
        /// ` at line L, column C` when the parser knows.
        at: String,
    },
    /// No `instances:` list.
    #[error("{file}: no `instances:` list: nothing to check")]
    NoInstances {
        /// The file.
        file: String,
    },
    /// An instance that is not a mapping.
    #[error("{at}: is not a mapping of fields: skipped")]
    NotMapping {
        /// `<file> instances[<i>]`.
        at: String,
    },
    /// A field of the wrong type.
    #[error("{at}: field `{field}` must be {expected}")]
    WrongType {
        /// `<file> instances[<i>]`.
        at: String,
        /// The field.
        field: &'static str,
        /// What it must be, e.g. `a whole number`.
        expected: &'static str,
    },
    /// A `%%env_NAME%%` template whose variable is not set.
    #[error("{at}: field `{field}` uses %%env_{variable}%%, which is not set: set it in the dyno's environment")]
    UnsetVariable {
        /// `<file> instances[<i>]`.
        at: String,
        /// The field.
        field: &'static str,
        /// The variable.
        variable: String,
    },
    /// No server named.
    #[error("{at}: field `{field}` is missing: name the server (unix sockets are not supported)")]
    MissingHost {
        /// `<file> instances[<i>]`.
        at: String,
        /// `host`, or `url` for mcache.
        field: &'static str,
    },
    /// Only one of the SASL credentials.
    #[error("{at}: SASL needs both `username` and `password`, or neither")]
    HalfSasl {
        /// `<file> instances[<i>]`.
        at: String,
    },
}

impl ConfDError {
    fn read(path: &Path, err: &std::io::Error) -> Self {
        ConfDError::Read {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }
}

/// One check config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// The check it configures: `postgres` of `postgres.yaml` and of `postgres.d/conf.yaml`.
    pub check: String,
    /// Its path, as shown to people.
    pub path: String,
    /// Its content.
    pub text: String,
}

/// The check config files of one directory.
pub type Files = Vec<File>;

/// What a `conf.d` directory turned into.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loaded {
    /// One check per usable instance.
    pub configs: Vec<IntegrationConfig>,
    /// The values the configs' `…From` fields name (URLs, server lists, credentials).
    pub values: BTreeMap<String, String>,
    /// What could not be used, each naming the file, instance and field.
    pub problems: Vec<ConfDError>,
}

/// The check files of `dir`: `<check>.yaml`/`.yml` and `<check>.d/*.yaml`, sorted.
/// A directory that does not exist (yet) has none.
pub fn read_dir(dir: &Path) -> Result<Files, ConfDError> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(err) => return Err(ConfDError::read(dir, &err)),
    };
    let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            let is_check_dir = path.extension().is_some_and(|e| e == "d");
            if !is_check_dir {
                continue;
            }
            let mut inner: Vec<_> = std::fs::read_dir(&path)
                .map_err(|err| ConfDError::read(&path, &err))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| is_yaml(p))
                .collect();
            inner.sort();
            let check = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            for file in inner {
                files.push(read_file(check.clone().unwrap_or_default(), &file)?);
            }
        } else if is_yaml(&path) {
            let check = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            files.push(read_file(check.unwrap_or_default(), &path)?);
        }
    }
    Ok(files)
}

fn is_yaml(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

fn read_file(check: String, path: &Path) -> Result<File, ConfDError> {
    std::fs::read_to_string(path)
        .map(|text| File {
            check,
            path: path.display().to_string(),
            text,
        })
        .map_err(|err| ConfDError::read(path, &err))
}

/// Turns the files into checks; `env` answers `%%env_NAME%%`.
pub fn load(files: &Files, env: &dyn Fn(&str) -> Option<String>) -> Loaded {
    let mut loaded = Loaded::default();
    for File { check, path, text } in files {
        let file = path;
        let kind = match check.as_str() {
            "postgres" => IntegrationType::Postgres,
            "redisdb" => IntegrationType::Redis,
            "mcache" => IntegrationType::Memcached,
            "auto_conf" => continue,
            other => {
                loaded.problems.push(ConfDError::Unsupported {
                    file: file.clone(),
                    check: other.to_owned(),
                });
                continue;
            }
        };
        let document: Value = match serde_yaml::from_str(text) {
            Ok(document) => document,
            Err(err) => {
                // serde_yaml's syntax errors give a position, not the text.
                let at = err
                    .location()
                    .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
                    .unwrap_or_default();
                loaded.problems.push(ConfDError::Yaml {
                    file: file.clone(),
                    at,
                });
                continue;
            }
        };
        let Some(instances) = document.get("instances").and_then(Value::as_sequence) else {
            loaded
                .problems
                .push(ConfDError::NoInstances { file: file.clone() });
            continue;
        };
        for (i, instance) in instances.iter().enumerate() {
            let at = format!("{file} instances[{i}]");
            match Instance::new(&at, instance, env).and_then(|inst| inst.into_check(kind)) {
                Ok((config, values)) => {
                    loaded.configs.push(config);
                    loaded.values.extend(values);
                }
                Err(problem) => loaded.problems.push(problem),
            }
        }
    }
    loaded
}

/// One instance's fields, templates resolved.
struct Instance<'a> {
    /// `<file> instances[<i>]`: names the instance in problems and keys.
    at: &'a str,
    map: &'a serde_yaml::Mapping,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Instance<'a> {
    fn new(
        at: &'a str,
        value: &'a Value,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfDError> {
        let map = value
            .as_mapping()
            .ok_or_else(|| ConfDError::NotMapping { at: at.to_owned() })?;
        Ok(Instance { at, map, env })
    }

    /// A scalar field as text, `%%env_NAME%%` replaced.
    fn text(&self, field: &'static str) -> Result<Option<String>, ConfDError> {
        let Some(value) = self.map.get(field) else {
            return Ok(None);
        };
        let raw = match value {
            Value::Null => return Ok(None),
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(self.wrong_type(field, "a string or a number")),
        };
        expand(&raw, self.env)
            .map(Some)
            .map_err(|variable| self.unset(field, variable))
    }

    fn wrong_type(&self, field: &'static str, expected: &'static str) -> ConfDError {
        ConfDError::WrongType {
            at: self.at.to_owned(),
            field,
            expected,
        }
    }

    fn unset(&self, field: &'static str, variable: &str) -> ConfDError {
        ConfDError::UnsetVariable {
            at: self.at.to_owned(),
            field,
            variable: variable.to_owned(),
        }
    }

    fn number<T: std::str::FromStr>(&self, field: &'static str) -> Result<Option<T>, ConfDError> {
        match self.text(field)? {
            None => Ok(None),
            Some(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.wrong_type(field, "a whole number")),
        }
    }

    fn tags(&self) -> Result<Vec<String>, ConfDError> {
        match self.map.get("tags") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(tag) => {
                        expand(tag, self.env).map_err(|variable| self.unset("tags", variable))
                    }
                    _ => Err(self.wrong_type("tags", "a list of strings")),
                })
                .collect(),
            Some(_) => Err(self.wrong_type("tags", "a list of strings")),
        }
    }

    fn into_check(
        self,
        kind: IntegrationType,
    ) -> Result<(IntegrationConfig, BTreeMap<String, String>), ConfDError> {
        let interval = match self.number::<u64>("min_collection_interval")? {
            Some(0) | None => dynoscope_crds::defaults::CHECK_INTERVAL,
            Some(seconds) => HumanDuration(Duration::from_secs(seconds)),
        };
        let mut config = IntegrationConfig {
            interval,
            tags: self.tags()?,
            ..IntegrationConfig::new(format!("{}:{}", kind.as_str(), self.at), kind)
        };
        let mut values = BTreeMap::new();
        let host = self.text(if kind == IntegrationType::Memcached {
            "url"
        } else {
            "host"
        })?;
        let Some(host) = host.filter(|h| !h.trim().is_empty()) else {
            let field = if kind == IntegrationType::Memcached {
                "url"
            } else {
                "host"
            };
            return Err(ConfDError::MissingHost {
                at: self.at.to_owned(),
                field,
            });
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let port = self.number::<u16>("port")?;
        let username = self.text("username")?;
        let password = self.text("password")?;
        let key = self.at.to_owned();
        match kind {
            IntegrationType::Postgres => {
                let ssl_mode = match self.text("ssl")?.as_deref().map(str::to_ascii_lowercase) {
                    None => "prefer".to_owned(),
                    Some(mode) if mode == "true" => "require".to_owned(),
                    Some(mode) if mode == "false" => "disable".to_owned(),
                    Some(mode) => mode,
                };
                config.relations = self
                    .map
                    .get("relations")
                    .and_then(Value::as_sequence)
                    .is_some_and(|r| !r.is_empty());
                let dbname = self.text("dbname")?.unwrap_or_else(|| "postgres".into());
                let url = format!(
                    "postgres://{}@{host}:{}/{}?sslmode={}",
                    userinfo(
                        username.as_deref().unwrap_or("postgres"),
                        password.as_deref()
                    ),
                    port.unwrap_or(5432),
                    encode(&dbname),
                    encode(&ssl_mode),
                );
                values.insert(key.clone(), url);
                config.url_from = Some(key);
            }
            IntegrationType::Redis => {
                let tls = self.text("ssl")?.is_some_and(|s| {
                    matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "1")
                });
                config.tls_verify = self.number::<u8>("ssl_cert_reqs")? == Some(2);
                let db = self.number::<u32>("db")?.unwrap_or(0);
                let auth = match (&username, &password) {
                    (None, None) => String::new(),
                    (user, pass) => format!(
                        "{}@",
                        userinfo(user.as_deref().unwrap_or(""), pass.as_deref())
                    ),
                };
                let url = format!(
                    "{}://{auth}{host}:{}/{db}",
                    if tls { "rediss" } else { "redis" },
                    port.unwrap_or(6379)
                );
                values.insert(key.clone(), url);
                config.url_from = Some(key);
            }
            IntegrationType::Memcached => {
                values.insert(key.clone(), format!("{host}:{}", port.unwrap_or(11211)));
                config.servers_from = Some(key.clone());
                match (username, password) {
                    (Some(user), Some(pass)) => {
                        let (user_key, pass_key) =
                            (format!("{key} username"), format!("{key} password"));
                        values.insert(user_key.clone(), user);
                        values.insert(pass_key.clone(), pass);
                        config.username_from = Some(user_key);
                        config.password_from = Some(pass_key);
                    }
                    (None, None) => {}
                    _ => {
                        return Err(ConfDError::HalfSasl {
                            at: self.at.to_owned(),
                        })
                    }
                }
            }
        }
        Ok((config, values))
    }
}

/// The `conf.d` directory this dyno runs, re-read on [`ConfD::refresh`]; the
/// scheduler's environment looks the instances' values up here.
#[derive(Debug, Default)]
pub struct ConfD {
    state: std::sync::Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The directory last read.
    dir: Option<std::path::PathBuf>,
    /// What it held, to tell whether anything changed.
    files: Files,
    loaded: Loaded,
}

impl ConfD {
    /// Re-reads `dir` (none: no `conf.d`); true when the checks it yields changed.
    /// Problems are logged when the files change, not on every read.
    pub fn refresh(&self, dir: Option<&Path>) -> bool {
        let files = match dir.map(read_dir).transpose() {
            Ok(files) => files.unwrap_or_default(),
            Err(problem) => {
                tracing::warn!("conf.d: {problem}; keeping the checks it had");
                return false;
            }
        };
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.dir.as_deref() == dir && state.files == files {
            return false;
        }
        let loaded = load(&files, &|name| std::env::var(name).ok());
        for problem in &loaded.problems {
            tracing::warn!("conf.d: {problem}");
        }
        if let Some(dir) = dir {
            tracing::info!(
                "conf.d {}: {} checks from {} files",
                dir.display(),
                loaded.configs.len(),
                files.len()
            );
        }
        let changed =
            loaded.configs != state.loaded.configs || loaded.values != state.loaded.values;
        *state = State {
            dir: dir.map(Path::to_owned),
            files,
            loaded,
        };
        changed
    }

    /// The checks of the directory's usable instances.
    pub fn configs(&self) -> Vec<IntegrationConfig> {
        self.lock().loaded.configs.clone()
    }

    /// What a check's `…From` field names, when it is one of the directory's.
    pub fn value(&self, key: &str) -> Option<String> {
        self.lock().loaded.values.get(key).cloned()
    }

    /// The problems of the last read, for `/status`.
    pub fn problems(&self) -> Vec<String> {
        self.lock()
            .loaded
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Replaces every `%%env_NAME%%`; the error is the first unset NAME (the
/// caller says which file and field).
fn expand<'a>(text: &'a str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, &'a str> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("%%env_") {
        let after = &rest[start + 6..];
        let Some(end) = after.find("%%") else {
            break;
        };
        let name = &after[..end];
        let value = env(name).ok_or(name)?;
        out.push_str(&rest[..start]);
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn userinfo(user: &str, password: Option<&str>) -> String {
    match password {
        Some(password) => format!("{}:{}", encode(user), encode(password)),
        None => encode(user),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;

//! Real PostgreSQL, Redis and Memcached servers for the integration-check
//! tests: each on a free loopback port, in its own temporary directory,
//! stopped when dropped.
//!
//! The servers come from Debian packages (`scripts/lib.sh` installs them). A
//! missing binary fails the test with the command that installs it; no test
//! skips. PostgreSQL refuses to run as root, so as root it runs as the
//! `postgres` user the package creates.

// A harness for tests: a server that cannot start fails the test, loudly.
#![allow(clippy::expect_used)]

use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::wait_for;

/// What to run when a server binary is missing.
pub const INSTALL: &str = "install it: apt-get install postgresql redis-server memcached";

/// How long a server may take to accept connections.
const STARTUP: Duration = Duration::from_secs(20);

/// A free TCP port on 127.0.0.1 (free when this returns; the server binds it next).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().expect("a bound address").port()
}

/// The path of `name` in `PATH` or the sbin directories, or a failure saying what to install.
pub fn require(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path.split(':').chain(["/usr/sbin", "/sbin", "/usr/bin"]);
    for dir in dirs {
        let candidate = Path::new(dir).join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{name}` is not installed: {INSTALL}");
}

fn run(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn wait_for_port(port: u16, what: &str) {
    wait_for(STARTUP, what, || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

fn wait_for_closed(port: u16, what: &str) {
    wait_for(STARTUP, what, || {
        TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
}

/// A self-signed certificate for `localhost` / 127.0.0.1, made with `openssl`.
#[derive(Debug)]
pub struct Certificate {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key (mode 0600).
    pub key: PathBuf,
}

impl Certificate {
    /// Writes `cert.pem` and `key.pem` into `dir`.
    pub fn generate(dir: &Path) -> Certificate {
        let openssl = require("openssl");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        run(
            Command::new(openssl)
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=localhost"])
                .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
            "openssl req (self-signed certificate)",
        );
        // PostgreSQL refuses a key others can read.
        fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod 600 key.pem");
        Certificate { cert, key }
    }
}

/// The uid and gid of a system user, from `/etc/passwd`.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name) && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

fn is_root() -> bool {
    // The owner of /proc/self is the effective user.
    fs::metadata("/proc/self")
        .map(|meta| std::os::unix::fs::MetadataExt::uid(&meta) == 0)
        .unwrap_or(false)
}

/// A PostgreSQL cluster with TLS available, a superuser `postgres` (trusted on
/// the unix socket only) and a database `app` owned by user `app`, whose
/// password is checked over TCP.
#[derive(Debug)]
pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    /// Run server commands as this user (`postgres`) when the tests run as root.
    run_as: Option<(u32, u32)>,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    running: bool,
}

/// The `app` user's password.
pub const PG_PASSWORD: &str = "app-Pa55word";

impl Postgres {
    /// initdb, start, create the `app` user and database.
    pub fn start() -> Postgres {
        let bin = postgres_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("dynoscope-pg")
            .tempdir()
            .expect("a temporary directory");
        let run_as =
            if is_root() {
                Some(user_ids("postgres").unwrap_or_else(|| {
                    panic!("running as root needs the `postgres` user: {INSTALL}")
                }))
            } else {
                None
            };
        let cert = Certificate::generate(dir.path());
        let password_file = dir.path().join("pwfile");
        fs::write(&password_file, "postgres-admin\n").expect("writing the password file");
        if let Some((uid, gid)) = run_as {
            for path in [dir.path(), &cert.cert, &cert.key, &password_file] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        let pg = Postgres {
            dir,
            bin,
            run_as,
            port: free_port(),
            running: false,
        };
        let data = pg.data();
        pg.run(
            pg.command("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-E", "UTF8", "--no-sync"])
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", password_file.display())),
            "initdb",
        );
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nfsync = off\nmax_connections = 50\n",
            pg.port,
            pg.dir.path().display(),
            cert.cert.display(),
            cert.key.display()
        );
        fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut file| file.write_all(conf.as_bytes()))
            .expect("writing postgresql.conf");
        let mut pg = pg;
        pg.resume();
        pg.psql_admin(&format!(
            "CREATE USER app PASSWORD '{PG_PASSWORD}'; CREATE DATABASE app OWNER app;"
        ));
        pg
    }

    /// `postgres://app:…@127.0.0.1:PORT/app?sslmode=…`.
    pub fn url(&self, ssl_mode: &str) -> String {
        format!(
            "postgres://app:{PG_PASSWORD}@127.0.0.1:{}/app?sslmode={ssl_mode}",
            self.port
        )
    }

    /// Runs SQL in the `app` database as its owner.
    pub fn psql(&self, sql: &str) -> String {
        let output = self.run(
            Command::new(self.bin.join("psql"))
                .arg("-h")
                .arg(self.dir.path())
                .args(["-p", &self.port.to_string(), "-U", "app", "-d", "app"])
                .args(["-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql]),
            "psql",
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn psql_admin(&self, sql: &str) {
        for statement in sql.split_terminator(';') {
            self.run(
                Command::new(self.bin.join("psql"))
                    .arg("-h")
                    .arg(self.dir.path())
                    .args([
                        "-p",
                        &self.port.to_string(),
                        "-U",
                        "postgres",
                        "-d",
                        "postgres",
                    ])
                    .args(["-v", "ON_ERROR_STOP=1", "-qAt", "-c", statement]),
                "psql as postgres",
            );
        }
    }

    /// Stops the server (`pg_ctl stop -m fast`); the data stays.
    pub fn stop(&mut self) {
        if self.running {
            self.running = false;
            let data = self.data();
            self.run(
                self.command("pg_ctl")
                    .arg("-D")
                    .arg(&data)
                    .args(["-m", "fast", "-w", "stop"]),
                "pg_ctl stop",
            );
            wait_for_closed(self.port, "postgres to stop listening");
        }
    }

    /// Starts the stopped server again on the same port.
    pub fn resume(&mut self) {
        let data = self.data();
        let log = self.dir.path().join("postgres.log");
        self.run(
            self.command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "30", "start"]),
            "pg_ctl start",
        );
        self.running = true;
        wait_for_port(self.port, "postgres to listen");
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A server command, as the `postgres` user when running as root.
    fn command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        match self.run_as {
            Some(_) => {
                let mut command = Command::new(require("runuser"));
                command.args(["-u", "postgres", "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn run(&self, command: &mut Command, what: &str) -> Output {
        run(command.stdin(Stdio::null()), what)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data();
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn postgres_bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path().join("bin"))
                .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().unwrap_or_else(|| {
        panic!("PostgreSQL's initdb is not in /usr/lib/postgresql/*/bin: {INSTALL}")
    })
}

/// How to start a [`Redis`].
#[derive(Clone, Debug, Default)]
pub struct RedisOptions {
    /// `--requirepass`.
    pub password: Option<String>,
    /// Also listen with TLS (self-signed certificate) on [`Redis::tls_port`].
    pub tls: bool,
}

/// A redis-server without persistence.
#[derive(Debug)]
pub struct Redis {
    dir: TempDir,
    options: RedisOptions,
    child: Option<Child>,
    /// Plain TCP port on 127.0.0.1.
    pub port: u16,
    /// TLS port, when started with `tls`.
    pub tls_port: Option<u16>,
}

impl Redis {
    /// Starts a redis-server.
    pub fn start(options: RedisOptions) -> Redis {
        require("redis-server");
        let dir = tempfile::Builder::new()
            .prefix("dynoscope-redis")
            .tempdir()
            .expect("a temporary directory");
        let tls_port = options.tls.then(free_port);
        let mut redis = Redis {
            dir,
            options,
            child: None,
            port: free_port(),
            tls_port,
        };
        if redis.options.tls {
            Certificate::generate(redis.dir.path());
        }
        redis.resume();
        redis
    }

    /// `redis://…@127.0.0.1:PORT/db`.
    pub fn url(&self, db: u32) -> String {
        match &self.options.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/{db}", self.port),
            None => format!("redis://127.0.0.1:{}/{db}", self.port),
        }
    }

    /// Runs commands (one per line) with redis-cli against database `db`.
    pub fn cli(&self, db: u32, commands: &str) -> String {
        let mut command = Command::new(require("redis-cli"));
        command.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-n",
            &db.to_string(),
        ]);
        if let Some(password) = &self.options.password {
            command.env("REDISCLI_AUTH", password);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting redis-cli");
        child
            .stdin
            .take()
            .expect("redis-cli's stdin")
            .write_all(commands.as_bytes())
            .expect("writing to redis-cli");
        let output = child.wait_with_output().expect("redis-cli");
        assert!(output.status.success(), "redis-cli failed: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            wait_for_closed(self.port, "redis to stop listening");
        }
    }

    /// Starts the server again on the same ports.
    pub fn resume(&mut self) {
        let mut command = Command::new(require("redis-server"));
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if let Some(password) = &self.options.password {
            command.args(["--requirepass", password]);
        }
        if let Some(tls_port) = self.tls_port {
            let dir = self.dir.path();
            command
                .args(["--tls-port", &tls_port.to_string()])
                .arg("--tls-cert-file")
                .arg(dir.join("cert.pem"))
                .arg("--tls-key-file")
                .arg(dir.join("key.pem"))
                .arg("--tls-ca-cert-file")
                .arg(dir.join("cert.pem"))
                .args(["--tls-auth-clients", "no"]);
        }
        let log = fs::File::create(self.dir.path().join("redis.log")).expect("redis.log");
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("starting redis-server: {error}: {INSTALL}"));
        self.child = Some(child);
        wait_for_port(self.port, "redis to listen");
        if let Some(tls_port) = self.tls_port {
            wait_for_port(tls_port, "redis to listen with TLS");
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A memcached, optionally with SASL (binary protocol only, as the hosted services run it).
#[derive(Debug)]
pub struct Memcached {
    dir: TempDir,
    sasl: Option<(String, String)>,
    child: Option<Child>,
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

impl Memcached {
    /// Starts a memcached; with `sasl`, only that user and password get in.
    pub fn start(sasl: Option<(&str, &str)>) -> Memcached {
        require("memcached");
        let dir = tempfile::Builder::new()
            .prefix("dynoscope-memcached")
            .tempdir()
            .expect("a temporary directory");
        let sasl = sasl.map(|(user, password)| (user.to_owned(), password.to_owned()));
        if let Some((user, password)) = &sasl {
            let db = dir.path().join("sasldb2");
            fs::write(
                dir.path().join("memcached.conf"),
                format!("mech_list: plain\nsasldb_path: {}\n", db.display()),
            )
            .expect("writing memcached.conf");
            let mut child = Command::new(require("saslpasswd2"))
                .args(["-a", "memcached", "-c", "-p", "-f"])
                .arg(&db)
                .arg(user)
                .stdin(Stdio::piped())
                .spawn()
                .unwrap_or_else(|error| panic!("saslpasswd2: {error}: apt-get install sasl2-bin"));
            child
                .stdin
                .take()
                .expect("saslpasswd2's stdin")
                .write_all(password.as_bytes())
                .expect("writing the SASL password");
            assert!(
                child.wait().expect("saslpasswd2").success(),
                "saslpasswd2 failed"
            );
        }
        let mut memcached = Memcached {
            dir,
            sasl,
            child: None,
            port: free_port(),
        };
        memcached.resume();
        memcached
    }

    /// Sends raw text-protocol commands and returns what came back before `END`/`STORED`….
    pub fn send(&self, request: &str) -> String {
        use std::io::Read;
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connecting to memcached");
        stream
            .write_all(request.as_bytes())
            .expect("writing to memcached");
        stream.write_all(b"quit\r\n").expect("writing to memcached");
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            wait_for_closed(self.port, "memcached to stop listening");
        }
    }

    /// Starts the server again on the same port.
    pub fn resume(&mut self) {
        let mut command = Command::new(require("memcached"));
        command.args([
            "-p",
            &self.port.to_string(),
            "-l",
            "127.0.0.1",
            "-U",
            "0",
            "-m",
            "16",
        ]);
        if is_root() {
            command.args(["-u", "root"]);
        }
        if self.sasl.is_some() {
            command.arg("-S").env("SASL_CONF_PATH", self.dir.path());
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("starting memcached: {error}: {INSTALL}"));
        self.child = Some(child);
        wait_for_port(self.port, "memcached to listen");
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

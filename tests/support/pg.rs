//! A real PostgreSQL for the tests: ONE server per test binary, started on first
//! use in a temporary directory on a free loopback port (`initdb` and `pg_ctl`
//! from the system's PostgreSQL; as the `postgres` user when the tests run as
//! root, since PostgreSQL refuses to run as root), stopped and removed when the
//! test binary exits (a watcher process waits for it, so even a killed test
//! binary leaves no server behind). Each rosterd data directory gets a fresh
//! database of its own (`CREATE DATABASE t_<n>`): a daemon restarted on the
//! same data directory finds its data again.
//!
//! `TEST_STORE=postgres` runs the suite's daemons on it (see
//! [`test_store_is_postgres`]); without it only the tests that ask for
//! PostgreSQL use it. (Not a `ROSTERD_` name: rosterd refuses unknown
//! `ROSTERD_*` variables, and the tests start the real binary.)
//!
//! Shared with the SCIM conformance suite (`scim-tests`), which includes this
//! file: std only.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct PgServer {
    pub port: u16,
    /// Holds the cluster (`data/`), the socket and the log.
    pub dir: PathBuf,
    bin: PathBuf,
    databases: Mutex<HashMap<PathBuf, String>>,
    next: Mutex<u64>,
}

/// Whether the suite runs its daemons on PostgreSQL (`TEST_STORE=postgres`).
pub fn test_store_is_postgres() -> bool {
    std::env::var("TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// The shared server, started on first use.
pub fn server() -> &'static PgServer {
    static PG: OnceLock<PgServer> = OnceLock::new();
    PG.get_or_init(start)
}

/// Where the system's PostgreSQL programs are: `pg_ctl` on PATH, else
/// Debian's `/usr/lib/postgresql/<major>/bin` (the newest).
fn bin_dir() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if d.join("pg_ctl").is_file() && d.join("initdb").is_file() {
                return d;
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|r| {
            r.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|d| d.join("pg_ctl").is_file());
    found.sort_by_key(|d| {
        d.parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .expect("PostgreSQL is not installed (initdb / pg_ctl); scripts/test.sh installs it")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args…`, as the `postgres` user when we are root.
fn pg_command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

// The watcher is meant to outlive this process (it stops the server after it).
#[allow(clippy::zombie_processes)]
fn start() -> PgServer {
    let bin = bin_dir();
    let dir = std::env::temp_dir().join(format!("rosterd-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("pg dir");
    if is_root() {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(st.success(), "chown {} to postgres", dir.display());
    }
    let data = dir.join("data");
    let out = pg_command(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .stdout(Stdio::null())
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // fsync off: the tests kill rosterd, never the machine (a commit still
    // reaches the server's WAL before it is acknowledged).
    let mut port = 0;
    for _ in 0..5 {
        port = free_port();
        // `ROSTERD_TEST_PG_OPTS` adds server options (to profile a benchmark:
        // `-c shared_preload_libraries=pg_stat_statements`).
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400 -c shared_buffers=64MB {}",
            dir.display(),
            std::env::var("ROSTERD_TEST_PG_OPTS").unwrap_or_default()
        );
        let st = pg_command(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-o", &opts, "-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .status()
            .expect("run pg_ctl");
        if st.success() {
            break;
        }
        port = 0;
    }
    assert!(
        port != 0,
        "PostgreSQL did not start; log:\n{}",
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
    // Stopped and removed once this test binary exits, however it exits (the
    // watcher runs as we do, so that it may signal this process).
    let me = std::process::id();
    let as_postgres = if is_root() {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; \
         {as_postgres}{pgctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
        pgctl = bin.join("pg_ctl").display(),
        data = data.display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the PostgreSQL watcher");
    PgServer {
        port,
        dir,
        bin,
        databases: Mutex::new(HashMap::new()),
        next: Mutex::new(0),
    }
}

impl PgServer {
    /// The URL of database `db` (user `postgres`, no password: trust).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A client tool of this server's PostgreSQL (from `PATH` when its
    /// directory lacks it), aimed at the server as the superuser.
    fn client(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut c = Command::new(if path.is_file() {
            path
        } else {
            PathBuf::from(tool)
        });
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ]);
        c
    }

    /// Runs SQL as the superuser in `db`; returns its output (tab-separated rows).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .client("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db])
            .args(["-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A fresh, empty database.
    pub fn fresh_database(&self) -> String {
        let n = {
            let mut next = self.next.lock().unwrap();
            *next += 1;
            *next
        };
        let name = format!("t_{n}");
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// The database of one rosterd data directory (created on first use).
    pub fn database_for(&self, data_dir: &Path) -> String {
        let key = data_dir.to_path_buf();
        if let Some(db) = self.databases.lock().unwrap().get(&key) {
            return db.clone();
        }
        let db = self.fresh_database();
        self.databases.lock().unwrap().insert(key, db.clone());
        db
    }

    /// `pg_dump` of database `db` (schema and data, as text).
    pub fn dump(&self, db: &str) -> Vec<u8> {
        let out = self
            .client("pg_dump")
            .arg(db)
            .output()
            .expect("run pg_dump");
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Waits (bounded) until the server answers.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while TcpListener::bind(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "PostgreSQL is not listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The `[store]` settings of a daemon on its own database (for `data_dir`).
pub fn pg_settings_for(data_dir: &Path) -> rosterd::store::config::PgSettings {
    let pg = server();
    let mut s = rosterd::store::config::PgSettings::new(pg.url(&pg.database_for(data_dir)));
    s.pool_size = 4;
    s
}

/// `config` on PostgreSQL when the suite runs on it (`TEST_STORE=postgres`).
pub fn with_test_store(
    mut config: rosterd::config::Config,
    data_dir: &Path,
) -> rosterd::config::Config {
    if test_store_is_postgres() {
        config.store = rosterd::store::config::StoreConfig::Postgres(pg_settings_for(data_dir));
    }
    config
}

/// The environment that puts a `rosterd` process on PostgreSQL when the
/// suite runs on it (`TEST_STORE=postgres`): its `[store]` overrides.
pub fn test_store_env(data_dir: &Path) -> Vec<(String, String)> {
    if !test_store_is_postgres() {
        return vec![];
    }
    let pg = server();
    vec![
        ("ROSTERD_STORE__BACKEND".into(), "postgres".into()),
        (
            "ROSTERD_STORE__URL".into(),
            pg.url(&pg.database_for(data_dir)),
        ),
        ("ROSTERD_STORE__POOL_SIZE".into(), "4".into()),
    ]
}

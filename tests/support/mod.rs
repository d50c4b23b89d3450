//! The harness shared by the integration tests (`tests/it`, as `crate::support`)
//! and the benchmarks (`benches/*.rs`), path-included by both
//! (`#[path = ".../tests/support/mod.rs"] mod support;`), so there is one way to
//! build a config, start the real binary, start slapd and wait on a port:
//!
//! - here: the shipped config without its demo source ([`shipped_config`]),
//!   [`replace_once`] for config tweaks, [`parse_config`] for an in-process daemon;
//! - [`process`]: free ports, waiting for a port, killing a shared server at exit,
//!   a process's `/proc` memory figures;
//! - [`rosterd`]: the real `rosterd` binary with a config file and env (ready when
//!   it logs its address; signals; stopped on drop);
//! - [`slapd`]: a `slapd` on a free loopback port with a given `slapd.conf`;
//! - [`smtp`]: a real SMTP server (aiosmtpd) that keeps what it receives;
//! - [`http`]: a small blocking HTTP client;
//! - [`pg`]: one PostgreSQL per test binary, a database per daemon, and
//!   `TEST_STORE=postgres` (which backend the suites run on);
//! - [`writes`]: a store-level write for the store tests and benchmark.

// Each includer uses its own part; test code: a failed unwrap is a failed run.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::zombie_processes
)]

pub mod http;
pub mod pg;
pub mod process;
pub mod rosterd;
pub mod slapd;
pub mod smtp;
pub mod writes;

use std::path::{Path, PathBuf};

/// The line in `config/rosterd.toml` where the demo HR source starts.
pub const DEMO_MARKER: &str = "# ---- demo HR source";

/// `config/rosterd.toml`, as shipped (with its demo HR source).
pub fn shipped_config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rosterd.toml")
}

/// The shipped config without its demo HR source, so that a test or a benchmark
/// starts with an empty roster and the same catalogs as the README. Panics when
/// the demo's marker line is gone (the cut would silently keep the demo).
pub fn shipped_config() -> String {
    let text = std::fs::read_to_string(shipped_config_path()).expect("config/rosterd.toml");
    match text.find(DEMO_MARKER) {
        Some(i) => text[..i].to_string(),
        None => panic!("config/rosterd.toml has no `{DEMO_MARKER}` line to cut the demo at"),
    }
}

/// Writes the shipped config without its demo source, plus `extra`, to `path`
/// (for the real binary's `--config`); returns `path`.
pub fn write_config(path: &Path, extra: &str) -> PathBuf {
    std::fs::write(path, format!("{}\n{extra}\n", shipped_config())).expect("write the config");
    path.to_path_buf()
}

/// `text` with its one occurrence of `from` replaced by `to`. Panics, naming
/// `from`, when `from` is missing or appears more than once: a config tweak that
/// matches nothing would otherwise test nothing, silently.
#[track_caller]
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    match text.matches(from).count() {
        1 => text.replacen(from, to, 1),
        0 => panic!("replace_once: `{from}` is not in the text:\n{text}"),
        n => panic!("replace_once: `{from}` appears {n} times in the text:\n{text}"),
    }
}

/// `text` parsed as the daemon would with `ROSTERD_LISTEN=127.0.0.1:0` and
/// `ROSTERD_DATA_DIR=data_dir` (for a daemon started in-process).
pub fn parse_config(text: &str, data_dir: &Path) -> ::rosterd::config::Config {
    let env = vec![
        ("ROSTERD_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        (
            "ROSTERD_DATA_DIR".to_string(),
            data_dir.display().to_string(),
        ),
    ];
    ::rosterd::config::parse(Path::new("test.toml"), text, &env).expect("test config")
}

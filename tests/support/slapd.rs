//! Starting an OpenLDAP `slapd` (Debian's): the one starter under the tests'
//! shared and own directories and the benchmarks' loaded ones. Each caller
//! writes its own `slapd.conf` (schemas, database, overlays).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::process::{free_port, wait_for_port};

/// The slapd binary, or a panic saying how to install it.
fn binary() -> &'static str {
    ["/usr/sbin/slapd", "/usr/local/sbin/slapd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("slapd is not installed: run ./scripts/test.sh, which installs Debian's slapd and ldap-utils")
}

/// Starts slapd with `conf` (a `slapd.conf` path) on a free port of 127.0.0.1
/// and waits until it accepts connections (10 s a try, five tries on fresh
/// ports, as another process may take a port between the pick and the bind).
pub fn launch(conf: &Path) -> (u16, Child) {
    let slapd = binary();
    let mut last_err = String::new();
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new(slapd)
            .arg("-f")
            .arg(conf)
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{port}/"))
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn slapd");
        if wait_for_port(port, Duration::from_secs(10)) {
            return (port, child);
        }
        last_err = format!("slapd did not listen on port {port}");
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{last_err}");
}

//! A throwaway OpenLDAP `slapd` for the benchmarks (`#[path]`-included by
//! `ldap_sync.rs` and `scale.rs`, beside `tests/support` as `support`): an LDIF
//! is loaded with `slapadd` into an mdb database under a temp dir, the server
//! is started by the tests' starter (`support::slapd::launch`, a free port of
//! 127.0.0.1) and is stopped when dropped; `dump` times an `ldapsearch` of the
//! same entries (paged as rosterd pages, to /dev/null).

#![allow(dead_code)] // each bench uses its own part

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=bench,dc=example";
pub const ROOT_DN: &str = "cn=admin,dc=bench,dc=example";
pub const ROOT_PW: &str = "bench-secret";

/// The LDIF of the suffix, `ou=people` and `ou=groups`, and `n` people
/// `uid=u{i}` (half in department 100, half in 200), each with the lines
/// `extra(i)` adds (ending in a newline).
pub fn people_ldif(n: usize, extra: impl Fn(usize) -> String) -> String {
    let mut s = String::with_capacity(n * 320);
    s.push_str(&format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Bench\ndc: bench\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
    ));
    for i in 0..n {
        s.push_str(&format!(
            "dn: uid=u{i},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: u{i}\ncn: User {i}\n\
             givenName: User\nsn: Number{i}\nmail: u{i}@bench.example\nmobile: +1 555 {:04}\n\
             departmentNumber: {}\n{}\n",
            i % 10000,
            if i % 2 == 0 { "100" } else { "200" },
            extra(i)
        ));
    }
    s
}

pub struct Slapd {
    child: Child,
    pub port: u16,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Slapd {
    /// Loads `ldif` (which must create `SUFFIX`) into a database under `dir`
    /// and starts slapd on a free port (waits until it accepts connections).
    pub fn start(dir: &Path, ldif: &str) -> Slapd {
        std::fs::create_dir_all(dir.join("db")).expect("db dir");
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/nis.schema\ninclude /etc/ldap/schema/inetorgperson.schema\n\
             pidfile {0}/slapd.pid\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\ndatabase mdb\n\
             suffix \"{SUFFIX}\"\nrootdn \"{ROOT_DN}\"\nrootpw {ROOT_PW}\ndirectory {0}/db\n\
             maxsize 8589934592\nindex objectClass eq\n",
            dir.display()
        );
        std::fs::write(dir.join("slapd.conf"), conf).expect("conf");
        std::fs::write(dir.join("data.ldif"), ldif).expect("ldif");
        let t = Instant::now();
        let st = Command::new("/usr/sbin/slapadd")
            .arg("-f")
            .arg(dir.join("slapd.conf"))
            .arg("-q")
            .arg("-l")
            .arg(dir.join("data.ldif"))
            .status()
            .expect("slapadd (install slapd)");
        assert!(st.success(), "slapadd failed");
        println!("loaded the LDIF with slapadd in {:.2?}", t.elapsed());
        let (port, child) = crate::support::slapd::launch(&dir.join("slapd.conf"));
        Slapd { child, port }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// Times an `ldapsearch` of `filter` under `base` (paged by 1000, to /dev/null).
    pub fn dump(&self, base: &str, filter: &str) -> Duration {
        let t = Instant::now();
        let st = Command::new("ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-H",
                &self.url(),
                "-D",
                ROOT_DN,
                "-w",
                ROOT_PW,
            ])
            .args(["-b", base, "-E", "pr=1000/noprompt", filter])
            .stdout(Stdio::null())
            .status()
            .expect("ldapsearch (install ldap-utils)");
        assert!(st.success(), "ldapsearch failed");
        t.elapsed()
    }

    /// `ldapmodify` with `ldif` on its standard input.
    pub fn modify(&self, ldif: &str) {
        use std::io::Write;
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PW])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("ldapmodify");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ldif.as_bytes())
            .expect("write");
        assert!(child.wait().expect("ldapmodify").success());
    }
}

//! A real OpenLDAP `slapd`, one per test binary (shared by the tests, each working
//! in its own subtree), on a free loopback port with a throwaway database, with the
//! `syncprov` overlay (RFC 4533 content sync, from Debian's `/usr/lib/ldap`). Killed
//! when the test binary exits. A test that stops its directory mid-run starts
//! one of its own ([`OwnSlapd`]). Plus a TCP proxy that can slow down or cut the
//! connection, and counts what the server sent.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, Mod};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const SUFFIX: &str = "dc=example,dc=com";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
pub const ADMIN_PW: &str = "test-admin-secret";
pub const LIMITED_DN: &str = "cn=limited,dc=example,dc=com";
pub const LIMITED_PW: &str = "limited-secret";

pub struct Slapd {
    pub port: u16,
    pub dir: PathBuf,
    _child: Mutex<Child>,
}

static SLAPD: OnceLock<Slapd> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn start() -> Slapd {
    let dir = std::env::temp_dir().join(format!("rosterd-slapd-{}", std::process::id()));
    let (port, child) = launch(&dir);
    crate::support::process::kill_at_exit(child.id());
    Slapd {
        port,
        dir,
        _child: Mutex::new(child),
    }
}

/// Starts a slapd with a fresh database in `dir` (content sync on, the
/// size-limited account's limit) on a free port.
fn launch(dir: &std::path::Path) -> (u16, Child) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("db")).expect("slapd dir");
    let conf = format!(
        r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {dir}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload syncprov
database mdb
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PW}
directory {dir}/db
maxsize 4294967296
index entryCSN,entryUUID eq
limits dn.exact="{LIMITED_DN}" size=5
access to * by * read
overlay syncprov
"#,
        dir = dir.display()
    );
    std::fs::write(dir.join("slapd.conf"), conf).expect("slapd.conf");
    crate::support::slapd::launch(&dir.join("slapd.conf"))
}

/// A slapd of one test's own, which the test may stop: killed when dropped.
pub struct OwnSlapd {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl OwnSlapd {
    /// Starts it, with the suffix created.
    pub async fn start(name: &str) -> OwnSlapd {
        let dir = std::env::temp_dir().join(format!("rosterd-slapd-{}-{name}", std::process::id()));
        let (port, child) = launch(&dir);
        let own = OwnSlapd { port, dir, child };
        let mut l = admin(port).await;
        add_suffix(&mut l).await;
        let _ = l.unbind().await;
        own
    }

    /// Stops it as an admin would (SIGTERM) and waits until it has exited.
    pub fn stop(&mut self) {
        // SAFETY: sending a signal to the child we started and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().expect("wait for slapd");
    }
}

impl Drop for OwnSlapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shared slapd, with the suffix and the size-limited account created.
pub async fn slapd() -> &'static Slapd {
    static INIT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let s = SLAPD.get_or_init(start);
    INIT.get_or_init(|| async {
        let mut l = admin(s.port).await;
        add_suffix(&mut l).await;
        add(
            &mut l,
            LIMITED_DN,
            &[
                (
                    "objectClass",
                    &["organizationalRole", "simpleSecurityObject"],
                ),
                ("cn", &["limited"]),
                ("userPassword", &[LIMITED_PW]),
            ],
        )
        .await;
    })
    .await;
    s
}

/// The suffix entry every database here starts with.
async fn add_suffix(l: &mut Ldap) {
    add(
        l,
        SUFFIX,
        &[
            ("objectClass", &["dcObject", "organization"]),
            ("o", &["Example"]),
            ("dc", &["example"]),
        ],
    )
    .await;
}

pub async fn admin(port: u16) -> Ldap {
    let (conn, mut ldap) = LdapConnAsync::new(&format!("ldap://127.0.0.1:{port}"))
        .await
        .expect("connect to slapd");
    ldap3::drive!(conn);
    ldap.simple_bind(ADMIN_DN, ADMIN_PW)
        .await
        .and_then(|r| r.success())
        .expect("bind as admin");
    ldap
}

pub async fn add(l: &mut Ldap, dn: &str, attrs: &[(&str, &[&str])]) {
    let attrs: Vec<(&str, HashSet<&str>)> = attrs
        .iter()
        .map(|(k, v)| (*k, v.iter().copied().collect()))
        .collect();
    l.add(dn, attrs)
        .await
        .and_then(|r| r.success())
        .unwrap_or_else(|e| panic!("add {dn}: {e}"));
}

pub async fn replace(l: &mut Ldap, dn: &str, attr: &str, values: &[&str]) {
    let vals: HashSet<&str> = values.iter().copied().collect();
    l.modify(dn, vec![Mod::Replace(attr, vals)])
        .await
        .and_then(|r| r.success())
        .unwrap_or_else(|e| panic!("modify {dn}: {e}"));
}

pub async fn delete(l: &mut Ldap, dn: &str) {
    l.delete(dn)
        .await
        .and_then(|r| r.success())
        .unwrap_or_else(|e| panic!("delete {dn}: {e}"));
}

/// A fresh subtree `ou=<name>-<n>` with `ou=people` and `ou=groups` below it.
pub struct Tree {
    pub base: String,
    pub people: String,
    pub groups: String,
}

impl Tree {
    pub async fn new(l: &mut Ldap, name: &str) -> Tree {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let ou = format!("{name}-{n}");
        let base = format!("ou={ou},{SUFFIX}");
        add(
            l,
            &base,
            &[("objectClass", &["organizationalUnit"]), ("ou", &[&ou])],
        )
        .await;
        let people = format!("ou=people,{base}");
        let groups = format!("ou=groups,{base}");
        add(
            l,
            &people,
            &[
                ("objectClass", &["organizationalUnit"]),
                ("ou", &["people"]),
            ],
        )
        .await;
        add(
            l,
            &groups,
            &[
                ("objectClass", &["organizationalUnit"]),
                ("ou", &["groups"]),
            ],
        )
        .await;
        Tree {
            base,
            people,
            groups,
        }
    }

    pub fn person_dn(&self, uid: &str) -> String {
        format!("uid={uid},{}", self.people)
    }

    pub fn group_dn(&self, cn: &str) -> String {
        format!("cn={cn},{}", self.groups)
    }

    /// Adds an inetOrgPerson; `extra` adds or overrides attributes.
    pub async fn person(
        &self,
        l: &mut Ldap,
        uid: &str,
        given: &str,
        sn: &str,
        mail: &str,
        extra: &[(&str, &[&str])],
    ) {
        let dn = self.person_dn(uid);
        let mut attrs: Vec<(&str, &[&str])> = vec![
            ("objectClass", &["inetOrgPerson"]),
            ("uid", std::slice::from_ref(&uid)),
            ("cn", std::slice::from_ref(&given)),
            ("givenName", std::slice::from_ref(&given)),
            ("sn", std::slice::from_ref(&sn)),
        ];
        if !mail.is_empty() {
            attrs.push(("mail", std::slice::from_ref(&mail)));
        }
        attrs.extend_from_slice(extra);
        add(l, &dn, &attrs).await;
    }

    /// Adds a groupOfNames whose members are DNs (people or groups).
    pub async fn group(&self, l: &mut Ldap, cn: &str, members: &[String]) {
        let dn = self.group_dn(cn);
        let m: Vec<&str> = members.iter().map(String::as_str).collect();
        add(
            l,
            &dn,
            &[
                ("objectClass", &["groupOfNames"]),
                ("cn", &[cn]),
                ("member", &m),
            ],
        )
        .await;
    }
}

/// A TCP proxy in front of slapd that can delay each server→client chunk and cut
/// the connection after some bytes have gone through.
pub struct Proxy {
    pub port: u16,
    pub cut_after: Arc<AtomicU64>,
    /// Bytes the server sent through the proxy so far, over all connections.
    pub received: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: u16, delay: Duration) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy bind");
        let port = listener.local_addr().expect("addr").port();
        let cut_after = Arc::new(AtomicU64::new(u64::MAX));
        let cut = cut_after.clone();
        let received = Arc::new(AtomicU64::new(0));
        let total = received.clone();
        let task = tokio::spawn(async move {
            // Bounded: at most 64 connections over the proxy's life.
            for _ in 0..64 {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let cut = cut.clone();
                let total = total.clone();
                tokio::spawn(async move {
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let (mut cr, mut cw) = client.split();
                    let (mut sr, mut sw) = server.split();
                    let up = async {
                        let mut buf = [0u8; 16384];
                        loop {
                            match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if sw.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    };
                    let down = async {
                        let mut buf = [0u8; 16384];
                        let mut sent = 0u64;
                        loop {
                            match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    total.fetch_add(n as u64, Ordering::SeqCst);
                                    if !delay.is_zero() {
                                        tokio::time::sleep(delay).await;
                                    }
                                    let limit = cut.load(Ordering::SeqCst);
                                    if sent + n as u64 > limit {
                                        let keep = limit.saturating_sub(sent) as usize;
                                        let _ = cw.write_all(&buf[..keep]).await;
                                        break;
                                    }
                                    sent += n as u64;
                                    if cw.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    };
                    tokio::select! { _ = up => {}, _ = down => {} }
                });
            }
        });
        Proxy {
            port,
            cut_after,
            received,
            task,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Adds the entries of an LDIF text with Debian's `ldapadd` (ldap-utils), bound as
/// the admin.
pub fn ldapadd(port: u16, ldif: &str) {
    use std::io::Write;
    let mut child = Command::new("ldapadd")
        .args(["-x", "-H", &format!("ldap://127.0.0.1:{port}")])
        .args(["-D", ADMIN_DN, "-w", ADMIN_PW])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ldapadd is not installed: run ./scripts/test.sh, which installs ldap-utils");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(ldif.as_bytes())
        .expect("write LDIF");
    let out = child.wait_with_output().expect("ldapadd");
    assert!(
        out.status.success(),
        "ldapadd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first value of `attr` in the entry `dn` of an LDIF text, decoded (base64
/// values `attr:: ...`, continuation lines folded).
pub fn ldif_value(ldif: &str, dn: &str, attr: &str) -> Vec<u8> {
    use base64::Engine;
    let unfolded = ldif.replace("\n ", "");
    let entry = unfolded
        .split("\n\n")
        .find(|e| e.lines().any(|l| l == format!("dn: {dn}")))
        .unwrap_or_else(|| panic!("no entry {dn}"));
    let line = entry
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{attr}:: ")))
        .unwrap_or_else(|| panic!("no base64 {attr} in {dn}"));
    base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .expect("base64")
}

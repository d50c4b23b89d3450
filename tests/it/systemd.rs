//! The real rosterd binary under a fake systemd: a unix datagram socket as
//! NOTIFY_SOCKET receives READY=1 (after the port answers), WATCHDOG=1 at the
//! configured rate, STATUS= lines and STOPPING=1 on SIGTERM. Also the unix socket
//! listener and socket activation (LISTEN_FDS).

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::common::Rosterd;
use crate::support::{shipped_config_path, write_config};

fn recv_all(sock: &UnixDatagram, until: Instant) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        sock.set_read_timeout(Some(
            until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    out
}

#[test]
fn notify_ready_watchdog_status_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut child = Rosterd::launch(&shipped_config_path(), &dir.path().join("data"))
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .start();

    // READY=1 first, with a STATUS line; the port answers at that moment.
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let ready = sock
        .recv(&mut buf)
        .ok()
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    let ready = ready.unwrap_or_else(|| panic!("no notification within 30 s"));
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(ready.contains("STATUS=serving"), "{ready}");
    let addr = child.base.trim_start_matches("http://").to_string();
    std::net::TcpStream::connect(&addr).expect("the port answers once READY=1 is sent");

    // WATCHDOG=1 at half the 200 ms interval: about 10 in one second.
    let msgs = recv_all(&sock, Instant::now() + Duration::from_secs(1));
    let pings = msgs.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(
        (5..=30).contains(&pings),
        "{pings} watchdog pings in 1 s: {msgs:?}"
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    child.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.contains("STOPPING=1")) && Instant::now() < deadline {
        seen.extend(recv_all(&sock, Instant::now() + Duration::from_millis(200)));
    }
    assert!(seen.iter().any(|m| m.contains("STOPPING=1")), "{seen:?}");
    let status = child.wait_exit();
    assert_eq!(status.code(), Some(0));
}

/// One HTTP/1.1 request over a stream; returns the raw response.
fn http(
    stream: &mut (impl std::io::Read + std::io::Write),
    path: &str,
    token: Option<&str>,
) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: rosterd\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn also_serves_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("rosterd.sock");
    // A stale socket file from an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    // Without the demo source, whose import at start would race the empty
    // list asserted below.
    let config = write_config(&dir.path().join("rosterd.toml"), "");
    let p = Rosterd::launch(&config, &dir.path().join("data"))
        .env("ROSTERD_LISTEN_UNIX", &sock)
        .start();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let resp = http(&mut s, "/healthz", None);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("ok\n"), "{resp}");
    let token = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let resp = http(&mut s, "/api/v1/employees", Some(token.trim()));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"total\":0"), "{resp}");
    p.stop();
}

#[test]
fn adopts_a_socket_activated_listener() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut p = Rosterd::launch(&shipped_config_path(), &dir.path().join("data"))
        .socket_activated(listener.as_raw_fd())
        .start();
    p.wait_log("using the socket-activated listener", Duration::ZERO);
    let line = p.wait_log("listening on http://", Duration::ZERO);
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let resp = http(&mut s, "/healthz", None);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    drop(listener);
    p.stop();
}

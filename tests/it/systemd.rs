//! The real rosterd binary under a fake systemd: a unix datagram socket as
//! NOTIFY_SOCKET receives READY=1 (after the port answers), WATCHDOG=1 at the
//! configured rate, STATUS= lines and STOPPING=1 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rosterd.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rosterd"))
        .arg("--config")
        .arg(&config)
        .env("ROSTERD_LISTEN", "127.0.0.1:0")
        .env("ROSTERD_DATA_DIR", dir.path().join("data"))
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    // READY=1 first, with a STATUS line; the port answers at that moment.
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let ready = sock
        .recv(&mut buf)
        .ok()
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    let ready = ready.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("no notification within 30 s")
    });
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(ready.contains("STATUS=serving"), "{ready}");
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("listening line");
        if let Some(i) = line.find("listening on http://") {
            break line[i + 20..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_string();
        }
    };
    std::net::TcpStream::connect(&addr).expect("the port answers once READY=1 is sent");

    // WATCHDOG=1 at half the 200 ms interval: about 10 in one second.
    let msgs = recv_all(&sock, Instant::now() + Duration::from_secs(1));
    let pings = msgs.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(
        (5..=30).contains(&pings),
        "{pings} watchdog pings in 1 s: {msgs:?}"
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.contains("STOPPING=1")) && Instant::now() < deadline {
        seen.extend(recv_all(&sock, Instant::now() + Duration::from_millis(200)));
    }
    assert!(seen.iter().any(|m| m.contains("STOPPING=1")), "{seen:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "rosterd did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

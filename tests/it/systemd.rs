//! The real rosterd binary under a fake systemd: a unix datagram socket as
//! NOTIFY_SOCKET receives READY=1 (after the port answers), WATCHDOG=1 at the
//! configured rate, STATUS= lines and STOPPING=1 on SIGTERM. Also the unix socket
//! listener and socket activation (LISTEN_FDS).

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The spawned rosterd; killed and reaped on drop, so a failing assertion does
/// not leave it running.
struct Rosterd(std::process::Child);

impl std::ops::Deref for Rosterd {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Rosterd {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Rosterd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    let mut child = Rosterd(
        Command::new(env!("CARGO_BIN_EXE_rosterd"))
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
            .unwrap(),
    );
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

/// Starts the real rosterd with extra environment and a pre-exec hook; returns the
/// child and a channel of its log lines.
fn spawn_rosterd(
    dir: &Path,
    env: &[(&str, String)],
    pre_exec: Option<Box<dyn FnMut() -> std::io::Result<()> + Send + Sync>>,
) -> (Rosterd, std::sync::mpsc::Receiver<String>) {
    use std::os::unix::process::CommandExt;
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rosterd.toml");
    // Through `sh -c '... exec'` so that LISTEN_PID can name the final pid ($$).
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(if pre_exec.is_some() {
            "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\""
        } else {
            "exec \"$0\" \"$@\""
        })
        .arg(env!("CARGO_BIN_EXE_rosterd"))
        .arg("--config")
        .arg(&config)
        .env("ROSTERD_LISTEN", "127.0.0.1:0")
        .env("ROSTERD_DATA_DIR", dir.join("data"))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(hook) = pre_exec {
        // SAFETY: the hook only calls async-signal-safe libc functions.
        unsafe {
            cmd.pre_exec(hook);
        }
    }
    let mut child = Rosterd(cmd.spawn().unwrap());
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn wait_for_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line with `{needle}` within 30 s"));
        if line.contains(needle) {
            return line;
        }
    }
}

fn stop(mut child: Rosterd) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
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
    let (child, rx) = spawn_rosterd(
        dir.path(),
        &[("ROSTERD_LISTEN_UNIX", sock.display().to_string())],
        None,
    );
    wait_for_line(&rx, "listening on http://");
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
    stop(child);
}

#[test]
fn adopts_a_socket_activated_listener() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fd = listener.as_raw_fd();
    let hook = move || {
        // In the child: the listener becomes fd 3 (LISTEN_FDS_START), kept
        // open across exec (dup2 clears close-on-exec; if it already is fd 3,
        // clear the flag by hand).
        // SAFETY: dup2/fcntl on a freshly forked child before exec.
        let r = unsafe {
            if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            }
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    let (child, rx) = spawn_rosterd(dir.path(), &[], Some(Box::new(hook)));
    wait_for_line(&rx, "using the socket-activated listener");
    let line = wait_for_line(&rx, "listening on http://");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let resp = http(&mut s, "/healthz", None);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    drop(listener);
    stop(child);
}

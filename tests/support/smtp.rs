//! A real SMTP server for the mail tests and the outbox benchmark: Debian's python3-aiosmtpd running
//! `tests/it/fixtures/smtp_sink.py` on a loopback port, writing every message it accepts
//! (decoded to JSON) into a directory the test reads. Stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Python with aiosmtpd: Debian's `/usr/bin/python3` first (test.sh installs
/// python3-aiosmtpd for it), else whatever `python3` is on the PATH; `None`
/// when neither has it.
pub fn python_with_aiosmtpd() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

fn python() -> &'static str {
    python_with_aiosmtpd().unwrap_or_else(|| {
        panic!(
            "python3 with aiosmtpd is not installed: run ./scripts/test.sh, which installs python3-aiosmtpd"
        )
    })
}

// The tests name it with the server it is for.
#[allow(unused_imports)]
pub use super::process::free_port;

pub struct Smtp {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Smtp {
    /// Starts a server on `port`, writing into `dir`; waits until it accepts.
    pub fn start(port: u16, dir: &Path) -> Smtp {
        Self::start_with(port, dir, &[])
    }

    /// Like [`Smtp::start`] with TLS: `mode` is `implicit` or `starttls`
    /// (required), with the certificate chain and key in PEM files.
    pub fn start_tls(port: u16, dir: &Path, mode: &str, cert: &Path, key: &Path) -> Smtp {
        Self::start_with(
            port,
            dir,
            &[
                mode,
                &cert.display().to_string(),
                &key.display().to_string(),
            ],
        )
    }

    fn start_with(port: u16, dir: &Path, extra: &[&str]) -> Smtp {
        std::fs::create_dir_all(dir).expect("mail dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/smtp_sink.py");
        let child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the SMTP server");
        let mut s = Smtp {
            port,
            dir: dir.to_path_buf(),
            child: Some(child),
        };
        if !super::process::wait_for_port(port, Duration::from_secs(20)) {
            s.stop();
            panic!("the SMTP server did not listen on {port} within 20 s");
        }
        s
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<Value> {
        read_messages(&self.dir)
    }

    /// Waits until `pred` holds for the received messages; returns them.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = self.messages();
            if pred(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; received: {m:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for a message to `to` and returns the newest one.
    pub async fn wait_for_to(&self, to: &str) -> Value {
        let m = self
            .wait_for(&format!("a message to {to}"), |m| {
                m.iter().any(|v| rcpt(v) == to)
            })
            .await;
        m.into_iter()
            .rev()
            .find(|v| rcpt(v) == to)
            .expect("message")
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn read_messages(dir: &Path) -> Vec<Value> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect()
}

/// The envelope recipient.
pub fn rcpt(v: &Value) -> String {
    v["rcpt"][0].as_str().unwrap_or_default().to_lowercase()
}

/// The token of the link in a message's plain text part.
pub fn token_of(v: &Value) -> String {
    let text = v["text"].as_str().unwrap_or_default();
    let i = text.find("token=").expect("a link with a token") + "token=".len();
    text[i..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

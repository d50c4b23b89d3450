//! Outbox throughput: N invitations (default 2,000; set `ROSTERD_BENCH_MESSAGES`)
//! are queued in a fresh store, then the mail worker delivers them to a local
//! SMTP server on 127.0.0.1: first a minimal SMTP sink inside the bench (it
//! only answers the protocol), then, when Debian's python3-aiosmtpd is
//! installed, the test suite's aiosmtpd server (`tests/it/fixtures/smtp_sink.py`,
//! which parses every message and writes it to a file). Each figure is the
//! worker's own pass: minting every link (a profile write and its audit entry),
//! flushing, rendering and sending over one reused SMTP connection per batch,
//! marking each message sent and flushing again.
//!
//! Run: `cargo bench --bench outbox`. Figures are printed, never asserted.
//! Target: at least 300 messages/s to a local server.
//!
//! Last measured (release, 2 cores shared with other builds, six runs of 2,000):
//! 742-1,371 messages/s to the in-bench sink; 121-148 messages/s to aiosmtpd,
//! bound by its Python handler (parsing and writing one of these messages takes
//! it about 10 ms on this machine). Before the worker reused one connection
//! with `TCP_NODELAY`: about 22 messages/s.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rosterd::employee::{AccountStatus, NewEmployee, Roster};
use rosterd::mail::Mailer;
use rosterd::mail::worker::MailWorker;
use rosterd::store::{Actor, DeliveryState, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[path = "../tests/support/mod.rs"]
mod support;

/// A minimal SMTP server: accepts every message, counts it, keeps nothing.
async fn sink(listener: tokio::net::TcpListener, count: Arc<AtomicUsize>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let count = count.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            let mut line = String::new();
            if w.write_all(b"220 bench ESMTP\r\n").await.is_err() {
                return;
            }
            loop {
                line.clear();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let cmd = line.get(..4).unwrap_or("").to_ascii_uppercase();
                let reply: &[u8] = match cmd.as_str() {
                    "EHLO" => b"250-bench\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
                    "DATA" => {
                        if w.write_all(b"354 go on\r\n").await.is_err() {
                            return;
                        }
                        loop {
                            line.clear();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" {
                                break;
                            }
                        }
                        count.fetch_add(1, Ordering::Relaxed);
                        b"250 accepted\r\n"
                    }
                    "QUIT" => {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    }
                    _ => b"250 ok\r\n",
                };
                if w.write_all(reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn config(dir: &Path, port: u16) -> rosterd::config::Config {
    let text = format!(
        "{}\n[mail]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         from = \"Bench <no-reply@bench.example>\"\ncompany_name = \"Bench Fleet\"\n\
         base_url = \"https://fleet.bench.example\"\nmax_attempts = 3\ntimeout_secs = 10\n",
        support::shipped_config()
    );
    support::parse_config(&text, dir)
}

/// Queues `n` invitations in a fresh store and times the worker delivering them.
async fn one_round(n: usize, port: u16) -> (Duration, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), port);
    let store = Store::open(&dir.path().join("store")).expect("store");
    let roster = Roster::new(
        store,
        c.catalog.clone(),
        c.password_policy.clone(),
        c.photo_max_bytes,
    )
    .with_accounts(c.accounts.clone());
    let inputs: Vec<NewEmployee> = (0..n)
        .map(|i| NewEmployee {
            given_name: format!("Bench{i}"),
            family_name: "Person".into(),
            email: format!("bench{i}@bench.example"),
            account_status: Some(AccountStatus::Invite),
            ..Default::default()
        })
        .collect();
    let created = roster
        .create_many(&Actor::admin("bench"), inputs)
        .await
        .expect("create");
    assert!(created.iter().all(Result::is_ok), "every invitation queued");
    let mailer = Mailer::new(c.mail.clone().expect("[mail]")).expect("mailer");
    let worker = MailWorker::new(roster.clone(), mailer);
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let t = Instant::now();
    for _ in 0..100 {
        worker.tick(&stop_rx).await.expect("tick");
        if roster
            .store()
            .outbox_due(chrono::Utc::now())
            .expect("due")
            .is_empty()
        {
            break;
        }
    }
    let took = t.elapsed();
    let sent = roster
        .store()
        .outbox_all()
        .expect("outbox")
        .iter()
        .filter(|m| m.state == DeliveryState::Sent)
        .count();
    (took, sent)
}

fn report(what: &str, n: usize, took: Duration, sent: usize) {
    println!(
        "{what}: {sent} of {n} sent in {:.2} s = {:.0} messages/s",
        took.as_secs_f64(),
        sent as f64 / took.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("ROSTERD_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    println!(
        "outbox throughput, {n} invitations, one SMTP connection per batch of {}",
        rosterd::mail::worker::BATCH
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let server = tokio::spawn(sink(listener, count.clone()));
    for round in 1..=3 {
        let (took, sent) = one_round(n, port).await;
        report(&format!("in-bench SMTP sink, round {round}"), n, took, sent);
    }
    println!(
        "  (the sink accepted {} messages)",
        count.load(Ordering::Relaxed)
    );
    server.abort();

    if support::smtp::python_with_aiosmtpd().is_none() {
        println!(
            "aiosmtpd: not installed (./scripts/test.sh --no-run installs python3-aiosmtpd); skipped"
        );
        return;
    }
    let mail_dir = tempfile::tempdir().expect("tempdir");
    let mut smtp = support::smtp::Smtp::start(support::process::free_port(), mail_dir.path());
    let port = smtp.port;
    for round in 1..=2 {
        let (took, sent) = one_round(n, port).await;
        report(
            &format!("aiosmtpd (parses and writes each message), round {round}"),
            n,
            took,
            sent,
        );
    }
    smtp.stop();
}

//! Processes and ports: a free loopback port, waiting until a server accepts,
//! killing a server shared by a whole test binary when it exits, and a process's
//! memory as `/proc` reports it.

use std::net::{TcpListener, TcpStream};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Whether 127.0.0.1:`port` accepts a connection within `within` (polled every
/// 50 ms).
pub fn wait_for_port(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pids to SIGTERM when the process exits (the servers shared by a test
/// binary's tests: slapd, chromedriver).
static AT_EXIT: [AtomicU32; 8] = [const { AtomicU32::new(0) }; 8];
static REGISTER: Once = Once::new();

extern "C" fn kill_registered() {
    for slot in &AT_EXIT {
        let pid = slot.load(Ordering::SeqCst);
        if pid != 0 {
            // SAFETY: signalling a child this process started.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
}

/// Sends SIGTERM to `pid` when this process exits (a shared server outlives
/// every test, so no test's drop stops it).
pub fn kill_at_exit(pid: u32) {
    REGISTER.call_once(|| {
        // SAFETY: registering a plain extern "C" fn without captures.
        unsafe {
            libc::atexit(kill_registered);
        }
    });
    for slot in &AT_EXIT {
        if slot
            .compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
    panic!("kill_at_exit: more than {} shared servers", AT_EXIT.len());
}

/// A `key:` line of `/proc/<pid>/status` in KiB (`VmRSS:`, `VmHWM:`), if the
/// process is there.
pub fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

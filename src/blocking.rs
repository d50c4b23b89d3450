//! Blocking work (CPU-bound planning, full store scans, batches of store writes)
//! without stalling the runtime's workers that answer requests.

/// How much lower than the request workers blocking work runs (a nice value):
/// on a busy machine the kernel gives `/healthz` and the APIs the core first.
const BACKGROUND_NICE: i32 = 10;

/// Runs `f`, which blocks. On the multi-threaded runtime the worker first hands
/// its other tasks on (`block_in_place`), and `f` runs on a thread of its own
/// at a lower CPU priority (threads it starts inherit it), so that requests
/// keep being answered while a large sync plans and applies. Elsewhere (a
/// current-thread runtime, as in some tests) it simply runs. Not for a thread
/// inside `Handle::block_on` on a blocking thread (tokio refuses
/// `block_in_place` there): such callers are already off the workers and call
/// the work directly.
pub fn blocking<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| {
            let mut f = Some(f);
            let ran = std::thread::scope(|s| {
                let worker = std::thread::Builder::new()
                    .name("rosterd-background".into())
                    .spawn_scoped(s, || {
                        lower_priority();
                        f.take().map(|f| f())
                    });
                match worker {
                    Ok(w) => w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start a background thread; running the work in place");
                        None
                    }
                }
            });
            match (ran, f) {
                (Some(r), _) => r,
                // The thread could not start: run it here, at this priority.
                (None, Some(f)) => f(),
                (None, None) => unreachable_work(),
            }
        }),
        _ => f(),
    }
}

/// Runs `f`, which takes a few milliseconds of CPU (a pass over the roster's
/// in-memory projection for a list), at the request's priority: on the
/// multi-threaded runtime the worker first hands its other tasks on
/// (`block_in_place`), so that other requests are not held up behind it.
/// Elsewhere it simply runs. The same caveat as [`blocking`] holds.
pub fn in_place<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The background thread took the work and returned nothing: impossible, as
/// its closure always returns what the work gave.
#[cold]
fn unreachable_work() -> ! {
    unreachable!("background work ran without a result")
}

/// Lowers the calling thread's CPU priority (Linux keeps one per thread). A
/// refusal (a sandbox without `setpriority`) leaves it as it was.
fn lower_priority() {
    // SAFETY: gettid and setpriority take plain integers and touch only the
    // calling thread's scheduling attributes.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, BACKGROUND_NICE);
    }
}

//! Blocking work (CPU-bound planning, full store scans, batches of store writes)
//! without stalling the runtime's workers that answer requests.

/// Runs `f`, which blocks. On the multi-threaded runtime the worker first hands
/// its other tasks on (`block_in_place`), so `/healthz` and every other request
/// keep being served; elsewhere (a current-thread runtime, as in some tests) it
/// simply runs. Not for a thread inside `Handle::block_on` on a blocking thread
/// (tokio refuses `block_in_place` there): such callers are already off the
/// workers and call the work directly.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

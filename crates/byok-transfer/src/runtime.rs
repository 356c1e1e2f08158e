//! The small async runtimes the blocking entry points run on (the vault client is async; the HSM is not).

use crate::error::{Error, Kind, Result, Step};

/// A runtime on the calling thread, for work that waits on one request at a time.
pub(crate) fn current_thread() -> Result<tokio::runtime::Runtime> {
    finish(tokio::runtime::Builder::new_current_thread())
}

/// A runtime with `workers` threads, for a batch's concurrent vault work.
pub(crate) fn multi_thread(workers: usize) -> Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(workers);
    finish(builder)
}

fn finish(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime> {
    builder.enable_all().build().map_err(|e| {
        Error::new(
            Step::Preflight,
            Kind::Internal,
            format!("cannot start the async runtime: {e}"),
        )
    })
}

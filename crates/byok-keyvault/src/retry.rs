//! byok's retry policy. The SDK's own retries are off: they would re-send an import blindly after a lost
//! connection. Here each failure is sorted into "retry", "ambiguous" (the request may have been carried out) or
//! "final", and waits honour the service's `Retry-After`.

use std::time::Duration;

use azure_core::error::ErrorKind;

/// How often and how long to retry a request the vault turned away (429, 503) or that never reached it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first back-off when the service gives no `Retry-After`; it doubles with each retry.
    pub first_delay: Duration,
    /// No single wait is longer, whatever `Retry-After` says.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 6 retries, from 1 s doubling, each wait at most 60 s.
    fn default() -> Self {
        Self {
            max_retries: 6,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The wait before retry number `retry` (0-based): the service's `Retry-After` if it gave one, else exponential
    /// back-off; never more than `max_delay`.
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.first_delay.saturating_mul(1u32 << retry.min(16));
        retry_after.unwrap_or(backoff).min(self.max_delay)
    }
}

/// Retries when the vault could not be reached at all, failed (500, 502, 504) or did not answer in time: a vault
/// that is down, a wrong host name, a blocked port or a hanging server rarely heals within seconds, so a few quick
/// tries, not the full budget.
pub(crate) const BRIEF_RETRIES: u32 = 2;

/// What one failed attempt means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Safe to send again, after the service's `Retry-After` if any.
    Retry(Option<Duration>),
    /// Safe to send again, but unlikely to heal soon (no connection, a server error, a timeout on a read): worth
    /// [`BRIEF_RETRIES`] quick tries.
    Brief,
    /// The request may have been carried out (the connection broke after sending): a write must first look.
    Ambiguous,
    /// Retrying cannot help.
    Final,
}

/// Sorts an SDK error. `idempotent` requests (reads) are retried where a write would be ambiguous.
pub(crate) fn classify(e: &azure_core::Error, idempotent: bool) -> Failure {
    let in_doubt = if idempotent {
        Failure::Retry(None)
    } else {
        Failure::Ambiguous
    };
    let brief_or_doubt = if idempotent { Failure::Brief } else { Failure::Ambiguous };
    match e.kind() {
        ErrorKind::HttpResponse {
            status, raw_response, ..
        } => match u16::from(*status) {
            // Throttled or unavailable: Key Vault did not carry the request out.
            429 | 503 => Failure::Retry(raw_response.as_deref().and_then(|r| retry_after(r.headers()))),
            500 | 502 | 504 => brief_or_doubt,
            _ => Failure::Final,
        },
        // The peer said something we refuse (a TLS certificate we do not trust, not HTTP): no retry heals that.
        ErrorKind::Connection | ErrorKind::Io if refused_by_us(e) => Failure::Final,
        // No connection was made (in time): the request was never sent.
        ErrorKind::Connection => Failure::Brief,
        ErrorKind::Io if timed_out(e) => brief_or_doubt,
        // The connection broke during the exchange, or the answer arrived cut short.
        ErrorKind::Io => in_doubt,
        // An answer that is not Key Vault's (a captive portal's page, a cap exceeded): asking again gets the same.
        _ => Failure::Final,
    }
}

/// Whether a network limit ran out (reqwest's timeout, somewhere in the chain).
fn timed_out(e: &azure_core::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// Whether an I/O error in the chain is `InvalidData`: how TLS and HTTP stacks report a certificate or protocol
/// they reject, as opposed to a connection that failed or broke.
fn refused_by_us(e: &azure_core::Error) -> bool {
    // `io::Error::source` skips the error an `io::Error` wraps, so nested I/O errors are opened with `get_ref`.
    fn invalid_data(mut io: &std::io::Error) -> bool {
        loop {
            if io.kind() == std::io::ErrorKind::InvalidData {
                return true;
            }
            match io.get_ref().and_then(|inner| inner.downcast_ref::<std::io::Error>()) {
                Some(inner) => io = inner,
                None => return false,
            }
        }
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>().is_some_and(invalid_data) {
            return true;
        }
        source = s.source();
    }
    false
}

/// `Some(Retry-After)` when the vault answered `429` (throttled), `None` for anything else.
pub(crate) fn throttled(e: &azure_core::Error) -> Option<Option<Duration>> {
    match e.kind() {
        ErrorKind::HttpResponse {
            status, raw_response, ..
        } if u16::from(*status) == 429 => Some(raw_response.as_deref().and_then(|r| retry_after(r.headers()))),
        _ => None,
    }
}

/// `retry-after-ms`, `x-ms-retry-after-ms` (milliseconds) or `Retry-After` (seconds or an HTTP date).
fn retry_after(headers: &azure_core::http::headers::Headers) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str().trim().to_owned())
    };
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = get(name).and_then(|v| v.parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    let value = get("retry-after")?;
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = azure_core::time::parse_rfc7231(&value).ok()?;
    let now = azure_core::time::OffsetDateTime::now_utc();
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_bounded() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(0, None), Duration::from_secs(1));
        assert_eq!(p.delay(3, None), Duration::from_secs(8));
        assert_eq!(p.delay(10, None), Duration::from_secs(60));
        assert_eq!(p.delay(0, Some(Duration::from_secs(5))), Duration::from_secs(5));
        assert_eq!(p.delay(0, Some(Duration::from_secs(3600))), Duration::from_secs(60));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = azure_core::http::headers::Headers::new();
        h.insert("retry-after", "7");
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", "250");
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut h = azure_core::http::headers::Headers::new();
        h.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date in the past means now");
        h.insert("retry-after", "soon");
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn failures_are_sorted() {
        use azure_core::error::{Error, ErrorKind};
        let http = |code: u16| {
            Error::new(
                ErrorKind::HttpResponse {
                    status: code.into(),
                    error_code: None,
                    raw_response: None,
                },
                "x",
            )
        };
        assert_eq!(classify(&http(429), false), Failure::Retry(None));
        assert_eq!(classify(&http(503), false), Failure::Retry(None));
        assert_eq!(classify(&http(504), false), Failure::Ambiguous);
        assert_eq!(classify(&http(500), true), Failure::Brief);
        assert_eq!(
            classify(&Error::new(ErrorKind::DataConversion, "not JSON"), true),
            Failure::Final
        );
        assert_eq!(classify(&http(400), true), Failure::Final);
        assert_eq!(classify(&http(401), true), Failure::Final);
        let io = Error::new(ErrorKind::Io, "reset");
        assert_eq!(classify(&io, false), Failure::Ambiguous);
        assert_eq!(classify(&io, true), Failure::Retry(None));
        assert_eq!(
            classify(&Error::new(ErrorKind::Connection, "refused"), false),
            Failure::Brief
        );
        let tls = Error::with_error(
            ErrorKind::Connection,
            // As hyper-rustls reports it: an `Other` I/O error around an `InvalidData` one.
            std::io::Error::other(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "invalid peer certificate: UnknownIssuer",
            )),
            "connect",
        );
        assert_eq!(classify(&tls, true), Failure::Final);
        assert_eq!(
            classify(&Error::new(ErrorKind::Credential, "bad secret"), true),
            Failure::Final
        );
    }
}

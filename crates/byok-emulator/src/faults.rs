//! Faults for reliability tests: a vault that throttles, is unavailable, is slow, or breaks the connection after
//! it has done what was asked — so that clients can be tested against what real networks and services do.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::Shared;

/// Which faults to inject into vault requests (`/keys…`; the token endpoint is left alone).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Share of requests answered `429 Too Many Requests` with `Retry-After`.
    pub throttled: f64,
    /// Share of requests answered `503 Service Unavailable` with `Retry-After`.
    pub unavailable: f64,
    /// Share of requests processed in full whose connection then breaks before the response body arrives.
    pub dropped: f64,
    /// Share of BYOK imports for which the vault keeps a freshly generated key of the same kind instead of the one
    /// it was sent — a vault that lies, for testing that clients verify what was imported.
    pub substituted: f64,
    /// Delay added before every request.
    pub latency: Duration,
    /// The `Retry-After` value, in seconds.
    pub retry_after: u64,
    /// Only requests with these HTTP methods are disturbed (all when empty): `drop=1,methods=PUT` breaks the
    /// connection after every import and nothing else.
    pub methods: Vec<String>,
    /// Draw the faults from this seed instead of the OS: the same requests meet the same faults in every run.
    pub seed: Option<u64>,
    /// What every key attestation gets wrong, for clients that must refuse it.
    pub attestation: Option<AttestationFault>,
    /// Only the attestations of the key of this name get [`Self::attestation`] wrong (all when `None`):
    /// `attestation=other-key,attestation-key=app` lies about an imported key but not about the KEK.
    pub attestation_key: Option<String>,
    /// Access revoked half-way: the first N imports (`PUT /keys/{name}`) go through, then every vault request is
    /// answered `403 Forbidden` as Azure RBAC answers a caller that lost its role — a destination that fails
    /// part-way through a batch, deterministically.
    pub forbid_after: Option<u64>,
}

/// A lie in the local Managed HSM's key attestations (`attestation=NAME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttestationFault {
    /// `forged`: the private key blob's signature is damaged.
    Forged,
    /// `other-key`: the signed attributes show another modulus (or EC point).
    OtherKey,
    /// `extractable`: the key is attested extractable (and so not never-extractable).
    Extractable,
    /// `imported`: the key is attested as imported (CKA_LOCAL false), not generated in the HSM.
    Imported,
    /// `wrong-id`: the signed id names another version of the key.
    WrongId,
}

impl FromStr for AttestationFault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "forged" => Self::Forged,
            "other-key" => Self::OtherKey,
            "extractable" => Self::Extractable,
            "imported" => Self::Imported,
            "wrong-id" => Self::WrongId,
            other => {
                return Err(format!(
                    "unknown attestation fault `{other}` (expected forged, other-key, extractable, imported, wrong-id)"
                ));
            }
        })
    }
}

impl Faults {
    /// Whether any fault is switched on.
    pub fn any(&self) -> bool {
        self.throttled > 0.0
            || self.unavailable > 0.0
            || self.dropped > 0.0
            || self.substituted > 0.0
            || !self.latency.is_zero()
            || self.forbid_after.is_some()
    }

    /// The lie in the attestation of key `name`, if any.
    pub(crate) fn attestation_of(&self, name: &str) -> Option<AttestationFault> {
        self.attestation.filter(|_| {
            self.attestation_key
                .as_deref()
                .is_none_or(|k| k.eq_ignore_ascii_case(name))
        })
    }
}

impl FromStr for Faults {
    type Err = String;

    /// `429=0.2,503=0.1,drop=0.05,latency=50ms,retry-after=1,methods=PUT+POST,seed=7` (shares from 0 to 1; any
    /// subset).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut f = Self {
            retry_after: 1,
            ..Self::default()
        };
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not name=value"))?;
            let share = || -> Result<f64, String> {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| (0.0..=1.0).contains(v))
                    .ok_or_else(|| format!("`{name}` takes a share from 0 to 1, not `{value}`"))
            };
            match name {
                "429" => f.throttled = share()?,
                "503" => f.unavailable = share()?,
                "drop" => f.dropped = share()?,
                "substitute" => f.substituted = share()?,
                "latency" => {
                    let ms = value.strip_suffix("ms").unwrap_or(value);
                    f.latency =
                        Duration::from_millis(ms.parse().map_err(|_| format!("latency `{value}` is not like 50ms"))?);
                }
                "methods" => f.methods = value.split('+').map(str::to_ascii_uppercase).collect(),
                "seed" => f.seed = Some(value.parse().map_err(|_| format!("seed `{value}` is not a number"))?),
                "attestation" => f.attestation = Some(value.parse()?),
                "attestation-key" => f.attestation_key = Some(value.to_owned()),
                "forbid-after" => {
                    f.forbid_after = Some(
                        value
                            .parse()
                            .map_err(|_| format!("forbid-after `{value}` is not a number of imports"))?,
                    )
                }
                "retry-after" => {
                    f.retry_after = value
                        .parse()
                        .map_err(|_| format!("retry-after `{value}` is not seconds"))?
                }
                other => {
                    return Err(format!(
                        "unknown fault `{other}` (expected 429, 503, drop, substitute, latency, retry-after, methods, seed, attestation, attestation-key, forbid-after)"
                    ));
                }
            }
        }
        if f.throttled + f.unavailable > 1.0 {
            return Err("the shares of 429 and 503 add up to more than 1".into());
        }
        Ok(f)
    }
}

/// Whether this BYOK import is to be substituted (see [`Faults::substituted`]).
pub(crate) fn substitute(shared: &Shared) -> bool {
    let yes = shared.faults.substituted > 0.0 && roll(&shared.faults, &shared.fault_rolls) < shared.faults.substituted;
    if yes {
        count(shared);
    }
    yes
}

/// Counts one injected fault.
fn count(shared: &Shared) {
    shared
        .faults_injected
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// A number in [0, 1): from the OS, or — with a seed — the next of a SplitMix64 sequence shared by all requests.
fn roll(f: &Faults, counter: &std::sync::atomic::AtomicU64) -> f64 {
    let bits = match f.seed {
        Some(seed) => {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut z = seed.wrapping_add(n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        None => {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).expect("the OS random generator works");
            u64::from_le_bytes(b)
        }
    };
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

fn refusal(status: StatusCode, code: &str, message: &str, retry_after: Option<u64>) -> Response {
    let mut r = (
        status,
        axum::Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response();
    if let Some(Ok(v)) = retry_after.map(|s| HeaderValue::from_str(&s.to_string())) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Whether access is revoked for this request: an import takes one of the `after` admitted ones (so that exactly
/// that many go through however many run at once); anything else is refused once they are gone.
fn revoked(shared: &Shared, method: &axum::http::Method, after: u64) -> bool {
    use std::sync::atomic::Ordering::SeqCst;
    if method == axum::http::Method::PUT {
        shared.imports_admitted.fetch_add(1, SeqCst) >= after
    } else {
        shared.imports_admitted.load(SeqCst) >= after
    }
}

/// The middleware: access revoked, latency, then 429 or 503 before the handler, or a broken body after it.
pub(crate) async fn inject(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let f = &shared.faults;
    if let Some(after) = f.forbid_after
        && revoked(&shared, request.method(), after)
    {
        count(&shared);
        return refusal(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Caller is not authorized to perform action on resource. (injected fault: access revoked)",
            None,
        );
    }
    if !f.methods.is_empty() && !f.methods.iter().any(|m| m == request.method().as_str()) {
        return next.run(request).await;
    }
    if !f.latency.is_zero() {
        tokio::time::sleep(f.latency).await;
    }
    let r = roll(f, &shared.fault_rolls);
    if r < f.throttled + f.unavailable {
        count(&shared);
    }
    if r < f.throttled {
        return refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttled",
            "Request was not processed because too many requests were received. (injected fault)",
            Some(f.retry_after),
        );
    }
    if r < f.throttled + f.unavailable {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The service is temporarily unavailable. (injected fault)",
            Some(f.retry_after),
        );
    }
    let drop = roll(f, &shared.fault_rolls) < f.dropped;
    let response = next.run(request).await;
    // Only a request that was carried out leaves the client in doubt; a refusal (the 401 challenge among them)
    // arrives whole.
    if !drop || !response.status().is_success() {
        return response;
    }
    count(&shared);
    // The request was processed; the connection now breaks before the body arrives.
    let (parts, _) = response.into_parts();
    let broken = futures_util::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other("connection dropped (injected fault)"))
    });
    Response::from_parts(parts, Body::from_stream(broken))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let f: Faults = "429=0.2,503=0.1,drop=0.05,latency=50ms,retry-after=2"
            .parse()
            .expect("valid");
        assert_eq!(
            f,
            Faults {
                throttled: 0.2,
                unavailable: 0.1,
                dropped: 0.05,
                substituted: 0.0,
                latency: Duration::from_millis(50),
                retry_after: 2,
                methods: Vec::new(),
                seed: None,
                attestation: None,
                attestation_key: None,
                forbid_after: None,
            }
        );
        assert!(f.any());
        let f: Faults = "attestation=wrong-id".parse().expect("valid");
        assert_eq!(f.attestation, Some(AttestationFault::WrongId));
        let scoped: Faults = "attestation=other-key,attestation-key=App".parse().expect("valid");
        assert_eq!(scoped.attestation_of("app"), Some(AttestationFault::OtherKey));
        assert_eq!(
            scoped.attestation_of("kek"),
            None,
            "only the named key's attestation lies"
        );
        assert!(
            "attestation=lies"
                .parse::<Faults>()
                .err()
                .is_some_and(|e| e.contains("unknown attestation fault `lies`"))
        );
        assert!(!"".parse::<Faults>().expect("empty is no fault").any());
        assert_eq!(
            "429=2".parse::<Faults>().err().as_deref(),
            Some("`429` takes a share from 0 to 1, not `2`")
        );
        assert_eq!(
            "429=0.7,503=0.5".parse::<Faults>().err().as_deref(),
            Some("the shares of 429 and 503 add up to more than 1")
        );
        assert!("flaky=1".parse::<Faults>().is_err());
        let f: Faults = "drop=1,methods=put+post,seed=7".parse().expect("valid");
        assert_eq!(
            (f.methods.as_slice(), f.seed),
            (&["PUT".to_owned(), "POST".to_owned()][..], Some(7))
        );
    }

    #[test]
    fn a_seed_repeats_the_same_faults() {
        let f: Faults = "seed=42".parse().expect("valid");
        let draw = || {
            let counter = std::sync::atomic::AtomicU64::new(0);
            (0..100).map(|_| roll(&f, &counter)).collect::<Vec<_>>()
        };
        let (a, b) = (draw(), draw());
        assert_eq!(a, b);
        assert!(a.iter().all(|r| (0.0..1.0).contains(r)));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        assert!((0.35..0.65).contains(&mean), "{mean}");
    }

    #[test]
    fn rolls_are_shares() {
        let (f, counter) = (Faults::default(), std::sync::atomic::AtomicU64::new(0));
        let rolls: Vec<f64> = (0..1000).map(|_| roll(&f, &counter)).collect();
        assert!(rolls.iter().all(|r| (0.0..1.0).contains(r)));
        let below = rolls.iter().filter(|r| **r < 0.5).count();
        assert!((350..650).contains(&below), "{below}");
    }
}

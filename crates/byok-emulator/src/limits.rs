//! Key Vault's service limits, enforced as the service documents them (Learn, "Azure Key Vault service limits"):
//! per vault, per 10 seconds, separately for HSM-key CREATE, HSM-key "all other", software-key CREATE and
//! software-key "all other" transactions; within each, requests are weighted by key type and size against the
//! largest threshold (a GET of an RSA-4096 HSM key costs 2,000 / 250 = 8 of an RSA-2048's). An import makes a key
//! version, so it counts as a CREATE. Beyond a threshold the answer is `429` with `Retry-After`. A Managed HSM does
//! not throttle key operations; its key creation is bounded by the hardware, modelled as a configurable capacity.
//! `scale` runs the clock faster, for tests: the window is 10 s / scale and waits are told in real time.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The four classes of transactions Key Vault counts apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Class {
    HsmCreate,
    HsmOther,
    SoftwareCreate,
    SoftwareOther,
}

/// One row of the table: the thresholds per window for one key type and size; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// HSM-key CREATE (imports included).
    pub hsm_create: Option<u32>,
    /// HSM-key "all other" transactions.
    pub hsm_other: Option<u32>,
    /// Software-key CREATE.
    pub software_create: Option<u32>,
    /// Software-key "all other".
    pub software_other: Option<u32>,
}

/// A limits table: rows by key kind (`RSA-2048`, `RSA-3072`, `RSA-4096`, `EC`, `oct`) and the window.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The window, in the service's seconds (Key Vault: 10).
    pub window_seconds: f64,
    /// Thresholds by key kind; a kind not listed counts as `EC` (weight 1).
    pub rows: BTreeMap<String, Row>,
    /// How many times faster than real time the clock runs (1 for the service's own pace).
    #[serde(default = "one")]
    pub scale: f64,
}

fn one() -> f64 {
    1.0
}

impl Limits {
    /// Key Vault's published table (per vault per region, per 10 seconds).
    pub fn key_vault() -> Self {
        let row = |hsm_other, software_other| Row {
            hsm_create: Some(10),
            hsm_other: Some(hsm_other),
            software_create: Some(20),
            software_other: Some(software_other),
        };
        let rows = [
            ("RSA-2048", row(2_000, 4_000)),
            ("RSA-3072", row(500, 1_000)),
            ("RSA-4096", row(250, 500)),
            ("EC", row(2_000, 4_000)),
        ];
        Self {
            window_seconds: 10.0,
            rows: rows.into_iter().map(|(k, r)| (k.to_owned(), r)).collect(),
            scale: 1.0,
        }
    }

    /// A Managed HSM: no throttling of key operations, key creation (and import) bounded at `capacity` per 10 s —
    /// not a published number (the scaling guidance gives the hardware's rates per partition); choose it.
    pub fn managed_hsm(capacity: u32) -> Self {
        let row = Row {
            hsm_create: Some(capacity),
            ..Row::default()
        };
        let kinds = ["RSA-2048", "RSA-3072", "RSA-4096", "EC", "oct"];
        Self {
            window_seconds: 10.0,
            rows: kinds.into_iter().map(|k| (k.to_owned(), row)).collect(),
            scale: 1.0,
        }
    }

    /// A table from a JSON file (the fields of [`Limits`]), checked.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let limits: Self = serde_json::from_str(text).map_err(|e| format!("not a limits table: {e}"))?;
        limits.check()?;
        Ok(limits)
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if !(self.window_seconds > 0.0 && self.window_seconds <= 3_600.0) {
            return Err(format!(
                "window_seconds {} is not between 0 and 3600",
                self.window_seconds
            ));
        }
        if !(self.scale >= 1.0 && self.scale <= 1_000.0) {
            return Err(format!("the clock scale {} is not between 1 and 1000", self.scale));
        }
        let zero = self
            .rows
            .iter()
            .find(|(_, r)| [r.hsm_create, r.hsm_other, r.software_create, r.software_other].contains(&Some(0)));
        match zero {
            Some((kind, _)) => Err(format!("row `{kind}` has a threshold of 0; leave it out for no limit")),
            None => Ok(()),
        }
    }

    /// The window in real time.
    pub(crate) fn window(&self) -> Duration {
        Duration::from_secs_f64(self.window_seconds / self.scale)
    }

    fn threshold(&self, kind: &str, class: Class) -> Option<u32> {
        let row = self.rows.get(kind).or_else(|| self.rows.get("EC"))?;
        match class {
            Class::HsmCreate => row.hsm_create,
            Class::HsmOther => row.hsm_other,
            Class::SoftwareCreate => row.software_create,
            Class::SoftwareOther => row.software_other,
        }
    }

    /// The class's budget (its largest threshold) and what one request on a key of `kind` costs in it; `None`
    /// when the class is not limited for that kind.
    pub(crate) fn cost(&self, kind: &str, class: Class) -> Option<(f64, f64)> {
        let own = f64::from(self.threshold(kind, class)?);
        let budget = self
            .rows
            .keys()
            .filter_map(|k| self.threshold(k, class))
            .max()
            .map_or(own, f64::from);
        Some((budget, budget / own))
    }
}

/// What each class has admitted within the window, and the counters.
#[derive(Debug, Default)]
pub(crate) struct Windows {
    admitted: Mutex<BTreeMap<Class, VecDeque<(Instant, f64)>>>,
    pub(crate) counted: std::sync::atomic::AtomicU64,
    pub(crate) throttled: std::sync::atomic::AtomicU64,
}

impl Windows {
    /// Admits a request costing `weight` of `budget` in `class`, or says how long until it would be admitted.
    pub(crate) fn admit(&self, class: Class, budget: f64, weight: f64, window: Duration) -> Result<(), Duration> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = Instant::now();
        let mut all = self.admitted.lock().expect("limits lock");
        let log = all.entry(class).or_default();
        while log.front().is_some_and(|(t, _)| now.duration_since(*t) >= window) {
            log.pop_front();
        }
        let used: f64 = log.iter().map(|(_, w)| w).sum();
        if used + weight <= budget + 1e-9 {
            log.push_back((now, weight));
            self.counted.fetch_add(1, Relaxed);
            return Ok(());
        }
        self.throttled.fetch_add(1, Relaxed);
        // The wait: until enough of the oldest admissions leave the window.
        let mut freed = 0.0;
        for (t, w) in log.iter() {
            freed += w;
            if used - freed + weight <= budget + 1e-9 {
                return Err((*t + window)
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1)));
            }
        }
        Err(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_vault_weights_rsa_4096_reads_eight_times_and_imports_as_creates() {
        let kv = Limits::key_vault();
        assert_eq!(kv.cost("RSA-4096", Class::HsmOther), Some((2_000.0, 8.0)));
        assert_eq!(kv.cost("RSA-3072", Class::HsmOther), Some((2_000.0, 4.0)));
        assert_eq!(kv.cost("EC", Class::HsmCreate), Some((10.0, 1.0)));
        assert_eq!(
            kv.cost("P-256-anything", Class::HsmOther),
            Some((2_000.0, 1.0)),
            "unknown kinds weigh as EC"
        );
        let mhsm = Limits::managed_hsm(5);
        assert_eq!(mhsm.cost("oct", Class::HsmCreate), Some((5.0, 1.0)));
        assert_eq!(
            mhsm.cost("RSA-4096", Class::HsmOther),
            None,
            "a Managed HSM does not throttle key operations"
        );
    }

    #[test]
    fn a_window_admits_its_budget_then_says_when_room_returns() {
        let w = Windows::default();
        let window = Duration::from_millis(200);
        for _ in 0..10 {
            assert_eq!(w.admit(Class::HsmCreate, 10.0, 1.0, window), Ok(()));
        }
        let wait = w
            .admit(Class::HsmCreate, 10.0, 1.0, window)
            .expect_err("the 11th is throttled");
        assert!(wait <= window && wait > Duration::from_millis(100), "{wait:?}");
        assert_eq!(
            w.admit(Class::HsmOther, 10.0, 1.0, window),
            Ok(()),
            "classes are counted apart"
        );
        std::thread::sleep(wait);
        assert_eq!(w.admit(Class::HsmCreate, 10.0, 1.0, window), Ok(()));
    }

    #[test]
    fn tables_from_files_are_checked() {
        let t = Limits::from_json(r#"{"window_seconds": 10, "rows": {"EC": {"hsm_create": 3}}, "scale": 20}"#)
            .expect("valid");
        assert_eq!(t.window(), Duration::from_millis(500));
        for (bad, why) in [
            (r#"{"window_seconds": 0, "rows": {}}"#, "window_seconds"),
            (
                r#"{"window_seconds": 10, "rows": {"EC": {"hsm_create": 0}}}"#,
                "threshold of 0",
            ),
            (r#"{"window_seconds": 10, "rows": {}, "speed": 2}"#, "unknown field"),
        ] {
            assert!(Limits::from_json(bad).expect_err(bad).contains(why), "{bad}");
        }
    }
}

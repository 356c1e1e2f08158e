//! Pacing key creations (imports, KEK creation) to what the vault admits, learnt from its throttling: Key Vault
//! counts HSM-key CREATEs in a sliding 10-second window (10 per vault) and answers `429` with `Retry-After` beyond
//! it. Until the first `429` byok sends freely. That `429`, at time `t` with `Retry-After` `r`, says the window
//! filled with the creations admitted since the last pause (a gap of at least `r`): once every creation sent
//! before it has come back, their number is the capacity, and `t + r - (when the first of them was sent)` the
//! window. From then on byok keeps its own
//! sliding window of that size (each admission dated when it was sent, the window 1 % and 10 ms wider for the time
//! a request takes to arrive) and sends a creation only when the vault will take it — so the rest of a batch meets no `429` and runs at the
//! vault's full rate. A later `429` means requests arrive later than they were sent by more than that: its
//! `Retry-After` says by how much, and the margin grows by it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the pacer learnt and counted.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pace {
    /// Creations the vault admitted.
    pub admitted: u64,
    /// Creations it answered `429`.
    pub throttled: u64,
    /// Requests of any kind it answered `429` (creations included).
    pub throttled_requests: u64,
    /// The vault's limit as learnt: creations per window.
    pub capacity: Option<u32>,
    /// The window learnt.
    pub window: Option<Duration>,
}

impl Pace {
    /// Creations per second the vault admits, once learnt.
    pub fn per_second(&self) -> Option<f64> {
        let (c, w) = (self.capacity?, self.window?);
        (!w.is_zero()).then(|| f64::from(c) / w.as_secs_f64())
    }
}

/// Room for the arrival time of a request: the client's window is this much wider than the vault's, and
/// [`FIRST_MARGIN`] more to begin with (the margin grows with each `429` despite pacing).
const MARGIN: f64 = 1.01;
const FIRST_MARGIN: Duration = Duration::from_millis(10);
/// A window longer than this is not believed (Key Vault's is 10 s).
const MAX_WINDOW: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
struct State {
    /// When each admitted creation was sent, oldest first; those still inside the window.
    admitted: VecDeque<Instant>,
    /// Creations sent and not yet answered: they count against the window too.
    in_flight: usize,
    /// A `429` whose lesson waits for the creations still in flight (they were admitted or refused already).
    pending: Option<(Instant, Duration)>,
    learnt: Option<(u32, Duration)>,
    /// Added to the window: the time requests take to arrive, as `429`s despite pacing showed it.
    margin: Option<Duration>,
    /// No creation before this (the vault's `Retry-After`).
    resume_at: Option<Instant>,
    /// How often the pace was learnt or widened: a `429` for a creation sent before that teaches nothing new (the
    /// creations in flight when the window filled all come back `429`).
    lessons: u64,
    pace: Pace,
}

/// A creation the pacer let go: when, and after which lesson.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Booking {
    lesson: u64,
    sent: Instant,
}

/// One vault's pacer, shared by everything that uses the connection.
#[derive(Debug, Default)]
pub(crate) struct Pacer(Mutex<State>);

impl Pacer {
    /// Waits until a creation may be sent, and books it: call [`Pacer::outcome`] with the booking and what became
    /// of it.
    pub(crate) async fn acquire(&self) -> Booking {
        loop {
            let wait = {
                let mut s = self.0.lock().expect("pacer lock");
                let now = Instant::now();
                match s.wait_at(now) {
                    None => {
                        s.in_flight += 1;
                        return Booking {
                            lesson: s.lessons,
                            sent: now,
                        };
                    }
                    Some(until) => until.saturating_duration_since(now),
                }
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// What became of a booked creation: admitted (`None`), or throttled with the vault's `Retry-After`.
    pub(crate) fn outcome(&self, booking: Booking, throttled: Option<Option<Duration>>) {
        let mut s = self.0.lock().expect("pacer lock");
        let now = Instant::now();
        s.in_flight = s.in_flight.saturating_sub(1);
        match throttled {
            None => {
                s.pace.admitted += 1;
                let at = s.admitted.partition_point(|t| *t <= booking.sent);
                s.admitted.insert(at, booking.sent);
                // Nothing older than the longest window believed matters: a long batch keeps no history.
                while s.admitted.front().is_some_and(|t| now.duration_since(*t) > MAX_WINDOW) {
                    s.admitted.pop_front();
                }
            }
            Some(retry_after) => {
                s.pace.throttled += 1;
                let after = retry_after.unwrap_or(Duration::from_secs(1));
                s.resume_at = Some(s.resume_at.map_or(now + after, |r| r.max(now + after)));
                if booking.lesson == s.lessons && s.pending.is_none() {
                    s.pending = Some((now, after));
                }
            }
        }
        if s.in_flight == 0
            && let Some((at, after)) = s.pending.take()
        {
            s.learn(at, after);
        }
    }

    /// Counts a request of any kind the vault answered `429`.
    pub(crate) fn count_throttled(&self) {
        self.0.lock().expect("pacer lock").pace.throttled_requests += 1;
    }

    /// What it learnt and counted.
    pub(crate) fn pace(&self) -> Pace {
        let s = self.0.lock().expect("pacer lock");
        Pace {
            capacity: s.learnt.map(|(c, _)| c),
            window: s.learnt.map(|(_, w)| w),
            ..s.pace
        }
    }
}

impl State {
    /// When the next creation may go, or `None` for now.
    fn wait_at(&mut self, now: Instant) -> Option<Instant> {
        if let Some(at) = self.resume_at.filter(|at| *at > now) {
            return Some(at);
        }
        if self.pending.is_some() {
            // A lesson is waiting for the answers in flight.
            return Some(now + Duration::from_millis(5));
        }
        let (capacity, window) = self.learnt?;
        let window = window.mul_f64(MARGIN) + self.margin.unwrap_or(FIRST_MARGIN);
        while self.admitted.front().is_some_and(|t| now.duration_since(*t) >= window) {
            self.admitted.pop_front();
        }
        if self.admitted.len() + self.in_flight < capacity as usize {
            return None;
        }
        // Full: room comes when the oldest admission leaves the window (or an answer in flight comes back).
        let soonest = self
            .admitted
            .front()
            .map_or(now + Duration::from_millis(5), |t| *t + window);
        Some(soonest.min(now + Duration::from_millis(50)))
    }

    /// A `429` at `at` with `after`, every creation sent before it answered.
    fn learn(&mut self, at: Instant, after: Duration) {
        self.learnt = Some(match self.learnt {
            Some((c, w)) => {
                // Sent this much too early: the margin grows by it (at most to a quarter of the window).
                let margin = self.margin.unwrap_or(FIRST_MARGIN) + after;
                self.margin = Some(margin.min(w / 4));
                (c, w)
            }
            None => {
                // The window holds the admissions since the last pause at least as long as `after` (an earlier one
                // has left it already: a KEK created seconds before the first import is not part of the burst).
                let sent: Vec<Instant> = self.admitted.iter().copied().collect();
                let start = (1..sent.len())
                    .rev()
                    .find(|&i| sent[i].saturating_duration_since(sent[i - 1]) >= after)
                    .unwrap_or(0);
                let Some(first) = sent.get(start) else { return };
                let window = (at + after).saturating_duration_since(*first).min(MAX_WINDOW);
                let capacity = u32::try_from(sent.len() - start).unwrap_or(u32::MAX);
                (capacity.max(1), window.max(Duration::from_millis(1)))
            }
        });
        self.lessons += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_429_teaches_capacity_and_window_and_pacing_follows() {
        let p = Pacer::default();
        let start = Instant::now();
        let booked = futures_util::future::join_all((0..12).map(|_| p.acquire())).await;
        for b in &booked[..10] {
            p.outcome(*b, None);
        }
        p.outcome(booked[10], Some(Some(Duration::from_millis(300))));
        // Another creation sent in the same burst comes back 429 too: it teaches nothing new.
        p.outcome(booked[11], Some(Some(Duration::from_millis(290))));
        let pace = p.pace();
        assert_eq!((pace.admitted, pace.throttled, pace.capacity), (10, 2, Some(10)));
        let w = pace.window.expect("learnt");
        assert!(
            w >= Duration::from_millis(295) && w <= Duration::from_millis(330),
            "{w:?}"
        );
        // The next ten wait for the window to pass, then go; the eleventh waits a window more.
        for _ in 0..10 {
            let b = p.acquire().await;
            p.outcome(b, None);
        }
        assert!(start.elapsed() >= Duration::from_millis(300), "{:?}", start.elapsed());
        let before = Instant::now();
        p.acquire().await;
        assert!(before.elapsed() >= Duration::from_millis(250), "{:?}", before.elapsed());
        assert!((p.pace().per_second().expect("rate") - 10.0 / w.as_secs_f64()).abs() < 1e-6);
    }

    #[tokio::test]
    async fn a_creation_long_before_the_burst_is_not_part_of_the_window() {
        // The KEK is created, the HSM takes a while, then the imports fill the window.
        let p = Pacer::default();
        let kek = p.acquire().await;
        p.outcome(kek, None);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let booked = futures_util::future::join_all((0..11).map(|_| p.acquire())).await;
        for b in &booked[..10] {
            p.outcome(*b, None);
        }
        p.outcome(booked[10], Some(Some(Duration::from_millis(100))));
        let pace = p.pace();
        assert_eq!(pace.capacity, Some(10));
        assert!(pace.window.expect("learnt") < Duration::from_millis(150), "{pace:?}");
    }
}

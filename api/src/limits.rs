//! Abuse limits: request rates per user and per client address, and the hold/release churn
//! budget.
//!
//! Why here and not in the state machine: these limits protect this instance and the cluster from
//! load, and they are soft. They are per api instance (a client spread over N instances gets N
//! times the rate), forgotten on restart, and never decide a booking; per-user ticket limits,
//! which must hold exactly, stay in apply.
//!
//! - Per user (the bearer token's `sub`): a keyed GCRA limiter (`governor`). Admins are exempt:
//!   they are operators loading catalogues, and their tokens come from the operator.
//! - Per client address (`ConnectInfo<SocketAddr>`): the same, off by default, because behind a
//!   proxy or load balancer every client has the proxy's address. A request served without
//!   connection info (tests calling the router directly) is not limited by address.
//! - Churn: holding seats and releasing them at once, over and over, keeps seats away from other
//!   buyers without buying them. Every release through this instance spends one unit of the
//!   user's budget (`churn_releases_max` per `churn_window`, refilled continuously); while it is
//!   spent, that user's new holds answer 429. Releases themselves are never refused: they free
//!   seats.
//!
//! Every refusal is 429 `rate_limited` with `Retry-After` in whole seconds (at least one).
//! Memory: the keyed limiters keep only keys seen within their burst period once
//! [`Limits::prune`] runs (the api's background tasks call it every `LIMITS_PRUNE_INTERVAL`); the
//! churn table is bounded by `CHURN_USERS_MAX` and pruned the same way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use raft_store::UserId;

use crate::config::LimitsConfig;
use crate::error::ApiError;

/// How often idle keys are dropped from the limiters.
pub(crate) const LIMITS_PRUNE_INTERVAL: Duration = Duration::from_secs(10);
/// Users whose churn is tracked at once; past it (after pruning) a new user's releases are not
/// counted, which fails open rather than grow without bound.
const CHURN_USERS_MAX: usize = 1_000_000;
pub(crate) struct Limits {
    user: Option<DefaultKeyedRateLimiter<UserId>>,
    ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    churn: Option<Churn>,
    clock: DefaultClock,
}

impl Limits {
    pub(crate) fn new(config: &LimitsConfig) -> Limits {
        Limits {
            user: quota(config.user_per_s, config.user_burst).map(DefaultKeyedRateLimiter::keyed),
            ip: quota(config.ip_per_s, config.ip_burst).map(DefaultKeyedRateLimiter::keyed),
            churn: Churn::new(config.churn_releases_max, config.churn_window),
            clock: DefaultClock::default(),
        }
    }

    /// Spends one request of the user's rate.
    pub(crate) fn check_user(&self, user: &UserId) -> Result<(), ApiError> {
        let Some(limiter) = &self.user else { return Ok(()) };
        limiter.check_key(user).map_err(|not_until| {
            refused("user", "too many requests from this user", not_until.wait_time_from(self.clock.now()))
        })
    }

    /// Spends one request of the client address's rate.
    pub(crate) fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        let Some(limiter) = &self.ip else { return Ok(()) };
        limiter.check_key(&ip).map_err(|not_until| {
            refused("ip", "too many requests from this address", not_until.wait_time_from(self.clock.now()))
        })
    }

    /// A new hold by `user`: refused while the user's churn budget is spent.
    pub(crate) fn check_hold(&self, user: &UserId) -> Result<(), ApiError> {
        let Some(churn) = &self.churn else { return Ok(()) };
        match churn.wait_before_hold(user, Instant::now()) {
            None => Ok(()),
            Some(wait) => {
                Err(refused("churn", "too many holds released recently: new holds are paused for this user", wait))
            }
        }
    }

    /// A release by `user` went through: it spends one unit of the churn budget.
    pub(crate) fn note_release(&self, user: &UserId) {
        if let Some(churn) = &self.churn {
            churn.release(user, Instant::now());
        }
    }

    /// Drops keys whose state is indistinguishable from a fresh one; bounds memory.
    pub(crate) fn prune(&self) {
        if let Some(limiter) = &self.user {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            metrics::gauge!("api_rate_limit_keys", "limit" => "user").set(limiter.len() as f64);
        }
        if let Some(limiter) = &self.ip {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            metrics::gauge!("api_rate_limit_keys", "limit" => "ip").set(limiter.len() as f64);
        }
        if let Some(churn) = &self.churn {
            let tracked = churn.prune(Instant::now());
            metrics::gauge!("api_rate_limit_keys", "limit" => "churn").set(tracked as f64);
        }
    }

    /// Whether any limit is on (the background pruner runs only then).
    pub(crate) fn any(&self) -> bool {
        self.user.is_some() || self.ip.is_some() || self.churn.is_some()
    }

    #[cfg(test)]
    pub(crate) fn user_keys(&self) -> usize {
        self.user.as_ref().map_or(0, |l| l.len())
    }
}

/// `per_s` sustained with `burst` at once; `None` when `per_s` is zero (the limit is off).
fn quota(per_s: u32, burst: u32) -> Option<Quota> {
    let per_s = NonZeroU32::new(per_s)?;
    let burst = NonZeroU32::new(burst).unwrap_or(per_s);
    Some(Quota::per_second(per_s).allow_burst(burst))
}

/// The key a client address is counted under by the connection and stream caps: an IPv4
/// address (an IPv4-mapped IPv6 one too) as it is, an IPv6 address by its /64, the block one
/// subscriber gets, so a client cannot step around a cap by changing its interface id.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

fn refused(limit: &'static str, detail: &str, wait: Duration) -> ApiError {
    metrics::counter!("api_rate_limited_total", "limit" => limit).increment(1);
    ApiError::RateLimited { detail: detail.to_owned(), retry_after_s: retry_after_s(wait) }
}

/// Whole seconds, rounded up, at least one: a client that waits this long is let through.
pub(crate) fn retry_after_s(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

/// The churn budget: a GCRA per user over releases. `tat` (theoretical arrival time) runs ahead
/// of now by one `interval` per release; the budget is spent while it runs more than
/// `window - interval` ahead, that is, while less than one release's worth is left.
struct Churn {
    interval: Duration,
    window: Duration,
    tat: Mutex<HashMap<UserId, Instant>>,
}

impl Churn {
    fn new(releases_max: u32, window: Duration) -> Option<Churn> {
        if releases_max == 0 || window.is_zero() {
            return None;
        }
        let interval = window / releases_max;
        Some(Churn { interval, window, tat: Mutex::new(HashMap::new()) })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Instant>> {
        // The table holds plain values: a panic elsewhere cannot leave it half-updated.
        self.tat.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn release(&self, user: &UserId, now: Instant) {
        let mut table = self.table();
        if !table.contains_key(user) && table.len() >= CHURN_USERS_MAX {
            table.retain(|_, tat| *tat > now);
            if table.len() >= CHURN_USERS_MAX {
                tracing::warn!(users = table.len(), "churn table full: a release is not counted");
                return;
            }
        }
        let tat = table.get(user).copied().filter(|t| *t > now).unwrap_or(now);
        // Debt never runs more than one window ahead: a user waits at most one interval per
        // release beyond the budget, not for every release they ever made.
        let next = (tat + self.interval).min(now + self.window);
        table.insert(user.clone(), next);
        debug_assert!(next <= now + self.window);
    }

    /// How long the user must wait before a new hold, or `None` if they may hold now.
    fn wait_before_hold(&self, user: &UserId, now: Instant) -> Option<Duration> {
        let tat = *self.table().get(user)?;
        let ahead = tat.saturating_duration_since(now);
        let allowed_ahead = self.window - self.interval;
        (ahead > allowed_ahead).then(|| ahead - allowed_ahead)
    }

    /// Forgets users whose budget is whole again; returns how many are left.
    fn prune(&self, now: Instant) -> usize {
        let mut table = self.table();
        table.retain(|_, tat| *tat > now);
        table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse(id).expect("a valid user id")
    }

    #[test]
    fn churn_budget_refuses_holds_once_spent_and_refills_one_interval_at_a_time() {
        let churn = Churn::new(3, Duration::from_secs(30)).expect("on");
        let (alice, bob) = (user("alice"), user("bob"));
        let t0 = Instant::now();
        for _ in 0..2 {
            churn.release(&alice, t0);
        }
        assert_eq!(churn.wait_before_hold(&alice, t0), None, "two of three releases leave budget");
        churn.release(&alice, t0);
        assert_eq!(churn.wait_before_hold(&alice, t0), Some(Duration::from_secs(10)));
        assert_eq!(churn.wait_before_hold(&bob, t0), None, "budgets are per user");
        assert_eq!(churn.wait_before_hold(&alice, t0 + Duration::from_secs(10)), None);
        // Releasing far beyond the budget costs at most one window of debt.
        for _ in 0..100 {
            churn.release(&alice, t0);
        }
        assert_eq!(churn.wait_before_hold(&alice, t0), Some(Duration::from_secs(10)));
        assert_eq!(churn.prune(t0 + Duration::from_secs(31)), 0, "a refilled budget is forgotten");
    }

    #[test]
    fn clients_are_keyed_by_ipv4_address_or_ipv6_64() {
        let key = |s: &str| client_key(s.parse().unwrap()).to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::");
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        assert_eq!(retry_after_s(Duration::ZERO), 1);
        assert_eq!(retry_after_s(Duration::from_millis(20)), 1);
        assert_eq!(retry_after_s(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_s(Duration::from_secs(60)), 60);
    }

    #[test]
    fn a_zero_rate_turns_a_limit_off() {
        let limits = Limits::new(&LimitsConfig::off());
        assert!(!limits.any());
        for _ in 0..1_000 {
            assert!(limits.check_user(&user("u")).is_ok());
        }
        assert!(limits.check_hold(&user("u")).is_ok());
    }

    #[test]
    fn pruning_forgets_idle_users() {
        let config = LimitsConfig { user_per_s: 1_000, user_burst: 1, ..LimitsConfig::default() };
        let limits = Limits::new(&config);
        for i in 0..50 {
            limits.check_user(&user(&format!("u{i}"))).expect("first request passes");
        }
        assert_eq!(limits.user_keys(), 50);
        std::thread::sleep(Duration::from_millis(5));
        limits.prune();
        assert_eq!(limits.user_keys(), 0);
    }
}

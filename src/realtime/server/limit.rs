//! Rate limits: a token bucket per key (a person, a sensor). On several nodes the buckets are
//! in Redis, shared: a person has one allowance however many nodes their connections reach.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Instant;

use super::bus::Cluster;

/// A token bucket per key: `burst` tokens, refilled at `rate` per second.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    /// On several nodes: the cluster, and the name of this limiter's buckets in Redis.
    shared: Option<(Arc<Cluster>, &'static str)>,
}

/// One bucket's take, in Redis, by Redis's clock (the nodes' clocks may differ): refill since
/// the last take, then take a token if there is one. KEYS[1]: the bucket; ARGV: rate, burst.
static TAKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
        local time = redis.call('TIME')
        local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
        local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
        local tokens, at = tonumber(bucket[1]), tonumber(bucket[2])
        if tokens == nil or at == nil then tokens, at = burst, now end
        tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
        local allowed = 0
        if tokens >= 1 then tokens, allowed = tokens - 1, 1 end
        redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
        redis.call('PEXPIRE', KEYS[1], math.min(3600000, math.ceil(burst * 1000 / math.max(rate, 0.001)) + 1000))
        return allowed
        ",
    )
});

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter { rate: rate.max(0.0), burst: burst.max(1.0), buckets: Mutex::new(HashMap::new()), shared: None }
    }

    /// Keep the buckets in Redis when there are several nodes, under `name`.
    pub fn shared(mut self, cluster: Option<Arc<Cluster>>, name: &'static str) -> RateLimiter {
        self.shared = cluster.map(|cluster| (cluster, name));
        self
    }

    /// Take a token from `key`'s bucket: false when it has none. On several nodes, from the
    /// shared bucket; if Redis does not answer, from this node's own.
    pub async fn allow(&self, key: &str) -> bool {
        let Some((cluster, name)) = &self.shared else { return self.allow_here(key) };
        let bucket = format!("{}rate:{name}:{key}", cluster.prefix());
        let mut redis = cluster.redis();
        let mut invocation = TAKE.key(bucket);
        invocation.arg(self.rate).arg(self.burst);
        match cluster.quick(invocation.invoke_async::<i64>(&mut redis)).await {
            Ok(allowed) => allowed == 1,
            Err(error) => {
                tracing::debug!(%error, "the shared rate limit is out of reach: this node's own applies");
                self.allow_here(key)
            }
        }
    }

    /// Take a token from this node's own bucket for `key`.
    pub fn allow_here(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > 100_000 {
            // Forget full buckets; they are the same as new ones.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_rate_limiter_allows_a_burst_then_the_rate() {
        let limiter = RateLimiter::new(0.0, 3.0);
        assert!((0..3).all(|_| limiter.allow_here("a")));
        assert!(!limiter.allow_here("a"));
        assert!(limiter.allow_here("b"), "each person has their own bucket");
        let refilling = RateLimiter::new(1000.0, 1.0);
        assert!(refilling.allow_here("a"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(refilling.allow_here("a"));
    }
}

//! Latest values shared by every node (a person's position on a map): per topic, a Redis hash
//! (key → the value, JSON) and a sorted set (key → when it expires). The node that set a value
//! renews it every [`RENEW`] while it holds it; a value whose node died expires after [`TTL`],
//! and a node that follows the topic sweeps it out and says so ([`Latest::on_expired`]), as
//! the node that held it would have. One node alone keeps its values in memory and needs none
//! of this.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::bus::Cluster;
use super::hub::Hub;
use crate::store::now_ms;

use super::presence::renew_while;
pub use super::presence::{RENEW, TTL};

/// Told of each value that expired: the topic and the value.
pub type Expired = Box<dyn Fn(&Arc<str>, &str) + Send + Sync>;

/// A kind of latest value (`location`), shared by every node through Redis.
pub struct Latest {
    cluster: Arc<Cluster>,
    hub: Arc<Hub>,
    kind: &'static str,
    /// What this node set and renews: per topic, per key, the value.
    mine: Mutex<HashMap<Arc<str>, HashMap<String, String>>>,
    expired: Mutex<Option<Expired>>,
}

impl Latest {
    pub fn new(cluster: Arc<Cluster>, hub: Arc<Hub>, kind: &'static str) -> Arc<Latest> {
        let latest =
            Arc::new(Latest { cluster, hub, kind, mine: Mutex::new(HashMap::new()), expired: Mutex::new(None) });
        tokio::spawn(renew_while(Arc::downgrade(&latest), |latest| async move {
            if let Err(error) = latest.renew().await {
                tracing::warn!(%error, kind = latest.kind, "renewing latest values failed");
            }
        }));
        latest
    }

    /// Call `expired` for each value swept out after its node stopped renewing it.
    pub fn on_expired(&self, expired: Expired) {
        *self.expired.lock().unwrap_or_else(PoisonError::into_inner) = Some(expired);
    }

    fn keys(&self, topic: &str) -> (String, String) {
        let prefix = self.cluster.prefix();
        (format!("{prefix}{}:{topic}", self.kind), format!("{prefix}{}-expiry:{topic}", self.kind))
    }

    /// Set `key`'s value in `topic` (written in the background, in order per node).
    pub fn set(self: &Arc<Self>, topic: &Arc<str>, key: &str, value: String) {
        let mut mine = self.mine.lock().unwrap_or_else(PoisonError::into_inner);
        mine.entry(topic.clone()).or_default().insert(key.to_owned(), value.clone());
        drop(mine);
        let (this, topic, key) = (self.clone(), topic.clone(), key.to_owned());
        tokio::spawn(async move {
            if let Err(error) = this.write(&topic, &key, Some(&value)).await {
                tracing::warn!(%error, "writing a latest value to Redis failed; renewing retries");
            }
        });
    }

    /// Forget `key`'s value in `topic`.
    pub fn remove(self: &Arc<Self>, topic: &Arc<str>, key: &str) {
        let mut mine = self.mine.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(values) = mine.get_mut(topic) {
            values.remove(key);
            if values.is_empty() {
                mine.remove(topic);
            }
        }
        drop(mine);
        let (this, topic, key) = (self.clone(), topic.clone(), key.to_owned());
        tokio::spawn(async move {
            if let Err(error) = this.write(&topic, &key, None).await {
                tracing::warn!(%error, "removing a latest value from Redis failed; it expires");
            }
        });
    }

    async fn write(&self, topic: &str, key: &str, value: Option<&str>) -> redis::RedisResult<()> {
        let (hash, expiry) = self.keys(topic);
        let mut pipe = redis::pipe();
        pipe.atomic();
        match value {
            Some(value) => {
                let keep = (TTL * 10).as_millis() as i64;
                pipe.hset(&hash, key, value)
                    .ignore()
                    .zadd(&expiry, key, now_ms() + TTL.as_millis() as i64)
                    .ignore()
                    .pexpire(&hash, keep)
                    .ignore()
                    .pexpire(&expiry, keep)
                    .ignore();
            }
            None => {
                pipe.hdel(&hash, key).ignore().zrem(&expiry, key).ignore();
            }
        }
        pipe.query_async(&mut self.cluster.redis()).await
    }

    /// Every value in `topic` that has not expired, on every node (see [`Cluster::quick`]).
    pub async fn all(&self, topic: &str) -> Result<Vec<String>, String> {
        let (hash, expiry) = self.keys(topic);
        let mut redis = self.cluster.redis();
        let mut pipe = redis::pipe();
        pipe.zrangebyscore(&expiry, now_ms(), "+inf").hgetall(&hash);
        let (live, values): (Vec<String>, HashMap<String, String>) =
            self.cluster.quick(pipe.query_async(&mut redis)).await?;
        Ok(live.into_iter().filter_map(|key| values.get(&key).cloned()).collect())
    }

    /// Renew this node's values; sweep out the expired values of topics followed here.
    async fn renew(&self) -> redis::RedisResult<()> {
        let mine: Vec<(Arc<str>, Vec<String>)> = {
            let mine = self.mine.lock().unwrap_or_else(PoisonError::into_inner);
            mine.iter().map(|(topic, values)| (topic.clone(), values.keys().cloned().collect())).collect()
        };
        let until = now_ms() + TTL.as_millis() as i64;
        let mut pipe = redis::pipe();
        for (topic, keys) in &mine {
            let (_, expiry) = self.keys(topic);
            for key in keys {
                pipe.zadd(&expiry, key, until).ignore();
            }
        }
        if !mine.is_empty() {
            pipe.query_async::<()>(&mut self.cluster.redis()).await?;
        }
        let followed: Vec<Arc<str>> = self.hub.topics_with_prefix(&format!("{}:", self.kind));
        for topic in followed {
            self.sweep(&topic).await?;
        }
        Ok(())
    }

    /// Take out `topic`'s expired values; each one is announced by the node whose removal
    /// took it (one node, however many sweep).
    async fn sweep(&self, topic: &Arc<str>) -> redis::RedisResult<()> {
        let (hash, expiry) = self.keys(topic);
        let mut redis = self.cluster.redis();
        let stale: Vec<String> =
            redis::cmd("ZRANGEBYSCORE").arg(&expiry).arg("-inf").arg(now_ms()).query_async(&mut redis).await?;
        for key in stale {
            let value: Option<String> = redis::cmd("HGET").arg(&hash).arg(&key).query_async(&mut redis).await?;
            // Only if it is still stale: renewed meanwhile, it stays.
            let taken: i64 = redis::Script::new(
                "if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '-1') < tonumber(ARGV[2]) and \
                 redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then redis.call('HDEL', KEYS[2], ARGV[1]) return 1 end return 0",
            )
            .key(&expiry)
            .key(&hash)
            .arg(&key)
            .arg(now_ms())
            .invoke_async(&mut redis)
            .await?;
            if let (1, Some(value)) = (taken, value) {
                if let Some(expired) = &*self.expired.lock().unwrap_or_else(PoisonError::into_inner) {
                    expired(topic, &value);
                }
            }
        }
        Ok(())
    }
}

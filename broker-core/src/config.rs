//! Broker settings, with defaults that interoperate with existing MDP/0.1 workers.

use std::time::Duration;

use domo_mdp::Heartbeat;

/// Longest value any duration setting may take: one year. Far longer than any sensible
/// setting, and far enough from `Instant`'s range that `now + setting` cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Settings of the broker core.
///
/// Every field has a default ([`BrokerConfig::default`]); [`BrokerConfig::validate`] checks
/// a configuration and [`crate::Broker::new`] refuses one that does not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Heartbeat interval and liveness towards workers. The broker sends HEARTBEAT to every
    /// worker, idle or busy, once per interval in which it sent the worker nothing else, and
    /// removes a worker that stays silent for `interval * liveness`. Workers must use the
    /// same values (RFC 7's admitted weakness). Default: 2500 ms and 3, the zguide's values,
    /// so existing MDP workers interoperate.
    pub heartbeat: Heartbeat,
    /// Longest time a request waits in a service queue for a worker before it is dropped and
    /// counted (RFC 7: the broker SHOULD expire requests for services nobody serves). The
    /// limit applies to each stay in a queue: a request put back after losing its worker
    /// waits up to this long again. Zero means requests never wait: a request that finds no
    /// idle worker is dropped as expired. Default: 30 s, longer than any zguide client waits
    /// for a reply (2.5 s per try, 3 tries), so a request only expires once its client has
    /// given up.
    pub request_timeout: Duration,
    /// Limits of each service's queue. A queue that reaches either limit is closed: requests
    /// for it are handed back to the transport and their clients paused, never dropped,
    /// until it drains to three quarters of both (see [`crate::Flow`]). A request put
    /// back after losing its worker is always re-admitted (it was admitted once), so a
    /// queue can exceed its limits by the number of workers lost. Default: 200,000 requests
    /// and 256 MiB of body bytes, twice what the zguide's asynchronous client sends before it
    /// reads any reply (100,000 requests).
    pub service_queue: QueueLimits,
    /// Limits of all service queues together: clients can name arbitrary services, so
    /// per-service limits alone would not bound memory. Closes and reopens like a service's
    /// queue, for requests that would be queued. Default: 1,000,000 requests and 1 GiB of
    /// body bytes.
    pub total_queue: QueueLimits,
    /// Whether a request held by a worker that dies, disconnects or breaks the protocol goes
    /// back to the head of its service queue to be dispatched again (at-least-once delivery;
    /// workers must be idempotent). When off, such a request is dropped and counted
    /// (at-most-once). Default: on.
    pub redispatch: bool,
    /// Bound on what one client may have accepted and not yet answered: requests queued or at
    /// a worker, and replies waiting to be written to it. Bytes are body bytes plus
    /// [`crate::REQUEST_OVERHEAD`] per request, so they bound memory for small requests
    /// too. At either limit the client alone is paused (the broker stops reading from it)
    /// until it is back at three quarters of both. Default: 200,000 requests and 32 MiB,
    /// above what the zguide's asynchronous client sends before it reads (100,000 small
    /// requests, 27 MB as charged): such a client blocks in its own send once paused and
    /// would never read again.
    pub client_limits: QueueLimits,
    /// How many times one request may be re-dispatched; when it loses a worker once more it
    /// is dropped and counted, so a poison request that crashes every worker it reaches
    /// cannot take down the whole service. Default: 2, three attempts in all, the retry count
    /// of the zguide's synchronous client.
    pub max_redispatch: u32,
}

/// Bounds on queued requests: how many, and how many body bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most requests the queue holds.
    pub max_requests: usize,
    /// Most body bytes (the sum of the body frame lengths) the queue holds. Per-request
    /// overhead is not counted; `max_requests` bounds it.
    pub max_bytes: usize,
}

/// Why a [`BrokerConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A zero heartbeat interval would make the broker heartbeat in a busy loop.
    #[error("heartbeat interval must be greater than zero")]
    ZeroHeartbeatInterval,
    /// A liveness of zero would expire every worker the moment it registers.
    #[error("heartbeat liveness must be at least 1")]
    ZeroLiveness,
    /// A duration setting is longer than [`MAX_DURATION`].
    #[error("{setting} is {value:?}, longer than the limit of one year")]
    DurationTooLong {
        /// The setting's field name.
        setting: &'static str,
        /// The refused value.
        value: Duration,
    },
}

impl BrokerConfig {
    /// Default per-service queue limits: 200,000 requests, 256 MiB.
    pub const DEFAULT_SERVICE_QUEUE: QueueLimits = QueueLimits {
        max_requests: 200_000,
        max_bytes: 256 << 20,
    };
    /// Default limits of all queues together: 1,000,000 requests, 1 GiB.
    pub const DEFAULT_TOTAL_QUEUE: QueueLimits = QueueLimits {
        max_requests: 1_000_000,
        max_bytes: 1 << 30,
    };
    /// Default wait limit of a queued request: 30 s.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default bound per client: 200,000 requests, 32 MiB.
    pub const DEFAULT_CLIENT_LIMITS: QueueLimits = QueueLimits {
        max_requests: 200_000,
        max_bytes: 32 << 20,
    };
    /// Default re-dispatch limit: 2.
    pub const DEFAULT_MAX_REDISPATCH: u32 = 2;

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] names the first setting that is out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat.interval.is_zero() {
            return Err(ConfigError::ZeroHeartbeatInterval);
        }
        if self.heartbeat.liveness == 0 {
            return Err(ConfigError::ZeroLiveness);
        }
        check_duration("heartbeat expiry", self.heartbeat.expiry())?;
        check_duration("request_timeout", self.request_timeout)
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            heartbeat: Heartbeat::default(),
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            service_queue: Self::DEFAULT_SERVICE_QUEUE,
            total_queue: Self::DEFAULT_TOTAL_QUEUE,
            client_limits: Self::DEFAULT_CLIENT_LIMITS,
            redispatch: true,
            max_redispatch: Self::DEFAULT_MAX_REDISPATCH,
        }
    }
}

fn check_duration(setting: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value > MAX_DURATION {
        return Err(ConfigError::DurationTooLong { setting, value });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_uses_zguide_heartbeats() {
        let config = BrokerConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.heartbeat.interval, Duration::from_millis(2500));
        assert_eq!(config.heartbeat.liveness, 3);
        assert!(config.service_queue.max_requests >= 100_000);
        assert!(config.service_queue.max_bytes >= 100_000 * 64);
    }

    #[test]
    fn zero_interval_and_liveness_are_refused() {
        let mut config = BrokerConfig::default();
        config.heartbeat.interval = Duration::ZERO;
        assert_eq!(config.validate(), Err(ConfigError::ZeroHeartbeatInterval));
        let mut config = BrokerConfig::default();
        config.heartbeat.liveness = 0;
        assert_eq!(config.validate(), Err(ConfigError::ZeroLiveness));
    }

    #[test]
    fn absurd_durations_are_refused() {
        let config = BrokerConfig {
            request_timeout: Duration::MAX,
            ..BrokerConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::DurationTooLong {
                setting: "request_timeout",
                ..
            })
        ));
        let mut config = BrokerConfig::default();
        config.heartbeat.interval = MAX_DURATION;
        assert!(config.validate().is_err());
    }
}

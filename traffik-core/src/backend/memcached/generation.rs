//! Namespace generations: the number in every key of a namespace, which `reset` moves
//! on so that every key written before is out of sight, without a list of keys.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::conn::{self, ArithmeticError, Conn, Mode, Outcome};
use super::counter::parse_decimal;
use super::keys;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};

/// A namespace's generation number as last read, and when (local micros; 0: never).
#[derive(Debug)]
pub(crate) struct Generation {
    key: String,
    value: AtomicU64,
    read_at: AtomicU64,
    refresh: Duration,
}

impl Generation {
    /// The generation of `namespace`, trusted for `refresh` after each read.
    pub(crate) fn new(namespace: &str, refresh: Duration) -> Self {
        Self {
            key: keys::generation_key(namespace),
            value: AtomicU64::new(0),
            read_at: AtomicU64::new(0),
            refresh,
        }
    }

    /// The generation as last read, if that was less than the refresh period ago.
    pub(crate) fn cached(&self) -> Option<u64> {
        let read_at = self.read_at.load(Ordering::Acquire);
        let age = SystemClock.now_micros().saturating_sub(read_at);
        (read_at != 0 && u128::from(age) < self.refresh.as_micros())
            .then(|| self.value.load(Ordering::Acquire))
    }

    fn remember(&self, value: u64) -> u64 {
        self.value.store(value, Ordering::Release);
        self.read_at
            .store(SystemClock.now_micros().max(1), Ordering::Release);
        value
    }

    /// Reads the generation, starting one when there is none (or it is unreadable).
    pub(crate) async fn read(&self, conn: &mut Conn) -> Result<u64> {
        for _ in 0..3 {
            let mode = match conn::get(conn, &self.key).await? {
                None => Mode::Add,
                Some(item) => match parse_decimal(&item.data) {
                    Some(value) => return Ok(self.remember(value)),
                    None => {
                        tracing::warn!(
                            key = self.key,
                            "unreadable namespace generation; starting a new one"
                        );
                        Mode::Cas(item.cas)
                    }
                },
            };
            let seed = seed();
            let text = seed.to_string();
            if let Outcome::Done(_) = conn::set(conn, &self.key, text.as_bytes(), 0, mode).await? {
                return Ok(self.remember(seed));
            }
        }
        Err(Error::Backend(format!(
            "memcached: the generation key {:?} keeps changing under this reader",
            self.key
        )))
    }

    /// Moves the namespace to a new generation.
    pub(crate) async fn bump(&self, conn: &mut Conn) -> Result<()> {
        let seed = seed();
        let value = match conn::arithmetic(conn, &self.key, 1, false, 0, seed).await {
            Ok(value) => value,
            Err(ArithmeticError::NotANumber) => {
                conn::set(conn, &self.key, seed.to_string().as_bytes(), 0, Mode::Set).await?;
                seed
            }
            Err(ArithmeticError::Failed(error)) => return Err(error),
        };
        self.remember(value);
        Ok(())
    }
}

/// A fresh generation number: the current time in microseconds, so that a generation key
/// lost to eviction never brings back an older generation.
fn seed() -> u64 {
    SystemClock.now_micros()
}

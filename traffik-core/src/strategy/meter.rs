//! The bucket arithmetic shared by the token and leaky buckets.
//!
//! A bucket is a level that rises by the cost of each admitted request and drains at the
//! rate. All quantities are exact integers scaled by the period `P`: one unit of cost is
//! `P` level units and the level drains by `limit` units per microsecond, so no rounding
//! ever admits more than the rate allows.

use super::codec;
use super::{StateBytes, Transition, ceil_div, corrupt, floor_div, micros};
use crate::clock::Micros;
use crate::decision::Decision;
use crate::error::{Error, Result};
use crate::rate::Rate;

/// How one bucket strategy admits and reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meter {
    pub name: &'static str,
    pub tag: u8,
    /// The most cost the level may hold (admission bound), in units of cost.
    pub capacity: u64,
    /// The quota reported as the limit (a debt bucket reports its burst, not its debt).
    pub visible: u64,
    /// Admit only into an empty bucket (a leaky bucket with no queue).
    pub only_when_empty: bool,
}

/// The drained level at `now`, and the time it was last written.
struct Level {
    level: u128,
    at: Micros,
}

impl Meter {
    fn scaled(&self, units: u64, rate: &Rate) -> u128 {
        u128::from(units) * u128::from(rate.period_micros())
    }

    fn level(&self, state: Option<&[u8]>, now: Micros, rate: &Rate) -> Level {
        let stored = state.and_then(|bytes| {
            let decoded = codec::decode::<2>(bytes, self.tag)
                .filter(|[level, _]| u128::from(*level) <= self.scaled(self.capacity, rate));
            if decoded.is_none() {
                corrupt(self.name, bytes);
            }
            decoded
        });
        match stored {
            None => Level { level: 0, at: now },
            Some([level, at]) => {
                let drained = u128::from(now.saturating_sub(at)) * u128::from(rate.limit());
                Level {
                    level: u128::from(level).saturating_sub(drained),
                    // A wall clock that stepped back must not drain the bucket twice.
                    at: at.max(now),
                }
            }
        }
    }

    fn fits(&self, level: u128, cost: u64, rate: &Rate) -> bool {
        if self.only_when_empty {
            level == 0
        } else {
            level + self.scaled(cost, rate) <= self.scaled(self.capacity, rate)
        }
    }

    fn remaining(&self, level: u128, rate: &Rate) -> u64 {
        if self.only_when_empty {
            return u64::from(level == 0);
        }
        let room = self.scaled(self.visible, rate).saturating_sub(level);
        u64::try_from(floor_div(room, u128::from(rate.period_micros()))).unwrap_or(u64::MAX)
    }

    /// Microseconds until the bucket is empty.
    fn until_empty(&self, level: u128, rate: &Rate) -> u128 {
        ceil_div(level, u128::from(rate.limit()))
    }

    /// Microseconds until `cost` fits.
    fn wait(&self, level: u128, cost: u64, rate: &Rate) -> u128 {
        if self.only_when_empty {
            return self.until_empty(level, rate);
        }
        let excess =
            (level + self.scaled(cost, rate)).saturating_sub(self.scaled(self.capacity, rate));
        ceil_div(excess, u128::from(rate.limit()))
    }

    fn encode(&self, level: u128, at: Micros) -> Result<StateBytes> {
        let level = u64::try_from(level).map_err(|_| {
            Error::Configuration(format!(
                "{}: capacity times period exceeds what the state can hold; use a shorter period or a smaller capacity",
                self.name
            ))
        })?;
        Ok(codec::encode(self.tag, &[level, at]))
    }

    pub fn apply(
        &self,
        state: Option<&[u8]>,
        now: Micros,
        rate: &Rate,
        cost: u64,
    ) -> Result<Transition> {
        let Level { level, at } = self.level(state, now, rate);
        if !self.fits(level, cost, rate) {
            return Ok(Transition::keep(Decision::deny(
                self.visible,
                self.remaining(level, rate),
                micros(self.wait(level, cost, rate)),
                micros(self.until_empty(level, rate)),
            )));
        }
        let level = level + self.scaled(cost, rate);
        let reset = micros(self.until_empty(level, rate));
        Ok(Transition::put(
            Decision::allow(self.visible, self.remaining(level, rate), reset),
            self.encode(level, at)?,
            reset,
        ))
    }

    pub fn peek(&self, state: Option<&[u8]>, now: Micros, rate: &Rate) -> Decision {
        let Level { level, .. } = self.level(state, now, rate);
        let reset = micros(self.until_empty(level, rate));
        if self.fits(level, 1, rate) {
            Decision::allow(self.visible, self.remaining(level, rate), reset)
        } else {
            Decision::deny(
                self.visible,
                self.remaining(level, rate),
                micros(self.wait(level, 1, rate)),
                reset,
            )
        }
    }
}

//! How the planner chooses: the utilisation cap and the scoring strategy.
//!
//! It exists so the cap can only ever be lowered: a `Policy` with a cap above 80 % cannot be built,
//! not even by deserialising one.

use serde::{Deserialize, Serialize};

use crate::error::PolicyError;

/// The highest cap the planner accepts: no host's vCPU (against its overcommit), memory or pool
/// disk may be allocated beyond this share of its capacity by a decision.
pub const MAX_CAP_PERCENT: u8 = 80;

/// Which of the hosts that fit wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The least loaded host (the default): VMs spread across hosts.
    #[default]
    Spread,
    /// The most loaded host that still fits: VMs packed onto few hosts.
    Pack,
}

/// A validated placement policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PolicySpec", into = "PolicySpec")]
pub struct Policy {
    cap_percent: u8,
    strategy: Strategy,
}

/// A policy as written in a configuration, before validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub cap_percent: u8,
    #[serde(default)]
    pub strategy: Strategy,
}

impl Policy {
    /// A policy, or an error when `cap_percent` is above [`MAX_CAP_PERCENT`].
    pub fn new(cap_percent: u8, strategy: Strategy) -> Result<Self, PolicyError> {
        if cap_percent > MAX_CAP_PERCENT {
            return Err(PolicyError::CapTooHigh { cap_percent, max: MAX_CAP_PERCENT });
        }
        Ok(Self { cap_percent, strategy })
    }

    pub fn cap_percent(&self) -> u8 {
        self.cap_percent
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The same cap with another strategy.
    pub fn with_strategy(self, strategy: Strategy) -> Self {
        Self { strategy, ..self }
    }
}

impl Default for Policy {
    /// The 80 % cap, spread.
    fn default() -> Self {
        Self { cap_percent: MAX_CAP_PERCENT, strategy: Strategy::Spread }
    }
}

impl TryFrom<PolicySpec> for Policy {
    type Error = PolicyError;

    fn try_from(spec: PolicySpec) -> Result<Self, Self::Error> {
        Policy::new(spec.cap_percent, spec.strategy)
    }
}

impl From<Policy> for PolicySpec {
    fn from(policy: Policy) -> Self {
        PolicySpec { cap_percent: policy.cap_percent, strategy: policy.strategy }
    }
}

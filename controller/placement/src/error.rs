//! Errors of building a policy and of changing the view.
//!
//! It exists so a caller learns exactly which host, VM or tenant made a change impossible. A
//! refused change never alters the view. Refusals of a placement are `NoFit` (see `nofit`).

/// A policy that would let hosts fill beyond the cap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("cap_percent {cap_percent} is above the maximum of {max} %; the cap may only be lowered")]
    CapTooHigh { cap_percent: u8, max: u8 },
}

/// A change the view cannot make; the view is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("host '{host}' is not in the view")]
    UnknownHost { host: String },
    #[error("host '{host}' still holds {vms} vm(s); move or release them first")]
    HostNotEmpty { host: String, vms: usize },
    #[error("vm '{vm}' is not placed in the view")]
    UnknownVm { vm: String },
    #[error("tenant '{tenant}' of vm '{vm}' is not in the view")]
    UnknownTenant { vm: String, tenant: String },
    #[error("decision for vm '{vm}' is stale: it was planned with the vm on {planned}, but it is on {actual}")]
    StaleDecision { vm: String, planned: String, actual: String },
    #[error("vm '{vm}' needs pool '{pool}', which host '{host}' does not have")]
    MissingPool { vm: String, host: String, pool: String },
}

//! Refusals: why a VM fits nowhere, counted per failed constraint.
//!
//! It exists so the operator reads which constraint excluded how many hosts (the controller
//! returns the message in a 409), and tests can check that every host is accounted for. Counts
//! attribute each host to the first filter it fails (see `filter`), so they add up to `hosts`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::filter::{Constraint, Prepared};

/// The tenant resource a quota refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaResource {
    Vcpus,
    MemoryMib,
    DiskBytes,
}

impl fmt::Display for QuotaResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuotaResource::Vcpus => "vcpus",
            QuotaResource::MemoryMib => "memory_mib",
            QuotaResource::DiskBytes => "disk_bytes",
        })
    }
}

/// How many hosts one constraint excluded, and that constraint in words for this request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusion {
    pub constraint: Constraint,
    pub hosts: usize,
    /// E.g. "would exceed the 80 % memory cap".
    pub reason: String,
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.hosts == 1 { "host" } else { "hosts" };
        write!(f, "{} {noun} {}", self.hosts, self.reason)
    }
}

/// Why a VM was not placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoFit {
    /// Every host failed some constraint; `exclusions` (in filter order, non-zero counts only) add
    /// up to `hosts`.
    #[error("no host fits vm {vm}: {}", describe(*.hosts, .exclusions))]
    NoHost { vm: String, hosts: usize, exclusions: Vec<Exclusion> },
    #[error(
        "no host fits vm {vm}: tenant '{tenant}' quota {resource} exceeded: \
         {used} in use + {requested} requested > {limit} allowed"
    )]
    OverQuota { vm: String, tenant: String, resource: QuotaResource, used: u64, requested: u64, limit: u64 },
    #[error("no host fits vm {vm}: tenant '{tenant}' is not in the planner's view")]
    UnknownTenant { vm: String, tenant: String },
    /// From `verify`: the decided host does not (or no longer) fit.
    #[error("vm {vm} does not fit host {host}: {}", .exclusion.reason)]
    HostRejects { vm: String, host: String, exclusion: Exclusion },
    /// From `verify`: the decided host is gone.
    #[error("vm {vm} does not fit host {host}: the host is not in the planner's view")]
    UnknownHost { vm: String, host: String },
}

impl NoFit {
    /// The VM the refusal is about.
    pub fn vm(&self) -> &str {
        match self {
            NoFit::NoHost { vm, .. }
            | NoFit::OverQuota { vm, .. }
            | NoFit::UnknownTenant { vm, .. }
            | NoFit::HostRejects { vm, .. }
            | NoFit::UnknownHost { vm, .. } => vm,
        }
    }
}

fn describe(hosts: usize, exclusions: &[Exclusion]) -> String {
    if hosts == 0 {
        return "there are no hosts".to_string();
    }
    exclusions.iter().map(Exclusion::to_string).collect::<Vec<_>>().join(", ")
}

/// Hosts counted per constraint.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    counts: [usize; Constraint::ALL.len()],
}

impl Tally {
    pub fn add(&mut self, constraint: Constraint, hosts: usize) {
        self.counts[constraint as usize] += hosts;
    }

    pub fn merge(&mut self, other: Tally) {
        for (count, more) in self.counts.iter_mut().zip(other.counts) {
            *count += more;
        }
    }

    /// The refusal, naming each constraint that excluded hosts, in filter order.
    pub fn into_no_fit(self, prepared: &Prepared<'_>, hosts: usize) -> NoFit {
        let exclusions = Constraint::ALL
            .iter()
            .zip(self.counts)
            .filter(|(_, count)| *count > 0)
            .map(|(&constraint, count)| Exclusion { constraint, hosts: count, reason: reason(constraint, prepared) })
            .collect();
        NoFit::NoHost { vm: prepared.request.vm.clone(), hosts, exclusions }
    }
}

/// A constraint in words, for this request.
pub(crate) fn reason(constraint: Constraint, prepared: &Prepared<'_>) -> String {
    let (request, cap) = (prepared.request, prepared.cap_percent);
    let pools = || prepared.pool_demand.iter().map(|(pool, _)| *pool).collect::<Vec<_>>().join(", ");
    match constraint {
        Constraint::Arch => format!("wrong arch (not {})", request.arch),
        Constraint::Site => format!("in another site (not {})", request.site.as_deref().unwrap_or("any")),
        Constraint::Maintenance => "in maintenance".to_string(),
        Constraint::Offline => "offline".to_string(),
        Constraint::Fenced => "fenced".to_string(),
        Constraint::CurrentHost => "already running the vm".to_string(),
        Constraint::Excluded => "excluded by the request".to_string(),
        Constraint::Firmware => format!("without firmware profile {}", request.firmware),
        Constraint::Zones => {
            let zones: Vec<&str> = request.zones.iter().map(String::as_str).collect();
            format!("not reaching zone(s) {}", zones.join(", "))
        }
        Constraint::AntiAffinity => format!(
            "already running a member of anti-affinity group {}",
            request.anti_affinity_group.as_deref().unwrap_or("-")
        ),
        Constraint::VcpuCap => format!("would exceed the {cap} % vCPU cap"),
        Constraint::MemoryCap => format!("would exceed the {cap} % memory cap"),
        Constraint::MissingPool => format!("without pool(s) {}", pools()),
        Constraint::DiskCap => format!("would exceed the {cap} % disk cap of pool(s) {}", pools()),
    }
}

//! The pure part of reconciling: desired state + what the host has → the actions that close the gap.
//!
//! No I/O here: the executor (`mod.rs`) gathers the actual state, calls these planners and carries the
//! actions out. Planning is deterministic (ordered maps only) so the same inputs always give the same
//! actions, and it is safe to re-run at any time: an action is only planned when the host differs
//! from the desired state.

use std::collections::{BTreeMap, BTreeSet};

use hci_shared::agent::{HostDesired, VmRunState, VolumeDesired};
use hci_shared::resources::PowerState;

use crate::hypervisor::DomainInfo;

const GIB: u64 = 1 << 30;

/// Volume changes, in the order they must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeAction {
    Create { pool: String, id: String, capacity_bytes: u64 },
    Grow { pool: String, id: String, capacity_bytes: u64 },
}

/// A volume present on the host: pool, id, capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentVolume {
    pub pool: String,
    pub id: String,
    pub capacity_bytes: u64,
}

/// Creates what is missing and grows what is too small. Deletions are planned separately, after the
/// domains that might use them are gone ([`plan_volume_deletes`]).
pub fn plan_volumes(desired: &[VolumeDesired], present: &[PresentVolume]) -> Vec<VolumeAction> {
    let have: BTreeMap<(&str, &str), u64> =
        present.iter().map(|v| ((v.pool.as_str(), v.id.as_str()), v.capacity_bytes)).collect();
    let mut actions = Vec::new();
    for v in desired {
        let want = v.size_gib.saturating_mul(GIB);
        match have.get(&(v.pool.as_str(), v.id.as_str())) {
            None => actions.push(VolumeAction::Create { pool: v.pool.clone(), id: v.id.clone(), capacity_bytes: want }),
            Some(&cap) if cap < want => {
                actions.push(VolumeAction::Grow { pool: v.pool.clone(), id: v.id.clone(), capacity_bytes: want })
            }
            Some(_) => {}
        }
    }
    actions
}

/// Volumes to delete, (pool, id): in a local pool, those no longer in the desired state; in a shared
/// pool (`shared_pools`), only those the desired state retires, since a volume another host uses is
/// missing from this host's desired state too.
pub fn plan_volume_deletes(
    desired: &HostDesired,
    present: &[PresentVolume],
    shared_pools: &BTreeSet<String>,
) -> Vec<(String, String)> {
    let wanted: BTreeSet<(&str, &str)> = desired.volumes.iter().map(|v| (v.pool.as_str(), v.id.as_str())).collect();
    let retired: BTreeSet<(&str, &str)> =
        desired.retired_volumes.iter().map(|v| (v.pool.as_str(), v.id.as_str())).collect();
    present
        .iter()
        .filter(|v| {
            let key = (v.pool.as_str(), v.id.as_str());
            if shared_pools.contains(&v.pool) {
                retired.contains(&key)
            } else {
                !wanted.contains(&key)
            }
        })
        .map(|v| (v.pool.clone(), v.id.clone()))
        .collect()
}

/// What one desired VM needs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainAction {
    /// Define (or redefine) the domain from its spec.
    Define,
    Start,
    Shutdown,
    Reboot,
}

/// The desired side of one VM, reduced to what planning needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedDomain {
    pub name: String,
    pub digest: String,
    pub power: PowerState,
    pub reboot_count: u64,
}

/// Plans one VM: define when missing or defined from another spec, then bring the power state
/// where it should be. `applied_reboots` is the reboot count already acted on.
pub fn plan_domain(wanted: &WantedDomain, actual: Option<&DomainInfo>, applied_reboots: u64) -> Vec<DomainAction> {
    let mut actions = Vec::new();
    let defined_digest = actual.and_then(|d| d.owner.as_ref()).map(|o| o.digest.as_str());
    if defined_digest != Some(wanted.digest.as_str()) {
        actions.push(DomainAction::Define);
    }
    let state = actual.map_or(VmRunState::Missing, |d| d.state);
    let running = matches!(state, VmRunState::Running | VmRunState::Paused);
    match wanted.power {
        PowerState::Running if !running => actions.push(DomainAction::Start),
        PowerState::Running if wanted.reboot_count > applied_reboots => actions.push(DomainAction::Reboot),
        PowerState::Stopped if running || state == VmRunState::ShuttingDown => actions.push(DomainAction::Shutdown),
        _ => {}
    }
    actions
}

/// Domains this host owns that are not desired (to undefine), and domains hci does not own (to
/// report). Domains owned by another host id are neither: they belong to another agent sharing this
/// hypervisor (simulated hosts) and are left alone.
pub fn plan_domain_cleanup(
    host_id: &str,
    wanted_names: &BTreeSet<String>,
    actual: &[DomainInfo],
) -> (Vec<String>, Vec<String>) {
    let mut undefine = Vec::new();
    let mut foreign = Vec::new();
    for domain in actual {
        match &domain.owner {
            None => foreign.push(domain.name.clone()),
            Some(owner) if owner.host_id == host_id && !wanted_names.contains(&domain.name) => {
                undefine.push(domain.name.clone())
            }
            Some(_) => {}
        }
    }
    (undefine, foreign)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::DomainOwner;
    use hci_shared::agent::{RetiredVolume, VolumeSource};

    fn vol(id: &str, gib: u64) -> VolumeDesired {
        VolumeDesired {
            id: id.into(),
            pool: "default".into(),
            size_gib: gib,
            source: VolumeSource::Empty,
            snapshots: vec![],
            rollback: None,
        }
    }

    fn present(id: &str, gib: u64) -> PresentVolume {
        PresentVolume { pool: "default".into(), id: id.into(), capacity_bytes: gib * GIB }
    }

    #[test]
    fn volumes_are_created_grown_and_deleted_only_when_needed() {
        let desired = [vol("a", 2), vol("b", 5), vol("c", 1)];
        let have = [present("a", 2), present("b", 3), present("old", 1)];
        assert_eq!(
            plan_volumes(&desired, &have),
            vec![
                VolumeAction::Grow { pool: "default".into(), id: "b".into(), capacity_bytes: 5 * GIB },
                VolumeAction::Create { pool: "default".into(), id: "c".into(), capacity_bytes: GIB },
            ]
        );
        let host = HostDesired {
            host_id: "h1".into(),
            generation: 1,
            volumes: desired.to_vec(),
            vms: vec![],
            retired_volumes: vec![],
            isolation: None,
            network: None,
        };
        let local = BTreeSet::new();
        assert_eq!(plan_volume_deletes(&host, &have, &local), vec![("default".to_string(), "old".to_string())]);
        let converged = [present("a", 2), present("b", 5), present("c", 1)];
        assert!(plan_volumes(&desired, &converged).is_empty(), "a converged host needs nothing");
    }

    fn wanted(power: PowerState, reboots: u64) -> WantedDomain {
        WantedDomain { name: "hci-h1-vm".into(), digest: "d1".into(), power, reboot_count: reboots }
    }

    fn domain(state: VmRunState, digest: &str) -> DomainInfo {
        DomainInfo {
            name: "hci-h1-vm".into(),
            state,
            owner: Some(DomainOwner { host_id: "h1".into(), vm_id: "vm".into(), generation: 1, digest: digest.into() }),
        }
    }

    #[test]
    fn domains_converge_and_then_nothing_is_planned() {
        use DomainAction::*;
        assert_eq!(plan_domain(&wanted(PowerState::Running, 0), None, 0), vec![Define, Start]);
        assert_eq!(
            plan_domain(&wanted(PowerState::Running, 0), Some(&domain(VmRunState::Stopped, "d1")), 0),
            vec![Start]
        );
        assert_eq!(plan_domain(&wanted(PowerState::Running, 0), Some(&domain(VmRunState::Running, "d1")), 0), vec![]);
        assert_eq!(
            plan_domain(&wanted(PowerState::Running, 0), Some(&domain(VmRunState::Running, "d0")), 0),
            vec![Define]
        );
        assert_eq!(
            plan_domain(&wanted(PowerState::Stopped, 0), Some(&domain(VmRunState::Running, "d1")), 0),
            vec![Shutdown]
        );
        assert_eq!(plan_domain(&wanted(PowerState::Stopped, 0), Some(&domain(VmRunState::Stopped, "d1")), 0), vec![]);
        assert_eq!(
            plan_domain(&wanted(PowerState::Running, 2), Some(&domain(VmRunState::Running, "d1")), 1),
            vec![Reboot]
        );
        assert_eq!(plan_domain(&wanted(PowerState::Running, 2), Some(&domain(VmRunState::Running, "d1")), 2), vec![]);
        assert_eq!(plan_domain(&wanted(PowerState::Stopped, 0), None, 0), vec![Define]);
    }

    #[test]
    fn shared_pools_delete_only_retired_volumes() {
        let have = [present("mine", 1), present("elsewhere", 1), present("retired", 1)];
        let host = HostDesired {
            host_id: "h1".into(),
            generation: 1,
            volumes: vec![vol("mine", 1)],
            vms: vec![],
            retired_volumes: vec![RetiredVolume { pool: "default".into(), id: "retired".into() }],
            isolation: None,
            network: None,
        };
        let shared = BTreeSet::from(["default".to_string()]);
        assert_eq!(plan_volume_deletes(&host, &have, &shared), vec![("default".to_string(), "retired".to_string())]);
        let local = BTreeSet::new();
        assert_eq!(
            plan_volume_deletes(&host, &have, &local),
            vec![("default".to_string(), "elsewhere".to_string()), ("default".to_string(), "retired".to_string())]
        );
    }

    #[test]
    fn cleanup_touches_only_this_hosts_domains() {
        let mut other_host = domain(VmRunState::Running, "d");
        other_host.name = "hci-h2-x".into();
        if let Some(o) = other_host.owner.as_mut() {
            o.host_id = "h2".into();
        }
        let mut stray = domain(VmRunState::Running, "d");
        stray.name = "hci-h1-gone".into();
        let foreign = DomainInfo { name: "legacy-db".into(), state: VmRunState::Running, owner: None };
        let kept = domain(VmRunState::Running, "d");
        let wanted_names = BTreeSet::from(["hci-h1-vm".to_string()]);
        let (undefine, foreign_names) = plan_domain_cleanup("h1", &wanted_names, &[other_host, stray, foreign, kept]);
        assert_eq!(undefine, vec!["hci-h1-gone".to_string()]);
        assert_eq!(foreign_names, vec!["legacy-db".to_string()]);
    }
}

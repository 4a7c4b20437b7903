//! How each shared resource type looks in a table row and in `show`'s detail view.
//!
//! Kept apart from the commands so that the columns of a resource are decided once, whichever verb
//! (list, create, start, ...) ends up printing it.

use hci_shared::api::{ClusterStatus, Member};
use hci_shared::hosts::{HostView, VmView};
use hci_shared::resources::{etag, AuditRecord, Tenant, Vm, Volume, Zone, ZonePolicy};
use serde::Serialize;

use crate::output::{opt, Table, View};

/// A unit enum's wire name (`normal`, `running`, ...).
fn wire<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_string(),
    }
}

fn used_of<T: std::fmt::Display>(used: T, quota: T) -> String {
    format!("{used}/{quota}")
}

impl View for Tenant {
    fn headers() -> &'static [&'static str] {
        &["NAME", "VCPUS", "MEMORY_MIB", "DISK_GIB", "DESCRIPTION"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            used_of(self.usage.vcpus, self.quota.vcpus),
            used_of(self.usage.memory_mib, self.quota.memory_mib),
            used_of(self.usage.disk_gib, self.quota.disk_gib),
            self.description.clone(),
        ]
    }
    fn details(&self) -> Vec<(&'static str, String)> {
        vec![
            ("id", self.id.clone()),
            ("name", self.name.clone()),
            ("description", self.description.clone()),
            ("vcpus (used/quota)", used_of(self.usage.vcpus, self.quota.vcpus)),
            ("memory_mib (used/quota)", used_of(self.usage.memory_mib, self.quota.memory_mib)),
            ("disk_gib (used/quota)", used_of(self.usage.disk_gib, self.quota.disk_gib)),
            ("created_at", self.created_at.clone()),
            ("etag", etag(self.revision)),
        ]
    }
}

impl View for Zone {
    fn headers() -> &'static [&'static str] {
        &["NAME", "TENANT", "KIND", "CIDR", "VNI", "VLAN", "MTU", "INTRA-ZONE"]
    }
    fn row(&self) -> Vec<String> {
        let intra = wire(&self.intra_zone);
        vec![
            self.name.clone(),
            self.tenant.clone(),
            wire(&self.kind),
            self.cidr.clone(),
            opt(self.vni),
            opt(self.vlan),
            opt(self.mtu),
            intra,
        ]
    }
    fn details(&self) -> Vec<(&'static str, String)> {
        let mut pairs: Vec<_> = Self::headers().iter().copied().zip(self.row()).collect();
        pairs.insert(0, ("id", self.id.clone()));
        pairs.push(("created_at", self.created_at.clone()));
        pairs.push(("etag", etag(self.revision)));
        pairs
    }
}

impl View for ZonePolicy {
    fn headers() -> &'static [&'static str] {
        &["ID", "NAME", "FROM", "TO", "PROTOCOL", "PORTS", "ACTION"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.from_zone.clone(),
            self.to_zone.clone(),
            wire(&self.protocol),
            self.ports.clone(),
            wire(&self.action),
        ]
    }
    fn details(&self) -> Vec<(&'static str, String)> {
        let mut pairs: Vec<_> = Self::headers().iter().copied().zip(self.row()).collect();
        pairs.push(("created_at", self.created_at.clone()));
        pairs.push(("etag", etag(self.revision)));
        pairs
    }
}

impl View for Volume {
    fn headers() -> &'static [&'static str] {
        &["ID", "NAME", "TENANT", "SIZE_GIB", "POOL", "IMAGE", "ATTACHED_TO"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.tenant.clone(),
            self.size_gib.to_string(),
            self.pool.clone(),
            opt(self.image.as_deref()),
            opt(self.attached_to.as_deref()),
        ]
    }
    fn details(&self) -> Vec<(&'static str, String)> {
        let mut pairs: Vec<_> = Self::headers().iter().copied().zip(self.row()).collect();
        let snapshots: Vec<_> = self.snapshots.iter().map(|s| format!("{} ({})", s.name, s.created_at)).collect();
        pairs.push(("cloned_from", opt(self.cloned_from.as_deref())));
        pairs.push(("snapshots", snapshots.join(", ")));
        pairs.push(("created_at", self.created_at.clone()));
        pairs.push(("etag", etag(self.revision)));
        pairs
    }
}

impl View for Vm {
    fn headers() -> &'static [&'static str] {
        &["ID", "NAME", "TENANT", "VCPUS", "MEMORY_MIB", "ARCH", "POWER", "HOST"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.tenant.clone(),
            self.vcpus.to_string(),
            self.memory_mib.to_string(),
            self.arch.clone(),
            wire(&self.power),
            opt(self.host.as_deref()),
        ]
    }
    fn details(&self) -> Vec<(&'static str, String)> {
        let mut pairs: Vec<_> = Self::headers().iter().copied().zip(self.row()).collect();
        let nics: Vec<_> = self.nics.iter().map(|n| format!("{} {} {}", n.zone, n.mac, n.ip)).collect();
        pairs.push(("firmware", self.firmware.clone()));
        pairs.push(("volumes", self.volumes.join(", ")));
        pairs.push(("nics", nics.join("; ")));
        pairs.push(("anti_affinity_group", opt(self.anti_affinity_group.as_deref())));
        pairs.push(("reboot_count", self.reboot_count.to_string()));
        pairs.push(("ha", self.ha.to_string()));
        if let Some(moving) = &self.migration {
            let kind = if moving.live { "live" } else { "cold" };
            let text = format!("from {} ({kind}, {}, since {})", moving.from_host, moving.reason, moving.started_at);
            pairs.push(("moving", text));
        }
        pairs.push(("created_at", self.created_at.clone()));
        pairs.push(("etag", etag(self.revision)));
        pairs
    }
}

impl View for VmView {
    fn headers() -> &'static [&'static str] {
        &["ID", "NAME", "TENANT", "VCPUS", "MEMORY_MIB", "ARCH", "POWER", "HOST", "STATE"]
    }
    fn row(&self) -> Vec<String> {
        let mut row = self.vm.row();
        row.push(self.status.actual.as_ref().map_or_else(|| "-".to_string(), wire));
        row
    }
    fn details(&self) -> Vec<(&'static str, String)> {
        let mut pairs = self.vm.details();
        pairs.insert(8, ("STATE", self.row().pop().unwrap_or_default()));
        pairs.push(("last_error", opt(self.status.last_error.as_deref())));
        if let Some(why) = &self.status.down_reason {
            pairs.push(("down_reason", why.clone()));
        }
        pairs
    }
}

/// A heartbeat's age for people: `850ms`, `12.3s`, `-` when none reached the leader.
fn heartbeat_age(view: &HostView) -> String {
    match &view.heartbeat {
        None => "-".to_string(),
        Some(hb) if hb.age_ms < 1000 => format!("{}ms", hb.age_ms),
        Some(hb) => format!("{:.1}s", hb.age_ms as f64 / 1000.0),
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / f64::from(1u32 << 30))
}

impl View for HostView {
    fn headers() -> &'static [&'static str] {
        &["ID", "SITE", "ARCH", "STATE", "CPUS", "MEMORY_MIB", "VMS", "HEARTBEAT"]
    }
    fn row(&self) -> Vec<String> {
        let h = &self.host;
        let vms = self.heartbeat.as_ref().map(|hb| format!("{}/{}", hb.usage.vms_running, hb.usage.vms_desired));
        vec![
            h.id.clone(),
            h.site.clone(),
            h.arch.clone(),
            wire(&h.state),
            h.inventory.cpus.to_string(),
            h.inventory.memory_mib.to_string(),
            opt(vms),
            heartbeat_age(self),
        ]
    }
    fn details(&self) -> Vec<(&'static str, String)> {
        let h = &self.host;
        let pools: Vec<_> = h
            .inventory
            .pools
            .iter()
            .map(|p| {
                format!("{} ({}, {} of {} GiB free)", p.name, p.backend, gib(p.available_bytes), gib(p.capacity_bytes))
            })
            .collect();
        let mut pairs = vec![
            ("id", h.id.clone()),
            ("name", h.name.clone()),
            ("site", h.site.clone()),
            ("arch", h.arch.clone()),
            ("state", wire(&h.state)),
            ("state_reason", h.state_reason.clone()),
            ("state_since", h.state_since.clone()),
            ("agent_url", h.agent_url.clone()),
            ("cpus", h.inventory.cpus.to_string()),
            ("memory_mib", h.inventory.memory_mib.to_string()),
            ("accelerator", h.inventory.accelerator.clone()),
            ("libvirt_version", h.inventory.libvirt_version.clone()),
            ("pools", pools.join("; ")),
            ("firmware_profiles", h.inventory.firmware_profiles.join(", ")),
            ("joined_at", h.joined_at.clone()),
            ("desired_generation", h.desired_generation.to_string()),
            ("last_heartbeat", heartbeat_age(self)),
            ("placed", {
                let a = &self.allocation;
                format!("{} vms, {} vcpus, {} MiB", a.vms, a.vcpus, a.memory_mib)
            }),
            ("moving", format!("{} leaving, {} arriving", self.allocation.leaving, self.allocation.arriving)),
        ];
        if let Some(hb) = &self.heartbeat {
            let u = &hb.usage;
            pairs.push(("vms (running/desired)", format!("{}/{}", u.vms_running, u.vms_desired)));
            pairs.push(("vcpus_allocated", u.vcpus_allocated.to_string()));
            pairs.push(("memory_mib_allocated", u.memory_mib_allocated.to_string()));
            pairs.push((
                "agent_generation",
                format!("{} (converged {})", hb.desired_generation, opt(hb.converged_generation)),
            ));
        }
        pairs.push(("etag", etag(h.revision)));
        pairs
    }
}

impl View for AuditRecord {
    fn headers() -> &'static [&'static str] {
        &["SEQ", "TIME", "CALLER", "ACTION", "TARGET", "OUTCOME"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.seq.to_string(),
            self.time.clone(),
            self.caller.clone(),
            self.action.clone(),
            self.target.clone(),
            self.outcome.clone(),
        ]
    }
}

impl View for Member {
    fn headers() -> &'static [&'static str] {
        &["ID", "ADDR", "ROLE"]
    }
    fn row(&self) -> Vec<String> {
        vec![self.id.to_string(), self.addr.clone(), self.role.clone()]
    }
}

impl View for ClusterStatus {
    fn headers() -> &'static [&'static str] {
        &["SITE", "LEADER", "TERM", "THIS", "LAST_LOG_INDEX", "LAST_APPLIED"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.site.clone(),
            opt(self.leader_id),
            self.term.to_string(),
            self.this_id.to_string(),
            opt(self.last_log_index),
            opt(self.last_applied),
        ]
    }
}

/// `cluster status`: the summary, a blank line, then the members.
pub fn cluster_text(status: &ClusterStatus) -> String {
    let summary: Vec<_> = ClusterStatus::headers().iter().copied().zip(status.row()).collect();
    let mut members = Table::new(Member::headers());
    for m in &status.members {
        members.row(m.row());
    }
    format!("{}\n{}", crate::output::details(&summary), members.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hci_shared::resources::{Nic, PowerState, Quota, Usage};

    #[test]
    fn tenant_row_shows_usage_against_quota() {
        let t = Tenant {
            id: "t-1".into(),
            name: "finance".into(),
            description: "Finance dept".into(),
            quota: Quota { vcpus: 16, memory_mib: 32768, disk_gib: 500 },
            usage: Usage { vcpus: 2, memory_mib: 2048, disk_gib: 20 },
            created_at: "2024-01-01T00:00:00Z".into(),
            revision: 7,
        };
        let mut table = Table::new(Tenant::headers());
        table.row(t.row());
        assert_eq!(
            table.render(),
            "NAME     VCPUS  MEMORY_MIB  DISK_GIB  DESCRIPTION\n\
             finance  2/16   2048/32768  20/500    Finance dept\n"
        );
        assert!(t.details().contains(&("etag", "\"7\"".to_string())));
    }

    #[test]
    fn vm_details_list_nics_and_power() {
        let vm = Vm {
            id: "vm-1".into(),
            name: "web".into(),
            tenant: "finance".into(),
            vcpus: 2,
            memory_mib: 2048,
            arch: "x86_64".into(),
            firmware: "x86_64-bios".into(),
            volumes: vec!["vol-1".into()],
            nics: vec![Nic { zone: "dmz".into(), mac: "52:54:00:00:00:01".into(), ip: "10.0.0.2".into() }],
            anti_affinity_group: None,
            host: None,
            power: PowerState::Running,
            reboot_count: 0,
            ha: true,
            migration: None,
            created_at: "now".into(),
            revision: 3,
        };
        assert_eq!(vm.row()[6], "running");
        let text = crate::output::details(&vm.details());
        assert!(text.contains("nics:                 dmz 52:54:00:00:00:01 10.0.0.2\n"), "{text}");
        assert!(text.contains("host:                 -\n"), "{text}");
    }

    #[test]
    fn host_row_and_details_show_state_inventory_and_heartbeat() {
        use hci_shared::hosts::{HeartbeatStatus, HostInventory, HostUsage};
        use hci_shared::resources::{Host, HostState};
        let mut view = HostView {
            host: Host {
                id: "h1".into(),
                name: "h1".into(),
                site: "primary".into(),
                arch: "x86_64".into(),
                state: HostState::Ready,
                state_reason: "joined".into(),
                state_since: "now".into(),
                agent_url: "http://10.0.0.1:7100".into(),
                inventory: HostInventory { cpus: 8, memory_mib: 16384, ..Default::default() },
                joined_at: "now".into(),
                desired_generation: 4,
                revision: 9,
            },
            allocation: Default::default(),
            heartbeat: None,
        };
        assert_eq!(view.row(), ["h1", "primary", "x86_64", "ready", "8", "16384", "-", "-"]);
        view.heartbeat = Some(HeartbeatStatus {
            age_ms: 1530,
            observed_by: 2,
            usage: HostUsage { vms_desired: 3, vms_running: 2, ..Default::default() },
            desired_generation: 4,
            converged_generation: Some(4),
        });
        assert_eq!(view.row()[6..], ["2/3", "1.5s"]);
        let text = crate::output::details(&view.details());
        assert!(text.contains("state_reason:           joined\n"), "{text}");
        assert!(text.contains("agent_generation:       4 (converged 4)\n"), "{text}");
    }

    #[test]
    fn cluster_status_text() {
        let status = ClusterStatus {
            site: "north".into(),
            leader_id: Some(1),
            term: 4,
            members: vec![
                Member { id: 1, addr: "127.0.0.1:7001".into(), role: "leader".into() },
                Member { id: 2, addr: "127.0.0.1:7002".into(), role: "follower".into() },
            ],
            this_id: 2,
            last_log_index: Some(10),
            last_applied: None,
        };
        let text = cluster_text(&status);
        assert!(text.starts_with("site:            north\nleader:          1\n"), "{text}");
        assert!(
            text.ends_with("ID  ADDR            ROLE\n1   127.0.0.1:7001  leader\n2   127.0.0.1:7002  follower\n"),
            "{text}"
        );
    }
}

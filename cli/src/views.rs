//! How each shared resource type looks in a table row and in `show`'s detail view.
//!
//! Kept apart from the commands so that the columns of a resource are decided once, whichever verb
//! (list, create, start, ...) ends up printing it.

use hci_shared::api::{ClusterStatus, Member};
use hci_shared::resources::{etag, AuditRecord, Host, Tenant, Vm, Volume, Zone, ZonePolicy};
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
        &["NAME", "TENANT", "KIND", "CIDR", "VNI"]
    }
    fn row(&self) -> Vec<String> {
        vec![self.name.clone(), self.tenant.clone(), wire(&self.kind), self.cidr.clone(), opt(self.vni)]
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
        pairs.push(("created_at", self.created_at.clone()));
        pairs.push(("etag", etag(self.revision)));
        pairs
    }
}

impl View for Host {
    fn headers() -> &'static [&'static str] {
        &["ID", "NAME", "SITE", "ARCH", "STATE"]
    }
    fn row(&self) -> Vec<String> {
        vec![self.id.clone(), self.name.clone(), self.site.clone(), self.arch.clone(), wire(&self.state)]
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
            created_at: "now".into(),
            revision: 3,
        };
        assert_eq!(vm.row()[6], "running");
        let text = crate::output::details(&vm.details());
        assert!(text.contains("nics:                 dmz 52:54:00:00:00:01 10.0.0.2\n"), "{text}");
        assert!(text.contains("host:                 -\n"), "{text}");
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

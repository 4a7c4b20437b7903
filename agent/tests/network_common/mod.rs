//! Shared by the network tests: a desired VM with NICs (zone, address), nothing else.

use hci_shared::agent::{NicDesired, VmDesired};
use hci_shared::resources::PowerState;

/// A running x86_64 VM `id` without disks, with one NIC per `(zone, ip)`.
pub fn vm(id: &str, nics: &[(&str, &str)]) -> VmDesired {
    VmDesired {
        id: id.into(),
        name: id.into(),
        vcpus: 1,
        memory_mib: 64,
        arch: "x86_64".into(),
        firmware: "x86_64-bios".into(),
        disks: vec![],
        nics: nics
            .iter()
            .enumerate()
            .map(|(i, (zone, ip))| NicDesired {
                mac: format!("52:54:00:00:00:{i:02x}"),
                zone: (*zone).into(),
                ip: (*ip).into(),
            })
            .collect(),
        power: PowerState::Running,
        reboot_count: 0,
        oem_strings: vec![],
        migration: None,
        snapshots: vec![],
        revert: None,
    }
}

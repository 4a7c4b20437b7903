//! VM rules: tenant, names, volumes, NIC zones, quota, IPAM, MACs, power (moves: `moves.rs`).

use hci_shared::command::{Applied, Command, PowerAction};
use hci_shared::resources::PowerState;
use hci_shared::ErrorCode;

use crate::support::*;

fn setup() -> Harness {
    let mut h = Harness::new();
    h.with_tenant("finance", 16, 16384, 100);
    h.with_tenant("health", 16, 16384, 100);
    h.ok(create_zone("fin-net", "finance", "10.1.0.0/24"));
    h.ok(create_zone("fin-small", "finance", "10.9.0.0/29"));
    h.ok(create_zone("health-net", "health", "10.2.0.0/24"));
    h
}

fn delete_vm(id: &str) -> Command {
    Command::DeleteVm { id: id.to_string(), if_match: None }
}

fn power(id: &str, action: PowerAction) -> Command {
    Command::SetVmPower { id: id.to_string(), action, placement: None }
}

#[test]
fn create_assigns_addresses_attaches_volumes_and_charges_quota() {
    let mut h = setup();
    h.ok(create_volume("v1", "finance", "root", 10));
    let vm = as_vm(h.ok(create_vm("m1", "finance", "web", 2, 2048, &["v1"], &["fin-net", "fin-net", "fin-small"])));
    assert_eq!(vm.firmware, "x86_64-bios");
    assert_eq!(vm.power, PowerState::Running);
    assert_eq!((vm.host.clone(), vm.reboot_count, vm.revision), (None, 0, h.index));
    let ips: Vec<&str> = vm.nics.iter().map(|n| n.ip.as_str()).collect();
    assert_eq!(ips, ["10.1.0.2", "10.1.0.3", "10.9.0.2"]);
    for nic in &vm.nics {
        assert!(nic.mac.starts_with("52:54:00:") && nic.mac.len() == 17, "{}", nic.mac);
    }
    assert_ne!(vm.nics[0].mac, vm.nics[1].mac);
    assert_eq!(h.volume("v1").attached_to.as_deref(), Some("m1"));
    let usage = h.tenant("finance").usage;
    assert_eq!((usage.vcpus, usage.memory_mib, usage.disk_gib), (2, 2048, 10));
    assert_eq!(h.model.vm_id_by_name("finance", "web"), Some("m1"));
}

#[test]
fn firmware_defaults_follow_the_arch_and_explicit_firmware_is_kept() {
    let mut h = setup();
    let mut spec = vm_spec("finance", "power", 1, 512, &[], &[]);
    spec.arch = "ppc64le".to_string();
    let vm = as_vm(h.ok(Command::CreateVm { id: "m1".to_string(), spec, placement: None }));
    assert_eq!(vm.firmware, "ppc64le-pseries");
    let mut spec = vm_spec("finance", "secure", 1, 512, &[], &[]);
    spec.firmware = Some("x86_64-uefi-secureboot".to_string());
    let vm = as_vm(h.ok(Command::CreateVm { id: "m2".to_string(), spec, placement: None }));
    assert_eq!(vm.firmware, "x86_64-uefi-secureboot");
}

#[test]
fn macs_are_deterministic() {
    let mut a = setup();
    let mut b = setup();
    let command = create_vm("m1", "finance", "web", 1, 512, &[], &["fin-net"]);
    let vm_a = as_vm(a.ok(command.clone()));
    let vm_b = as_vm(b.ok(command));
    assert_eq!(vm_a.nics, vm_b.nics);
}

#[test]
fn unknown_tenant_and_duplicate_names_are_refused() {
    let mut h = setup();
    let e = h.refused(create_vm("m1", "ghost", "web", 1, 512, &[], &[]));
    assert_invalid(&e, "tenant", &["ghost"]);
    h.ok(create_vm("m1", "finance", "web", 1, 512, &[], &[]));
    let e = h.refused(create_vm("m2", "finance", "web", 1, 512, &[], &[]));
    assert_refusal(&e, ErrorCode::Conflict, &["vm 'web' already exists in tenant 'finance'"]);
    h.ok(create_vm("m2", "health", "web", 1, 512, &[], &[]));
    let e = h.refused(create_vm("m1", "health", "other", 1, 512, &[], &[]));
    assert_refusal(&e, ErrorCode::Conflict, &["vm id 'm1'"]);
}

#[test]
fn volumes_must_exist_belong_to_the_tenant_and_be_free() {
    let mut h = setup();
    h.ok(create_volume("v1", "finance", "a", 1));
    h.ok(create_volume("v2", "health", "b", 1));
    let e = h.refused(create_vm("m1", "finance", "web", 1, 512, &["v1", "ghost"], &[]));
    assert_invalid(&e, "volumes[1]", &["volume 'ghost' does not exist"]);
    let e = h.refused(create_vm("m1", "finance", "web", 1, 512, &["v2"], &[]));
    assert_invalid(&e, "volumes[0]", &["belongs to tenant 'health'"]);
    h.ok(create_vm("m1", "finance", "web", 1, 512, &["v1"], &[]));
    let e = h.refused(create_vm("m2", "finance", "db", 1, 512, &["v1"], &[]));
    assert_refusal(&e, ErrorCode::Conflict, &["already attached to vm 'web' (m1)"]);
    let e = h.refused(create_vm("m2", "finance", "db", 1, 512, &["v1", "v1"], &[]));
    assert_invalid(&e, "volumes[1]", &["twice"]);
}

#[test]
fn nic_zones_must_exist_and_belong_to_the_tenant() {
    let mut h = setup();
    let e = h.refused(create_vm("m1", "finance", "web", 1, 512, &[], &["fin-net", "ghost"]));
    assert_invalid(&e, "nics[1].zone", &["zone 'ghost' does not exist"]);
    let e = h.refused(create_vm("m1", "finance", "web", 1, 512, &[], &["health-net"]));
    assert_invalid(&e, "nics[0].zone", &["belongs to tenant 'health'"]);
}

#[test]
fn vcpu_and_memory_quota_are_enforced_with_numbers() {
    let mut h = setup();
    h.ok(create_vm("m1", "finance", "a", 12, 8192, &[], &[]));
    let e = h.refused(create_vm("m2", "finance", "b", 5, 512, &[], &[]));
    assert_refusal(&e, ErrorCode::NoCapacity, &["vcpus", "12 in use", "5 requested", "16 allowed"]);
    let e = h.refused(create_vm("m2", "finance", "b", 4, 8193, &[], &[]));
    assert_refusal(&e, ErrorCode::NoCapacity, &["memory_mib", "8192 in use", "8193 requested", "16384 allowed"]);
    h.ok(create_vm("m2", "finance", "b", 4, 8192, &[], &[]));
}

#[test]
fn a_full_zone_is_no_capacity_and_freed_addresses_are_reused_lowest_first() {
    let mut h = setup();
    // A /29 has 5 assignable addresses: .2 to .6.
    for i in 0..5 {
        h.ok(create_vm(&format!("m{i}"), "finance", &format!("vm{i}"), 1, 64, &[], &["fin-small"]));
    }
    let e = h.refused(create_vm("m5", "finance", "vm5", 1, 64, &[], &["fin-small"]));
    assert_refusal(&e, ErrorCode::NoCapacity, &["zone fin-small has no free addresses"]);
    // Two NICs in the same nearly full zone do not share the last address.
    h.ok(delete_vm("m3"));
    let e = h.refused(create_vm("m5", "finance", "vm5", 1, 64, &[], &["fin-small", "fin-small"]));
    assert_eq!(e.code, ErrorCode::NoCapacity);
    h.ok(delete_vm("m1"));
    let vm = as_vm(h.ok(create_vm("m5", "finance", "vm5", 1, 64, &[], &["fin-small"])));
    assert_eq!(vm.nics[0].ip, "10.9.0.3", "the lowest free address");
}

#[test]
fn delete_detaches_volumes_frees_addresses_and_releases_usage() {
    let mut h = setup();
    h.ok(create_volume("v1", "finance", "root", 10));
    let vm = as_vm(h.ok(create_vm("m1", "finance", "web", 2, 2048, &["v1"], &["fin-net"])));
    let e = h.refused(Command::DeleteVm { id: "m1".to_string(), if_match: Some(vm.revision + 1) });
    assert_eq!(e.code, ErrorCode::PreconditionFailed);
    assert_eq!(h.ok(Command::DeleteVm { id: "m1".to_string(), if_match: Some(vm.revision) }), Applied::Deleted);
    assert_eq!(h.volume("v1").attached_to, None);
    let usage = h.tenant("finance").usage;
    assert_eq!((usage.vcpus, usage.memory_mib, usage.disk_gib), (0, 0, 10));
    // The same address and MAC seed come back for a new VM with the same id.
    let again = as_vm(h.ok(create_vm("m1", "finance", "web", 2, 2048, &["v1"], &["fin-net"])));
    assert_eq!(again.nics, vm.nics);
    assert_eq!(h.refused(delete_vm("ghost")).code, ErrorCode::NotFound);
}

#[test]
fn power_actions() {
    let mut h = setup();
    h.ok(create_vm("m1", "finance", "web", 1, 512, &[], &[]));
    let vm = as_vm(h.ok(power("m1", PowerAction::Reboot)));
    assert_eq!(vm.reboot_count, 1);
    let vm = as_vm(h.ok(power("m1", PowerAction::Stop)));
    assert_eq!(vm.power, PowerState::Stopped);
    let e = h.refused(power("m1", PowerAction::Reboot));
    assert_refusal(&e, ErrorCode::Conflict, &["stopped"]);
    let before = h.vm("m1").clone();
    assert_eq!(as_vm(h.ok(power("m1", PowerAction::Stop))), before, "stopping a stopped vm changes nothing");
    assert_eq!(h.record_writes(), 0);
    let vm = as_vm(h.ok(power("m1", PowerAction::Start)));
    assert_eq!((vm.power, vm.reboot_count, vm.revision), (PowerState::Running, 1, h.index));
    assert_eq!(h.refused(power("ghost", PowerAction::Start)).code, ErrorCode::NotFound);
}

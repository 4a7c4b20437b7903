//! Disk hotplug and disk-only external snapshots of `LibvirtHypervisor` against the real libvirt
//! (`qemu:///system`, or `HCI_LIBVIRT_URI`) with the hci test guest: a data disk attached to and
//! detached from a running guest (the guest writes its marker to it after an ACPI reboot), a detach
//! the guest does not answer (paused) failing with the domain and target named; snapshots taken
//! running and stopped, reverted with the guest's marker proving the disk content; refusals.
//!
//! Needs root and `scripts/libvirt/up.sh`; HCI_SKIP_LIBVIRT=1 switches it off. Every domain and file
//! is removed by Drop guards however a test ends. Boots are serialized.

mod hypervisor_common;

use std::path::Path;
use std::time::{Duration, Instant};

use hci_agent::hypervisor::layers::{layer_files, layer_path};
use hci_agent::hypervisor::libvirt::LibvirtHypervisor;
use hci_agent::hypervisor::{DiskSource, DiskSpec, DomainSpec, Hypervisor, HypervisorError};
use hci_shared::agent::VmRunState;
use hypervisor_common::{boot_lock, connect, qemu_img, read_marker, skip, uri, TestVm};

const SHUTDOWN: Duration = Duration::from_secs(60);

fn oem(vm: &TestVm, marker: Option<&str>) -> Vec<String> {
    let mut oem = vec![format!("hci.name={}", vm.name), "hci.heartbeat=0".to_string()];
    oem.extend(marker.map(|m| format!("hci.marker={m}")));
    oem
}

fn digest_of(hv: &LibvirtHypervisor, name: &str) -> Option<String> {
    hv.list().expect("list").into_iter().find(|d| d.name == name).and_then(|d| d.owner).map(|o| o.digest)
}

fn target_is(err: &HypervisorError, vm: &str, want: &str) -> bool {
    matches!(err, HypervisorError::Disk { domain, target, .. } if domain == vm && target == want)
        && err.to_string().contains(vm)
        && err.to_string().contains(want)
}

#[test]
fn hotplugs_a_data_disk_into_a_running_guest() {
    if skip("hotplug") {
        return;
    }
    let hv = connect();
    let _serial = boot_lock();
    let vm = TestVm::new(&hv, "hotplug");
    let marker = format!("hot-{}", std::process::id());
    let os = vm.os_disk("os.qcow2", "vda");
    let data = vm.raw_disk("data.raw", "vdb");
    let mut spec = vm.spec("x86_64-bios", vec![os.clone()]);
    spec.oem_strings = oem(&vm, Some(&marker));
    hv.define(&spec).expect("define");
    hv.start(&vm.name).expect("start");
    vm.wait_console("HCI-GUEST-READY", 1);
    assert_eq!(vm.console_count("HCI-ERROR hci.marker given but no data disk"), 1, "first boot: no vdb yet");

    // Attach while running: live and persistent, idempotent, and what define(spec + disk) renders.
    let t = Instant::now();
    hv.attach_disk(&vm.name, &data).expect("attach");
    let attach = t.elapsed();
    let want = vec![("vda".to_string(), path_str(&os)), ("vdb".to_string(), path_str(&data))];
    assert_eq!(vm.disks(false), want, "live");
    assert_eq!(vm.disks(true), want, "persistent");
    hv.attach_disk(&vm.name, &data).expect("attaching the same disk again is Ok");
    let other =
        DiskSpec { source: DiskSource::File { path: vm.path("other.raw"), format: "raw".into() }, ..data.clone() };
    let err = hv.attach_disk(&vm.name, &other).expect_err("another disk at vdb");
    assert!(target_is(&err, &vm.name, "vdb"), "{err}");
    let attached_config = disk_elements(&vm.xml(true));
    let mut with_disk = spec.clone();
    with_disk.disks.push(data.clone());
    hv.define(&with_disk).expect("the reconciler's define of the new disk list");
    assert_eq!(disk_elements(&vm.xml(true)), attached_config, "define(spec + disk) changes no disk");
    assert_eq!(digest_of(&hv, &vm.name), Some(with_disk.digest()));

    // The running guest has the disk: after an ACPI reboot (same QEMU process) it writes the marker.
    hv.reboot(&vm.name).expect("reboot");
    vm.wait_console("HCI-GUEST-READY", 2);
    assert_eq!(vm.console_count(&format!("HCI-MARKER-WRITTEN {marker}")), 1, "{}", vm.console_text());

    // More than one disk can be hotplugged into a running q35 guest (spare PCIe root ports).
    let third = vm.raw_disk("third.raw", "vdc");
    hv.attach_disk(&vm.name, &third).expect("attach a second disk live");
    hv.detach_disk(&vm.name, "vdc").expect("detach it");

    // Detach while running: the guest releases it; gone live and persistent; idempotent.
    let t = Instant::now();
    hv.detach_disk(&vm.name, "vdb").expect("detach");
    let detach = t.elapsed();
    assert_eq!(vm.disks(false), want[..1], "live");
    assert_eq!(vm.disks(true), want[..1], "persistent");
    hv.detach_disk(&vm.name, "vdb").expect("detaching a missing disk is Ok");

    // A guest that does not answer (paused): a named error, the definition keeps the disk; once the
    // guest runs again the pending unplug completes and a retry finishes the job.
    hv.attach_disk(&vm.name, &data).expect("attach again");
    vm.set_paused(true);
    let impatient = LibvirtHypervisor::connect(&uri()).expect("connect").with_detach_timeout(Duration::from_secs(1));
    let t = Instant::now();
    let err = impatient.detach_disk(&vm.name, "vdb").expect_err("a paused guest releases nothing");
    let timeout = t.elapsed();
    assert!(target_is(&err, &vm.name, "vdb"), "{err}");
    assert_eq!(vm.disks(true), want, "the persistent definition still has it");
    vm.set_paused(false);
    hv.detach_disk(&vm.name, "vdb").expect("detach after resume");
    assert_eq!((vm.disks(false), vm.disks(true)), (want[..1].to_vec(), want[..1].to_vec()));

    hv.shutdown(&vm.name, SHUTDOWN).expect("shutdown");
    assert_eq!(
        read_marker(&vm.path("data.raw")),
        format!("HCI-MARKER {marker}"),
        "written through the hotplugged disk"
    );
    // Stopped: only the persistent side.
    hv.attach_disk(&vm.name, &data).expect("attach to a stopped domain");
    assert_eq!(vm.disks(true), want);
    hv.detach_disk(&vm.name, "vdb").expect("detach from a stopped domain");
    assert_eq!(vm.disks(true), want[..1]);
    eprintln!("hotplug (TCG, q35): attach {attach:?}, detach {detach:?}, unanswered detach failed after {timeout:?}");
}

fn path_str(disk: &DiskSpec) -> String {
    match &disk.source {
        DiskSource::File { path, .. } => path.to_string_lossy().into_owned(),
        other => panic!("not a file disk: {other:?}"),
    }
}

/// The `<disk>` elements of a domain XML without their `<address>` (libvirt assigns those).
fn disk_elements(xml: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).expect("XML");
    doc.descendants()
        .filter(|n| n.has_tag_name("disk"))
        .map(|disk| {
            disk.descendants()
                .filter(|n| n.is_element() && !n.has_tag_name("address"))
                .map(|n| {
                    format!(
                        "{}{:?}",
                        n.tag_name().name(),
                        n.attributes().map(|a| (a.name(), a.value())).collect::<Vec<_>>()
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Starts with `marker` (or none), waits for the boot, checks what the guest found, shuts down.
fn boot(hv: &LibvirtHypervisor, vm: &TestVm, spec: &mut DomainSpec, marker: Option<&str>, found: &str) -> Duration {
    spec.oem_strings = oem(vm, marker);
    spec.generation += 1;
    hv.define(spec).expect("define");
    let boots = vm.console_count("HCI-GUEST-READY");
    let t = Instant::now();
    hv.start(&vm.name).expect("start");
    vm.wait_console("HCI-GUEST-READY", boots + 1);
    let took = t.elapsed();
    let console = vm.console_text();
    let this_boot: Vec<&str> = console.lines().filter(|l| l.contains("HCI-MARKER-")).collect();
    let n = this_boot.len();
    let expected_found = format!("HCI-MARKER-FOUND {found}");
    let lines = if marker.is_some() { &this_boot[n.saturating_sub(2)..] } else { &this_boot[n.saturating_sub(1)..] };
    assert!(lines.first().is_some_and(|l| l.contains(&expected_found)), "expected {expected_found}:\n{console}");
    if let Some(m) = marker {
        assert!(lines.last().is_some_and(|l| l.contains(&format!("HCI-MARKER-WRITTEN {m}"))), "{console}");
    }
    hv.shutdown(&vm.name, SHUTDOWN).expect("shutdown");
    took
}

fn chain(file: &Path) -> Vec<String> {
    qemu_img(&["info", "-U", "--backing-chain", "--output=json", &file.to_string_lossy()])
        .lines()
        .filter_map(|l| l.trim().strip_prefix("\"filename\": \"").map(|f| f.trim_end_matches(['"', ',']).to_string()))
        .collect()
}

#[test]
fn snapshots_running_and_stopped_and_reverts_with_the_markers_to_prove_it() {
    if skip("snapshot") {
        return;
    }
    let hv = connect();
    let _serial = boot_lock();
    let vm = TestVm::new(&hv, "snap");
    let data = vm.qcow2_disk("data.qcow2", "vdb");
    let (os_file, data_file) = (vm.path("os.qcow2"), vm.path("data.qcow2"));
    let mut spec = vm.spec("x86_64-bios", vec![vm.os_disk("os.qcow2", "vda"), data]);

    // A written, then s1 taken while running.
    spec.oem_strings = oem(&vm, Some("A"));
    hv.define(&spec).expect("define");
    hv.start(&vm.name).expect("start");
    vm.wait_console("HCI-MARKER-WRITTEN A", 1);
    vm.wait_console("HCI-GUEST-READY", 1);
    let t = Instant::now();
    hv.snapshot_disks(&vm.name, "s1").expect("snapshot s1 (running)");
    let snap_running = t.elapsed();
    hv.snapshot_disks(&vm.name, "s1").expect("an existing snapshot is Ok");
    assert_eq!(hv.list_snapshots(&vm.name).expect("list"), ["s1"]);
    // The volume files keep their names and stay the active images, in the live and persistent XML;
    // the persistent XML is again exactly what render wrote (no <backingStore>).
    let files = vec![("vda".to_string(), path_str_of(&os_file)), ("vdb".to_string(), path_str_of(&data_file))];
    assert_eq!((vm.disks(false), vm.disks(true)), (files.clone(), files.clone()));
    assert!(!vm.xml(true).contains("backingStore"), "{}", vm.xml(true));
    assert_eq!(chain(&data_file)[1..], [path_str_of(&layer_path(&data_file, "s1"))]);
    let err = hv.revert_disks(&vm.name, "s1").expect_err("no revert while running");
    assert!(matches!(&err, HypervisorError::Snapshot { action: "reverting", .. }), "{err}");
    hv.shutdown(&vm.name, SHUTDOWN).expect("shutdown");
    // The overlay the agent wrote, after QEMU used it: consistent for qemu-img too.
    qemu_img(&["check", &data_file.to_string_lossy()]);

    // B over A (the reconciler's define keeps working on the volume files), then s2 while stopped.
    let boot_b = boot(&hv, &vm, &mut spec, Some("B"), "A");
    let t = Instant::now();
    hv.snapshot_disks(&vm.name, "s2").expect("snapshot s2 (stopped)");
    let snap_stopped = t.elapsed();
    assert_eq!(hv.list_snapshots(&vm.name).expect("list"), ["s1", "s2"]);
    assert_eq!(vm.disks(true), files);
    boot(&hv, &vm, &mut spec, Some("C"), "B");

    // Back to s2: B again, s1 stays.
    let t = Instant::now();
    hv.revert_disks(&vm.name, "s2").expect("revert to s2");
    let revert = t.elapsed();
    assert_eq!(hv.list_snapshots(&vm.name).expect("list"), ["s1"]);
    assert_eq!(layer_files(&data_file).expect("layers"), [layer_path(&data_file, "s1")]);
    boot(&hv, &vm, &mut spec, Some("D"), "B");

    // s3, then back to s1 (older than s3): A again, every later snapshot and file gone.
    hv.snapshot_disks(&vm.name, "s3").expect("snapshot s3");
    assert_eq!(hv.list_snapshots(&vm.name).expect("list"), ["s1", "s3"]);
    hv.revert_disks(&vm.name, "s1").expect("revert to s1");
    assert!(hv.list_snapshots(&vm.name).expect("list").is_empty());
    for file in [&os_file, &data_file] {
        assert!(layer_files(file).expect("layers").is_empty(), "{}", file.display());
        assert_eq!(chain(file).len(), 1, "{} stands alone again", file.display());
        qemu_img(&["check", &file.to_string_lossy()]);
    }
    boot(&hv, &vm, &mut spec, None, "A");
    let err = hv.revert_disks(&vm.name, "s1").expect_err("s1 was used up");
    assert!(matches!(&err, HypervisorError::NoSuchSnapshot { snapshot, .. } if snapshot == "s1"), "{err}");

    // Undefine drops the snapshot metadata; the layer files belong to the volumes and stay.
    hv.snapshot_disks(&vm.name, "s4").expect("snapshot s4");
    hv.undefine(&vm.name).expect("undefine with a snapshot");
    assert_eq!(vm.state(), None);
    assert_eq!(layer_files(&data_file).expect("layers"), [layer_path(&data_file, "s4")]);
    eprintln!(
        "snapshots (TCG, 2 qcow2 disks): running {snap_running:?}, stopped {snap_stopped:?}, revert {revert:?}, \
         boot to READY {boot_b:?}"
    );
}

fn path_str_of(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[test]
fn snapshots_refuse_what_they_cannot_do_without_changing_anything() {
    if skip("snapshot-refusals") {
        return;
    }
    let hv = connect();
    let vm = TestVm::new(&hv, "snaprefuse");
    let os = vm.os_disk("os.qcow2", "vda");
    let raw = vm.raw_disk("data.raw", "vdb");
    hv.define(&vm.spec("x86_64-bios", vec![os, raw])).expect("define");
    let err = hv.snapshot_disks(&vm.name, "s1").expect_err("a raw disk cannot take one");
    assert!(matches!(&err, HypervisorError::Snapshot { snapshot, .. } if snapshot == "s1"), "{err}");
    assert!(err.to_string().contains("vdb"), "{err}");
    assert!(layer_files(&vm.path("os.qcow2")).expect("layers").is_empty(), "the qcow2 disk was not touched");
    let err = hv.snapshot_disks(&vm.name, "../x").expect_err("bad name");
    assert!(matches!(&err, HypervisorError::Snapshot { .. }), "{err}");
    assert!(hv.list_snapshots(&vm.name).expect("list").is_empty());
    let err = hv.revert_disks(&vm.name, "nope").expect_err("no such snapshot");
    assert!(matches!(&err, HypervisorError::NoSuchSnapshot { .. }), "{err}");

    // A snapshot whose disk was detached since cannot be reverted.
    hv.detach_disk(&vm.name, "vdb").expect("detach the raw disk");
    hv.snapshot_disks(&vm.name, "s2").expect("snapshot of the qcow2 disk alone");
    hv.detach_disk(&vm.name, "vda").expect("detach the boot disk");
    let err = hv.revert_disks(&vm.name, "s2").expect_err("its disk is gone");
    assert!(err.to_string().contains("no longer attached"), "{err}");
    assert_eq!(hv.list_snapshots(&vm.name).expect("list"), ["s2"], "nothing changed");
    assert_eq!(vm.state(), Some(VmRunState::Stopped));

    let missing = format!("hci-t-missing-{}", std::process::id());
    let disk = vm.raw_disk("x.raw", "vdc");
    for (what, result) in [
        ("attach", hv.attach_disk(&missing, &disk)),
        ("detach", hv.detach_disk(&missing, "vdc")),
        ("snapshot", hv.snapshot_disks(&missing, "s")),
        ("list", hv.list_snapshots(&missing).map(|_| ())),
        ("revert", hv.revert_disks(&missing, "s")),
    ] {
        assert!(matches!(&result, Err(HypervisorError::NoSuchDomain(n)) if *n == missing), "{what}: {result:?}");
    }
}

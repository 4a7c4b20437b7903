//! `FakeHypervisor` keeps the semantics the trait documents (and `LibvirtHypervisor` has): idempotent
//! define that refuses foreign domains, no-op start/shutdown, undefine of a missing domain is Ok,
//! NoSuchDomain elsewhere; disk hotplug live and persistent that leaves the owner digest alone,
//! snapshots of qcow2 files only, revert only while stopped; and its failure injection, delays and
//! call log work as reconciler tests need them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hci_agent::hypervisor::fake::{FakeHypervisor, Method};
use hci_agent::hypervisor::{DiskSource, DiskSpec, DomainSpec, Hypervisor, HypervisorError};
use hci_firmware_profiles::Profiles;
use hci_shared::agent::{VmRunState, VmStats};

fn spec(vm: &str) -> DomainSpec {
    DomainSpec {
        name: format!("hci-h1-{vm}"),
        vm_id: vm.into(),
        host_id: "h1".into(),
        generation: 1,
        vcpus: 1,
        memory_mib: 256,
        domain_type: "qemu".into(),
        profile: Profiles::builtin().expect("profiles").get("x86_64-bios").expect("profile").clone(),
        nvram_path: None,
        tpm_state_dir: None,
        disks: Vec::new(),
        nics: Vec::new(),
        console_log: PathBuf::from(format!("/tmp/{vm}.log")),
        oem_strings: vec![],
    }
}

fn state(hv: &FakeHypervisor, name: &str) -> Option<VmRunState> {
    hv.list().expect("list").into_iter().find(|d| d.name == name).map(|d| d.state)
}

#[test]
fn lifecycle_matches_the_trait() {
    let hv = FakeHypervisor::new();
    let s = spec("vm1");
    hv.define(&s).expect("define");
    hv.define(&s).expect("define is idempotent");
    assert_eq!(state(&hv, &s.name), Some(VmRunState::Stopped));
    hv.start(&s.name).expect("start");
    hv.start(&s.name).expect("start of a running domain is a no-op");
    assert_eq!(state(&hv, &s.name), Some(VmRunState::Running));
    assert_eq!(hv.domain(&s.name).map(|d| d.starts), Some(1));
    hv.reboot(&s.name).expect("reboot");
    assert_eq!(hv.domain(&s.name).map(|d| d.reboots), Some(1));
    hv.shutdown(&s.name, Duration::from_secs(5)).expect("shutdown");
    hv.shutdown(&s.name, Duration::from_secs(5)).expect("shutdown of a stopped domain is a no-op");
    assert_eq!(state(&hv, &s.name), Some(VmRunState::Stopped));
    assert!(matches!(hv.reboot(&s.name), Err(HypervisorError::Domain { action: "rebooting", .. })));
    hv.undefine(&s.name).expect("undefine");
    hv.undefine(&s.name).expect("undefine of a missing domain is Ok");
    assert_eq!(state(&hv, &s.name), None);
    for result in
        [hv.start(&s.name), hv.shutdown(&s.name, Duration::ZERO), hv.reboot(&s.name), hv.stats(&s.name).map(|_| ())]
    {
        assert!(matches!(&result, Err(HypervisorError::NoSuchDomain(n)) if *n == s.name), "{result:?}");
    }
}

#[test]
fn list_reports_owner_metadata_and_foreign_domains() {
    let hv = FakeHypervisor::new();
    let mut s = spec("vm1");
    hv.define(&s).expect("define");
    hv.add_foreign("someone-elses", VmRunState::Running);
    let list = hv.list().expect("list");
    let owner = list.iter().find(|d| d.name == s.name).and_then(|d| d.owner.clone()).expect("owned");
    assert_eq!((owner.host_id.as_str(), owner.vm_id.as_str(), owner.generation), ("h1", "vm1", 1));
    assert_eq!(owner.digest, s.digest());
    assert_eq!(list.iter().find(|d| d.name == "someone-elses").map(|d| d.owner.clone()), Some(None));

    // Redefining while running changes the definition; the running instance keeps the old one.
    hv.start(&s.name).expect("start");
    s.generation = 2;
    s.memory_mib = 512;
    hv.define(&s).expect("redefine");
    let d = hv.domain(&s.name).expect("domain");
    assert_eq!(d.state, VmRunState::Running);
    assert_eq!(d.spec.as_ref().map(|s| s.memory_mib), Some(512));
    assert_eq!(d.running_spec.as_ref().map(|s| s.memory_mib), Some(256));
    let owner = hv.list().expect("list").into_iter().find(|d| d.name == s.name).and_then(|d| d.owner).expect("owner");
    assert_eq!((owner.generation, owner.digest), (2, s.digest()));

    // A foreign domain (or another host's) is never replaced.
    let mut intruder = spec("x");
    intruder.name = "someone-elses".into();
    assert!(matches!(hv.define(&intruder), Err(HypervisorError::Domain { action: "redefining", .. })));
    let mut other_host = spec("vm1");
    other_host.host_id = "h2".into();
    assert!(matches!(hv.define(&other_host), Err(HypervisorError::Domain { action: "redefining", .. })));
}

#[test]
fn injected_failures_hit_the_next_n_calls_without_effect() {
    let hv = FakeHypervisor::new();
    let s = spec("vm1");
    hv.fail_next(Method::Define, 2);
    for _ in 0..2 {
        let err = hv.define(&s).expect_err("injected");
        assert!(matches!(&err, HypervisorError::Domain { domain, .. } if *domain == s.name), "{err}");
    }
    assert_eq!(state(&hv, &s.name), None, "a failed call has no effect");
    hv.define(&s).expect("third call succeeds");

    let other = spec("vm2");
    hv.define(&other).expect("define");
    hv.fail_next_for(Method::Start, &other.name, 1);
    hv.start(&s.name).expect("another domain's start is not affected");
    assert!(hv.start(&other.name).is_err());
    hv.start(&other.name).expect("only one failure was injected");

    hv.fail_next(Method::List, 1);
    assert!(matches!(hv.list(), Err(HypervisorError::Query(_))));
    hv.fail_next_with(Method::Capabilities, None, 1, |_, _| HypervisorError::Connect {
        uri: "qemu:///system".into(),
        message: "libvirtd is restarting".into(),
    });
    assert!(matches!(hv.capabilities(), Err(HypervisorError::Connect { .. })));
    assert_eq!(hv.capabilities().expect("capabilities").arch, "x86_64");

    let calls = hv.calls();
    assert_eq!(calls.iter().filter(|c| c.failed).count(), 5);
    assert_eq!(hv.count(Method::Define), 4);
    hv.clear_calls();
    assert!(hv.calls().is_empty());
}

#[test]
fn guests_can_ignore_acpi_crash_and_report_stats() {
    let hv = Arc::new(FakeHypervisor::new());
    let s = spec("vm1");
    hv.define(&s).expect("define");
    hv.start(&s.name).expect("start");
    let stats = VmStats { cpu_time_ns: 5, memory_kib: 1024, disk_read_bytes: 1, disk_write_bytes: 2 };
    assert!(hv.set_stats(&s.name, stats.clone()));
    assert_eq!(hv.stats(&s.name).expect("stats"), stats);

    assert!(hv.set_ignores_acpi(&s.name, true));
    hv.reboot(&s.name).expect("the power button is pressed");
    assert_eq!(hv.domain(&s.name).map(|d| d.reboots), Some(0), "an ACPI-deaf guest does not reboot");
    hv.shutdown(&s.name, Duration::from_secs(1)).expect("forced after the timeout");
    let d = hv.domain(&s.name).expect("domain");
    assert_eq!((d.state, d.forced_stops), (VmRunState::Stopped, 1));
    assert_eq!(hv.stats(&s.name).expect("stats"), VmStats::default(), "a stopped domain has zero stats");

    hv.start(&s.name).expect("start");
    assert!(hv.set_state(&s.name, VmRunState::Crashed));
    assert_eq!(state(&hv, &s.name), Some(VmRunState::Crashed));
    hv.start(&s.name).expect("a crashed domain starts again");
    assert_eq!(state(&hv, &s.name), Some(VmRunState::Running));
    assert!(!hv.set_state("nope", VmRunState::Running));

    hv.set_delay(Method::Stats, Duration::from_millis(50));
    let started = Instant::now();
    hv.stats(&s.name).expect("stats");
    assert!(started.elapsed() >= Duration::from_millis(50));
    hv.set_delay(Method::Stats, Duration::ZERO);

    // Usable from several threads, as the trait requires.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let hv = Arc::clone(&hv);
            std::thread::spawn(move || hv.list().map(|l| l.len()))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread").expect("list"), 1);
    }
}

fn qcow2(id: &str, target: &str) -> DiskSpec {
    DiskSpec {
        volume_id: id.into(),
        source: DiskSource::File { path: PathBuf::from(format!("/pool/hci-{id}.qcow2")), format: "qcow2".into() },
        target: target.into(),
    }
}

fn targets(disks: &[DiskSpec]) -> Vec<&str> {
    disks.iter().map(|d| d.target.as_str()).collect()
}

#[test]
fn disk_hotplug_is_live_and_persistent_idempotent_and_keeps_the_digest() {
    let hv = FakeHypervisor::new();
    let mut s = spec("vm1");
    s.disks = vec![qcow2("os", "vda")];
    hv.define(&s).expect("define");
    hv.start(&s.name).expect("start");
    let digest = s.digest();

    hv.attach_disk(&s.name, &qcow2("data", "vdb")).expect("attach");
    hv.attach_disk(&s.name, &qcow2("data", "vdb")).expect("attach again is Ok");
    let d = hv.domain(&s.name).expect("domain");
    assert_eq!(targets(&d.spec.as_ref().expect("spec").disks), ["vda", "vdb"]);
    assert_eq!(targets(&d.running_spec.as_ref().expect("running").disks), ["vda", "vdb"]);
    let owner = hv.list().expect("list").into_iter().find_map(|d| d.owner).expect("owner");
    assert_eq!(owner.digest, digest, "hotplug leaves the metadata alone, as libvirt does");
    let err = hv.attach_disk(&s.name, &qcow2("other", "vdb")).expect_err("another disk at vdb");
    assert!(matches!(&err, HypervisorError::Disk { target, .. } if target == "vdb"), "{err}");

    // The reconciler's define with the new disk list records the new digest.
    s.disks.push(qcow2("data", "vdb"));
    hv.define(&s).expect("define");
    assert_eq!(hv.list().expect("list").into_iter().find_map(|d| d.owner).map(|o| o.digest), Some(s.digest()));

    // A guest that ignores the unplug request: the error names domain and target, nothing changes.
    assert!(hv.set_ignores_unplug(&s.name, true));
    let err = hv.detach_disk(&s.name, "vdb").expect_err("times out");
    assert!(matches!(&err, HypervisorError::Disk { domain, target, .. } if *domain == s.name && target == "vdb"));
    assert_eq!(targets(&hv.domain(&s.name).and_then(|d| d.spec).expect("spec").disks), ["vda", "vdb"]);
    assert!(hv.set_ignores_unplug(&s.name, false));
    hv.detach_disk(&s.name, "vdb").expect("detach");
    hv.detach_disk(&s.name, "vdb").expect("detach of a missing disk is Ok");
    let d = hv.domain(&s.name).expect("domain");
    assert_eq!(targets(&d.spec.expect("spec").disks), ["vda"]);
    assert_eq!(targets(&d.running_spec.expect("running").disks), ["vda"]);

    // Stopped: only the definition.
    hv.shutdown(&s.name, Duration::ZERO).expect("shutdown");
    hv.attach_disk(&s.name, &qcow2("data", "vdb")).expect("attach while stopped");
    assert_eq!(targets(&hv.domain(&s.name).and_then(|d| d.spec).expect("spec").disks), ["vda", "vdb"]);
    for result in [hv.attach_disk("nope", &qcow2("x", "vdc")), hv.detach_disk("nope", "vdc")] {
        assert!(matches!(result, Err(HypervisorError::NoSuchDomain(_))), "{result:?}");
    }
}

#[test]
fn snapshots_and_revert_follow_the_libvirt_rules() {
    let hv = FakeHypervisor::new();
    let mut s = spec("vm1");
    s.disks = vec![qcow2("os", "vda"), qcow2("data", "vdb")];
    hv.define(&s).expect("define");
    hv.start(&s.name).expect("start");
    hv.snapshot_disks(&s.name, "s1").expect("snapshot while running");
    hv.snapshot_disks(&s.name, "s1").expect("an existing snapshot is Ok");
    let err = hv.revert_disks(&s.name, "s1").expect_err("not while running");
    assert!(matches!(&err, HypervisorError::Snapshot { action: "reverting", .. }), "{err}");
    hv.shutdown(&s.name, Duration::ZERO).expect("shutdown");
    hv.snapshot_disks(&s.name, "s2").expect("snapshot while stopped");
    hv.snapshot_disks(&s.name, "s3").expect("snapshot while stopped");
    assert_eq!(hv.list_snapshots(&s.name).expect("list"), ["s1", "s2", "s3"]);

    hv.revert_disks(&s.name, "s2").expect("revert");
    assert_eq!(hv.list_snapshots(&s.name).expect("list"), ["s1"], "s2 is used up, s3 was later");
    assert_eq!(hv.domain(&s.name).map(|d| d.reverts), Some(1));
    let err = hv.revert_disks(&s.name, "s2").expect_err("gone");
    assert!(matches!(&err, HypervisorError::NoSuchSnapshot { snapshot, .. } if snapshot == "s2"), "{err}");

    // A disk of the snapshot detached since: refused, nothing changes.
    hv.detach_disk(&s.name, "vdb").expect("detach");
    let err = hv.revert_disks(&s.name, "s1").expect_err("vdb is gone");
    assert!(err.to_string().contains("vdb"), "{err}");
    assert_eq!(hv.list_snapshots(&s.name).expect("list"), ["s1"]);

    // Only qcow2 file disks; names that fit in file names.
    let mut raw = spec("vm2");
    raw.disks = vec![DiskSpec {
        source: DiskSource::File { path: "/pool/r.raw".into(), format: "raw".into() },
        ..qcow2("r", "vda")
    }];
    hv.define(&raw).expect("define");
    assert!(matches!(hv.snapshot_disks(&raw.name, "s"), Err(HypervisorError::Snapshot { .. })));
    assert!(matches!(hv.snapshot_disks(&s.name, "a/b"), Err(HypervisorError::Snapshot { .. })));
    assert!(hv.list_snapshots(&raw.name).expect("list").is_empty());

    hv.fail_next(Method::SnapshotDisks, 1);
    assert!(hv.snapshot_disks(&s.name, "s9").is_err());
    assert_eq!(hv.list_snapshots(&s.name).expect("list"), ["s1"], "an injected failure has no effect");
    assert_eq!(hv.count(Method::SnapshotDisks), 7);
    for result in [hv.snapshot_disks("nope", "s"), hv.revert_disks("nope", "s"), hv.list_snapshots("nope").map(|_| ())]
    {
        assert!(matches!(result, Err(HypervisorError::NoSuchDomain(_))), "{result:?}");
    }
}

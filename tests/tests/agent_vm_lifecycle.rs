//! The node agent driving real libvirt/QEMU: a desired state with a VM on a bootable image volume and a
//! data volume converges to a running guest that writes a marker to its data disk; stop, start,
//! reboot and delete converge too; a restart of the agent at any moment leaves exactly one VM.
//!
//! Needs root, `scripts/libvirt/up.sh` (packages) and builds the test guest on first use.

use std::process::Command;
use std::time::Duration;

use hci_shared::agent::{HostDesired, ImageFormat, ImageRef, VmDesired, VmRunState, VolumeDesired, VolumeSource};
use hci_shared::resources::PowerState;
use hci_tests::agent::{empty_volume, read_volume_head, sha256_file, test_guest, AgentProc, LibvirtHost};

const BOOT: Duration = Duration::from_secs(180);

fn image() -> ImageRef {
    let disk = test_guest().join("disk.qcow2");
    ImageRef {
        name: "test-guest".into(),
        source: format!("file://{}", disk.display()),
        format: ImageFormat::Qcow2,
        sha256: sha256_file(&disk),
    }
}

fn volumes() -> Vec<VolumeDesired> {
    vec![
        VolumeDesired {
            id: "vol-boot".into(),
            pool: "default".into(),
            size_gib: 1,
            source: VolumeSource::Image(image()),
            snapshots: vec![],
            rollback: None,
        },
        empty_volume("vol-data", "default"),
    ]
}

fn vm(firmware: &str, marker: &str, power: PowerState, reboots: u64) -> VmDesired {
    VmDesired {
        id: "vm-1".into(),
        name: "guest".into(),
        vcpus: 1,
        memory_mib: 512,
        arch: "x86_64".into(),
        firmware: firmware.into(),
        disks: vec!["vol-boot".into(), "vol-data".into()],
        nics: vec![],
        power,
        reboot_count: reboots,
        oem_strings: vec![format!("hci.marker={marker}"), "hci.heartbeat=0".into()],
        migration: None,
        snapshots: vec![],
        revert: None,
    }
}

fn desired(host: &str, generation: u64, vms: Vec<VmDesired>, volumes: Vec<VolumeDesired>) -> HostDesired {
    HostDesired { volumes, vms, ..hci_shared::hosts::empty_desired(host, generation) }
}

fn no_vm_errors(r: &hci_shared::agent::HostReport) -> Result<(), String> {
    if r.vms.iter().all(|v| v.last_error.is_none()) {
        Ok(())
    } else {
        Err(format!("{:?}", r.vms))
    }
}

fn lifecycle(firmware: &str, host_id: &str) {
    let host = LibvirtHost::up(host_id);
    let agent = AgentProc::start(&host);
    let marker = format!("m{}", std::process::id());

    // 1. Create and boot.
    assert_eq!(
        agent.put_desired(&desired(host_id, 1, vec![vm(firmware, &marker, PowerState::Running, 0)], volumes())),
        200
    );
    agent.wait_converged(1, BOOT, no_vm_errors);
    agent.wait_console("vm-1", &format!("HCI-MARKER-WRITTEN {marker}"), BOOT);
    assert_eq!(host.domains(), vec![format!("hci-{host_id}-vm-1")], "exactly one domain, named for host and VM");

    // Re-sending the same generation changes nothing; an older one is refused.
    assert_eq!(
        agent.put_desired(&desired(host_id, 1, vec![vm(firmware, &marker, PowerState::Running, 0)], volumes())),
        200
    );
    assert_eq!(agent.put_desired(&desired(host_id, 0, vec![], vec![])), 409);

    // 2. Graceful stop; the marker is on the data volume.
    assert_eq!(
        agent.put_desired(&desired(host_id, 2, vec![vm(firmware, &marker, PowerState::Stopped, 0)], volumes())),
        200
    );
    let report = agent.wait_converged(2, BOOT, no_vm_errors);
    assert_eq!(report.vms[0].state, VmRunState::Stopped);
    assert!(agent.console("vm-1").contains("HCI-GUEST-SHUTDOWN"), "the guest saw an ACPI shutdown, not a forced stop");
    let data = agent.data_dir().join("pools/default/hci-vol-data.qcow2");
    let head = read_volume_head(&data);
    assert!(head.starts_with(&format!("HCI-MARKER {marker}")), "data volume starts with {head:?}");

    // 3. Start again, then reboot: the guest boots twice more and finds its marker.
    assert_eq!(
        agent.put_desired(&desired(host_id, 3, vec![vm(firmware, &marker, PowerState::Running, 0)], volumes())),
        200
    );
    agent.wait_converged(3, BOOT, no_vm_errors);
    agent.wait_console("vm-1", &format!("HCI-MARKER-FOUND {marker}"), BOOT);
    let boots_before = agent.console("vm-1").matches("HCI-GUEST-BOOTED").count();
    assert_eq!(
        agent.put_desired(&desired(host_id, 4, vec![vm(firmware, &marker, PowerState::Running, 1)], volumes())),
        200
    );
    agent.wait_converged(4, BOOT, no_vm_errors);
    hci_tests::poll("a reboot", BOOT, || {
        let boots = agent.console("vm-1").matches("HCI-GUEST-BOOTED").count();
        if boots > boots_before {
            Ok(())
        } else {
            Err(format!("{boots} boots"))
        }
    });

    // 4. Delete everything: the domain, its NVRAM and the volumes go.
    assert_eq!(agent.put_desired(&desired(host_id, 5, vec![], vec![])), 200);
    let report = agent.wait_converged(5, BOOT, |r| {
        if r.volumes.is_empty() && r.vms.is_empty() {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    });
    assert!(report.foreign_domains.is_empty());
    assert!(host.domains().is_empty(), "no domain left: {:?}", host.domains());
    assert!(!data.exists(), "volume file removed");
    assert!(!agent.data_dir().join("vms/vm-1").exists(), "per-VM files (NVRAM, console) removed");
}

#[test]
fn bios_guest_lifecycle() {
    lifecycle("x86_64-bios", &format!("t-bios-{}", std::process::id() % 100_000));
}

#[test]
fn uefi_guest_lifecycle() {
    lifecycle("x86_64-uefi", &format!("t-uefi-{}", std::process::id() % 100_000));
}

/// The live domain's disks (`virsh domblklist`).
fn domblklist(host: &LibvirtHost, host_id: &str) -> String {
    let out = Command::new("virsh")
        .args(["-c", &host.uri, "domblklist", &format!("hci-{host_id}-vm-1")])
        .output()
        .expect("virsh domblklist");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn agent_killed_during_create_converges_to_exactly_one_vm() {
    let host_id = format!("t-kill-{}", std::process::id() % 100_000);
    let host = LibvirtHost::up(&host_id);
    let mut agent = AgentProc::start(&host);
    let d = desired(&host_id, 1, vec![vm("x86_64-bios", "k", PowerState::Running, 0)], volumes());
    assert_eq!(agent.put_desired(&d), 200);
    // Kill it mid-pass at a few points (image import, volume create, define, start), restart each time.
    for delay_ms in [0u64, 150, 400, 900] {
        std::thread::sleep(Duration::from_millis(delay_ms));
        agent.restart();
    }
    agent.wait_converged(1, BOOT, no_vm_errors);
    assert_eq!(host.domains(), vec![format!("hci-{host_id}-vm-1")]);
    let report = agent.report().expect("report");
    let mut ids: Vec<_> = report.volumes.iter().map(|v| v.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, vec!["vol-boot".to_string(), "vol-data".to_string()], "both volumes, once each");
    agent.wait_console("vm-1", "HCI-GUEST-BOOTED", BOOT);

    // A volume added to the running VM is hot-plugged: the live domain gets vdc without a restart.
    let mut vols = volumes();
    vols.push(empty_volume("vol-extra", "default"));
    let mut grown = vm("x86_64-bios", "k", PowerState::Running, 0);
    grown.disks.push("vol-extra".into());
    assert_eq!(agent.put_desired(&desired(&host_id, 2, vec![grown], vols)), 200);
    agent.wait_converged(2, BOOT, no_vm_errors);
    let live = domblklist(&host, &host_id);
    assert!(live.contains("vdc") && live.contains("hci-vol-extra.qcow2"), "live disks: {live}");
    assert_eq!(agent.console("vm-1").matches("HCI-GUEST-BOOTED").count(), 1, "no restart for a hot-plug");

    // The middle disk (vdb) leaves the running VM: unplugged live, vdc stays vdc, no restart.
    let mut shrunk = vm("x86_64-bios", "k", PowerState::Running, 0);
    shrunk.disks = vec!["vol-boot".into(), "vol-extra".into()];
    let mut vols = volumes();
    vols.push(empty_volume("vol-extra", "default"));
    assert_eq!(agent.put_desired(&desired(&host_id, 3, vec![shrunk], vols)), 200);
    agent.wait_converged(3, BOOT, no_vm_errors);
    let live = domblklist(&host, &host_id);
    assert!(!live.contains("vdb") && !live.contains("hci-vol-data"), "vdb is gone: {live}");
    assert!(live.contains("vdc") && live.contains("hci-vol-extra.qcow2"), "vdc stays: {live}");
    assert_eq!(agent.console("vm-1").matches("HCI-GUEST-BOOTED").count(), 1, "no restart for a hot-unplug");

    // A converged host needs nothing more: further passes define nothing.
    let defines = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("hci_agent_libvirt_call_duration_seconds_count{call=\"define\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = defines(&agent.metrics());
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(defines(&agent.metrics()), before, "steady state redefines nothing");
}

#[test]
fn host_info_and_unrunnable_profile() {
    let host_id = format!("t-info-{}", std::process::id() % 100_000);
    let host = LibvirtHost::up(&host_id);
    let agent = AgentProc::start(&host);
    let out = Command::new(hci_tests::bins::bin("hci-agent"))
        .args(["host-info", "--host-id", &host_id, "--libvirt-uri", &host.uri, "--data-dir"])
        .arg(agent.data_dir())
        .output()
        .expect("hci-agent host-info");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: hci_shared::agent::HostInfo = serde_json::from_slice(&out.stdout).expect("host-info JSON");
    assert_eq!(info.host_id, host_id);
    assert_eq!(info.arch, "x86_64");
    assert!(info.cpus >= 1 && info.memory_mib > 0);
    assert!(["kvm", "tcg"].contains(&info.accelerator.as_str()));
    for p in ["x86_64-bios", "x86_64-uefi", "x86_64-uefi-secureboot"] {
        assert!(info.firmware_profiles.contains(&p.to_string()), "{p} missing from {:?}", info.firmware_profiles);
    }
    assert_eq!(info.pools.len(), 1);
    assert!(info.pools[0].capacity_bytes > 0);

    // A profile the host cannot run is refused before anything is created.
    let mut arm = vm("aarch64-uefi", "x", PowerState::Running, 0);
    arm.arch = "aarch64".into();
    if !info.firmware_profiles.contains(&"aarch64-uefi".to_string()) {
        assert_eq!(agent.put_desired(&desired(&host_id, 1, vec![arm], volumes())), 200);
        let report = hci_tests::poll("a report naming the missing piece", BOOT, || {
            let r = agent.report()?;
            match r.vms.first().and_then(|v| v.last_error.clone()) {
                Some(e) if r.desired_generation == 1 => Ok((r, e)),
                _ => Err(format!("{r:?}")),
            }
        });
        assert!(report.1.contains("cannot run on this host"), "{}", report.1);
        assert!(host.domains().is_empty(), "nothing defined for an unrunnable profile");
    }
}

#[test]
fn bad_desired_states_are_refused_naming_the_field_and_change_nothing() {
    let host_id = format!("t-bad-{}", std::process::id() % 100_000);
    let host = LibvirtHost::up(&host_id);
    let agent = AgentProc::start(&host);
    let good = desired(&host_id, 1, vec![vm("x86_64-bios", "b", PowerState::Stopped, 0)], volumes());
    let good = serde_json::to_value(&good).expect("json");
    let cases: Vec<(serde_json::Value, u16, &str)> = vec![
        (serde_json::json!({"host_id": host_id, "generation": 1}), 400, "body"),
        (serde_json::json!("not an object"), 400, "body"),
        (
            {
                let mut d = good.clone();
                d["vms"][0]["id"] = "../../etc".into();
                d
            },
            400,
            "vms[0].id",
        ),
        (
            {
                let mut d = good.clone();
                d["vms"][0]["disks"][1] = "missing".into();
                d
            },
            400,
            "vms[0].disks[1]",
        ),
        (
            {
                let mut d = good.clone();
                d["volumes"][0]["source"]["image"]["sha256"] = "xyz".into();
                d
            },
            400,
            "volumes[0].source.image.sha256",
        ),
        (
            {
                let mut d = good.clone();
                d["host_id"] = "other-host".into();
                d
            },
            400,
            "host_id",
        ),
        (
            {
                let mut d = good.clone();
                d["surprise"] = 1.into();
                d
            },
            400,
            "body",
        ),
    ];
    for (body, status, field) in cases {
        let (got, answer) = agent.put_desired_json(&body);
        assert_eq!(got, status, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(field) || message.contains(field), "{message} should name {field}");
        assert_eq!(agent.held_desired(), None, "a refused desired state changes nothing");
    }
    assert!(host.domains().is_empty());
    assert_eq!(agent.put_desired_json(&good).0, 200);
    assert!(agent.held_desired().is_some());
}

/// The last `HCI-MARKER-FOUND` value on a console.
fn last_found(console: &str) -> Option<String> {
    console.lines().rev().find_map(|l| l.split("HCI-MARKER-FOUND ").nth(1)).map(|m| m.trim().to_string())
}

#[test]
fn snapshot_of_a_running_vm_then_revert_brings_the_old_data_back() {
    let host_id = format!("t-snap-{}", std::process::id() % 100_000);
    let host = LibvirtHost::up(&host_id);
    let agent = AgentProc::start(&host);
    let pid = std::process::id();
    let (m1, m2, m3) = (format!("one{pid}"), format!("two{pid}"), format!("three{pid}"));
    let put = |generation, vm: VmDesired| {
        assert_eq!(agent.put_desired(&desired(&host_id, generation, vec![vm], volumes())), 200);
        agent.wait_converged(generation, BOOT, no_vm_errors);
    };

    // m1 on the data disk; a disk-only snapshot s1 of the running VM.
    put(1, vm("x86_64-bios", &m1, PowerState::Running, 0));
    agent.wait_console("vm-1", &format!("HCI-MARKER-WRITTEN {m1}"), BOOT);
    let mut snap = vm("x86_64-bios", &m1, PowerState::Running, 0);
    snap.snapshots = vec!["s1".into()];
    put(2, snap.clone());
    let layer = agent.data_dir().join("pools/default/hci-vol-data.qcow2.snap-s1");
    assert!(layer.exists(), "the snapshot layer {} exists", layer.display());

    // Stopped, restarted with m2: it finds m1 and writes m2 over it.
    snap.power = PowerState::Stopped;
    put(3, snap.clone());
    snap.oem_strings[0] = format!("hci.marker={m2}");
    snap.power = PowerState::Running;
    put(4, snap.clone());
    agent.wait_console("vm-1", &format!("HCI-MARKER-WRITTEN {m2}"), BOOT);
    assert_eq!(last_found(&agent.console("vm-1")).as_deref(), Some(m1.as_str()));

    // Revert to s1 while running waits (an error on the VM); stopped, it reverts; started with m3 the
    // guest finds m1 again: what the disk held when the snapshot was taken.
    snap.revert = Some(hci_shared::agent::Rollback { to: "s1".into(), serial: 1 });
    assert_eq!(agent.put_desired(&desired(&host_id, 5, vec![snap.clone()], volumes())), 200);
    hci_tests::poll("the revert to wait for a stop", Duration::from_secs(60), || match agent.report() {
        Ok(r) if r.vms.first().and_then(|v| v.last_error.as_deref()).is_some_and(|e| e.contains("stop the VM")) => {
            Ok(())
        }
        other => Err(format!("{other:?}")),
    });
    snap.power = PowerState::Stopped;
    put(6, snap.clone());
    snap.oem_strings[0] = format!("hci.marker={m3}");
    snap.power = PowerState::Running;
    put(7, snap);
    agent.wait_console("vm-1", &format!("HCI-MARKER-WRITTEN {m3}"), BOOT);
    assert_eq!(last_found(&agent.console("vm-1")).as_deref(), Some(m1.as_str()), "reverted to m1");
    assert!(layer.exists(), "s1 is there again after the revert");

    assert_eq!(agent.put_desired(&desired(&host_id, 8, vec![], vec![])), 200);
    agent.wait_converged(8, BOOT, |r| if r.volumes.is_empty() { Ok(()) } else { Err(format!("{r:?}")) });
    assert!(!layer.exists(), "snapshot layers go with the volume");
}

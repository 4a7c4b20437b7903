//! Cold migration between two hosts, agent to agent: the VM stops on host A, A exports its volumes as
//! flattened, checksummed files, host B imports them (verified) and boots the VM, which finds the data
//! it wrote on A. Then A lets go. (The controller will orchestrate this from issue #4 on; here the
//! test plays the controller.)

use std::time::Duration;

use hci_shared::agent::{HostDesired, ImageFormat, ImageRef, VmDesired, VolumeDesired, VolumeSource};
use hci_shared::resources::PowerState;
use hci_tests::agent::{empty_volume, sha256_file, test_guest, AgentProc, LibvirtHost};

const BOOT: Duration = Duration::from_secs(150);

fn vm(marker: &str, power: PowerState) -> VmDesired {
    VmDesired {
        id: "vm-m".into(),
        name: "mover".into(),
        vcpus: 1,
        memory_mib: 512,
        arch: "x86_64".into(),
        firmware: "x86_64-bios".into(),
        disks: vec!["vol-boot".into(), "vol-data".into()],
        nics: vec![],
        power,
        reboot_count: 0,
        oem_strings: vec![format!("hci.marker={marker}"), "hci.heartbeat=0".into()],
        migration: None,
        snapshots: vec![],
        revert: None,
    }
}

fn from_image(id: &str, source: String, sha256: String) -> VolumeDesired {
    let name = format!("import-{id}");
    VolumeDesired {
        id: id.into(),
        pool: "default".into(),
        size_gib: 1,
        source: VolumeSource::Image(ImageRef { name, source, format: ImageFormat::Qcow2, sha256 }),
        snapshots: vec![],
        rollback: None,
    }
}

#[test]
fn stopped_vm_moves_to_another_host_with_its_data() {
    let pid = std::process::id() % 100_000;
    let (id_a, id_b) = (format!("t-mig-a-{pid}"), format!("t-mig-b-{pid}"));
    let (host_a, host_b) = (LibvirtHost::up(&id_a), LibvirtHost::up(&id_b));
    let (a, b) = (AgentProc::start(&host_a), AgentProc::start(&host_b));
    let disk = test_guest().join("disk.qcow2");
    let volumes_a = vec![
        from_image("vol-boot", format!("file://{}", disk.display()), sha256_file(&disk)),
        empty_volume("vol-data", "default"),
    ];
    let on_a = |generation, vms| HostDesired {
        host_id: id_a.clone(),
        generation,
        volumes: volumes_a.clone(),
        vms,
        retired_volumes: vec![],
        isolation: None,
        network: None,
    };

    // On A: boot, write a marker to the data disk.
    let marker = format!("from-a-{pid}");
    assert_eq!(a.put_desired(&on_a(1, vec![vm(&marker, PowerState::Running)])), 200);
    a.wait_converged(1, BOOT, |_| Ok(()));
    a.wait_console("vm-m", &format!("HCI-MARKER-WRITTEN {marker}"), BOOT);
    assert_eq!(a.export("vol-data").0, 409, "a running VM's volume is not exported");

    // Stop on A and export both volumes.
    assert_eq!(a.put_desired(&on_a(2, vec![vm(&marker, PowerState::Stopped)])), 200);
    a.wait_converged(2, BOOT, |_| Ok(()));
    let mut volumes_b = Vec::new();
    for id in ["vol-boot", "vol-data"] {
        let (status, export) = a.export(id);
        assert_eq!(status, 200, "{export}");
        let url = a.url(export["url_path"].as_str().expect("url_path"));
        let sha = export["sha256"].as_str().expect("sha256").to_string();
        volumes_b.push(from_image(id, url, sha));
    }
    assert_eq!(a.export("nope").0, 404);

    // On B: import (verified) and boot; the guest finds A's marker, then writes its own.
    let marker_b = format!("from-b-{pid}");
    let on_b = HostDesired {
        host_id: id_b.clone(),
        generation: 1,
        volumes: volumes_b,
        vms: vec![vm(&marker_b, PowerState::Running)],
        retired_volumes: vec![],
        isolation: None,
        network: None,
    };
    assert_eq!(b.put_desired(&on_b), 200);
    b.wait_converged(1, BOOT, |r| match r.vms.first() {
        Some(v) if v.last_error.is_none() => Ok(()),
        other => Err(format!("{other:?}")),
    });
    b.wait_console("vm-m", &format!("HCI-MARKER-FOUND {marker}"), BOOT);
    b.wait_console("vm-m", &format!("HCI-MARKER-WRITTEN {marker_b}"), BOOT);

    // A lets go: its domain and volumes are removed; B keeps running.
    assert_eq!(
        a.put_desired(&HostDesired {
            host_id: id_a.clone(),
            generation: 3,
            volumes: vec![],
            vms: vec![],
            retired_volumes: vec![],
            isolation: None,
            network: None
        }),
        200
    );
    a.wait_converged(3, BOOT, |r| if r.volumes.is_empty() { Ok(()) } else { Err(format!("{r:?}")) });
    assert!(host_a.domains().is_empty());
    assert_eq!(host_b.domains(), vec![format!("hci-{id_b}-vm-m")]);
}

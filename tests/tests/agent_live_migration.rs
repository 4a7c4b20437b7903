//! Live migration between two hosts, agent to agent, over a shared Ceph RBD pool: the guest keeps
//! running through the move (its heartbeat's uptime goes on, it never boots again), it never runs on
//! both hosts at once, the source host's libvirt no longer has it, its data is intact, and the shared
//! volumes outlive the source letting go until the target retires them. Between local pools the
//! disks are copied while the guest runs. The test plays the controller (issue #4 orchestrates this).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hci_shared::agent::{
    HostDesired, ImageFormat, ImageRef, RetiredVolume, VmDesired, VmMigration, VmRunState, VolumeDesired, VolumeSource,
};
use hci_shared::resources::PowerState;
use hci_tests::agent::{empty_volume, last_uptime, read_volume_head, sha256_file, test_guest, AgentProc, LibvirtHost};
use hci_tests::ceph::CephCluster;

const BOOT: Duration = Duration::from_secs(150);
const MOVE: Duration = Duration::from_secs(180);
const VM: &str = "vm-l";

fn vm(marker: &str, power: PowerState, migration: Option<VmMigration>) -> VmDesired {
    VmDesired {
        id: VM.into(),
        name: "live".into(),
        vcpus: 1,
        memory_mib: 256,
        arch: "x86_64".into(),
        firmware: "x86_64-bios".into(),
        disks: vec!["vol-lboot".into(), "vol-ldata".into()],
        nics: vec![],
        power,
        reboot_count: 0,
        oem_strings: vec![format!("hci.marker={marker}"), "hci.heartbeat=1".into()],
        migration,
        snapshots: vec![],
        revert: None,
    }
}

fn volumes() -> Vec<VolumeDesired> {
    volumes_in("ceph")
}

/// The VM's boot volume (from the test guest image) and data volume, in `pool`.
fn volumes_in(pool: &str) -> Vec<VolumeDesired> {
    let disk = test_guest().join("disk.qcow2");
    let image = ImageRef {
        name: "guest".into(),
        source: format!("file://{}", disk.display()),
        format: ImageFormat::Qcow2,
        sha256: sha256_file(&disk),
    };
    vec![
        VolumeDesired {
            id: "vol-lboot".into(),
            pool: pool.into(),
            size_gib: 1,
            source: VolumeSource::Image(image),
            snapshots: vec![],
            rollback: None,
        },
        empty_volume("vol-ldata", pool),
    ]
}

fn desired(host: &str, generation: u64, vms: Vec<VmDesired>, volumes: Vec<VolumeDesired>) -> HostDesired {
    HostDesired { volumes, vms, ..hci_shared::hosts::empty_desired(host, generation) }
}

/// `virsh domblklist` of a running domain: its live disks.
fn domblklist(uri: &str, name: &str) -> String {
    std::process::Command::new("virsh")
        .args(["-c", uri, "domblklist", name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// `virsh domstate` of a domain ("running", "paused", "shut off", or "" when absent).
fn domstate(uri: &str, name: &str) -> String {
    std::process::Command::new("virsh")
        .args(["-c", uri, "domstate", name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[test]
fn running_vm_moves_live_over_shared_rbd_and_never_runs_twice() {
    let ceph = CephCluster::up();
    let pid = std::process::id() % 100_000;
    let (id_a, id_b) = (format!("t-live-a-{pid}"), format!("t-live-b-{pid}"));
    let (host_a, host_b) = (LibvirtHost::up(&id_a), LibvirtHost::up(&id_b));
    // The agents' default --migration-libvirt-uri (qemu+unix with the instance's socket) lets one
    // instance's libvirtd reach the other's.
    let flags = vec![
        "--rbd-pool".to_string(),
        format!("ceph=hci@{}", ceph.monitor),
        "--migration-address".into(),
        "127.0.0.1".into(),
    ];
    let (a, b) = (AgentProc::start_with(&host_a, &flags), AgentProc::start_with(&host_b, &flags));
    let (name_a, name_b) = (format!("hci-{id_a}-{VM}"), format!("hci-{id_b}-{VM}"));

    // On A: boot from an RBD volume, write a marker to the RBD data volume, heartbeat every second.
    let marker = format!("live-{pid}");
    assert_eq!(a.put_desired(&desired(&id_a, 1, vec![vm(&marker, PowerState::Running, None)], volumes())), 200);
    a.wait_converged(1, BOOT, |_| Ok(()));
    a.wait_console(VM, &format!("HCI-MARKER-WRITTEN {marker}"), BOOT);
    a.wait_console(VM, "HCI-GUEST-ALIVE", BOOT);

    // B expects it; it creates nothing on its own, however long it waits.
    let incoming = Some(VmMigration::Incoming { from_host: id_a.clone() });
    assert_eq!(b.put_desired(&desired(&id_b, 1, vec![vm(&marker, PowerState::Running, incoming)], volumes())), 200);
    hci_tests::poll("B holds generation 1", Duration::from_secs(30), || match b.report() {
        Ok(r) if r.desired_generation == 1 && r.vms.first().is_some_and(|v| v.state == VmRunState::Missing) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    assert!(host_b.domains().is_empty(), "B defined nothing: {:?}", host_b.domains());

    // Watch both hosts while A moves it: never running on both.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (watching, uri_a, uri_b) = (watching.clone(), host_a.uri.clone(), host_b.uri.clone());
        let (name_a, name_b) = (name_a.clone(), name_b.clone());
        std::thread::spawn(move || {
            let mut overlaps = 0;
            let mut samples = 0;
            while watching.load(Ordering::SeqCst) {
                // A running before and after B was seen running: both ran at that moment.
                let before = domstate(&uri_a, &name_a) == "running";
                let on_b = domstate(&uri_b, &name_b) == "running";
                let after = domstate(&uri_a, &name_a) == "running";
                overlaps += usize::from(before && on_b && after);
                samples += 1;
            }
            (overlaps, samples)
        })
    };
    let uptime_before = last_uptime(&a.console(VM)).expect("a heartbeat on A");
    let outgoing = Some(VmMigration::Outgoing { to_host: id_b.clone(), to_agent: b.url("") });
    let started = std::time::Instant::now();
    assert_eq!(a.put_desired(&desired(&id_a, 2, vec![vm(&marker, PowerState::Running, outgoing)], volumes())), 200);
    a.wait_converged(2, MOVE, |r| match r.vms.first() {
        Some(v) if v.state == VmRunState::Departed => Ok(()),
        other => Err(format!("{other:?}")),
    });
    b.wait_converged(1, Duration::from_secs(60), |r| match r.vms.first() {
        Some(v) if v.state == VmRunState::Running && v.last_error.is_none() => Ok(()),
        other => Err(format!("{other:?}")),
    });
    eprintln!("live migration: desired state to departed and running on B in {:?}", started.elapsed());
    // The guest goes on: its uptime keeps counting on B, and it never booted there.
    let console_b = heartbeat_continues(&b, uptime_before);
    watching.store(false, Ordering::SeqCst);
    let (overlaps, samples) = watcher.join().expect("watcher");
    assert_eq!(overlaps, 0, "the VM ran on both hosts in {overlaps} of {samples} samples");
    assert!(samples > 0);
    assert!(!console_b.contains("HCI-GUEST-BOOTED"), "the guest rebooted on B:\n{console_b}");
    assert!(host_a.domains().is_empty(), "A's libvirt still has {:?}", host_a.domains());
    assert_eq!(host_b.domains(), vec![name_b.clone()]);

    // A lets go: the shared volumes stay. B takes it over for good, with no restart.
    assert_eq!(a.put_desired(&desired(&id_a, 3, vec![], vec![])), 200);
    a.wait_converged(3, Duration::from_secs(60), |_| Ok(()));
    let images = ceph.rbd(&["ls", "hci"]).expect("rbd ls");
    assert!(images.contains("hci-vol-lboot") && images.contains("hci-vol-ldata"), "{images}");
    assert_eq!(b.put_desired(&desired(&id_b, 2, vec![vm(&marker, PowerState::Running, None)], volumes())), 200);
    b.wait_converged(2, Duration::from_secs(60), |_| Ok(()));
    assert!(!b.console(VM).contains("HCI-GUEST-BOOTED"), "no restart when the migration is finished");

    // An RBD volume hot-plugged into the running VM on B: vdc, no restart.
    let mut grown = vm(&marker, PowerState::Running, None);
    grown.disks.push("vol-lextra".into());
    let mut with_extra = volumes();
    with_extra.push(empty_volume("vol-lextra", "ceph"));
    assert_eq!(b.put_desired(&desired(&id_b, 3, vec![grown], with_extra)), 200);
    b.wait_converged(3, Duration::from_secs(60), |_| Ok(()));
    let live = domblklist(&host_b.uri, &name_b);
    assert!(live.contains("vdc") && live.contains("hci/hci-vol-lextra"), "live disks on B: {live}");
    // ... and hot-unplugged again (the volume stays, still in the desired state).
    let mut extra_kept = volumes();
    extra_kept.push(empty_volume("vol-lextra", "ceph"));
    assert_eq!(
        b.put_desired(&desired(&id_b, 4, vec![vm(&marker, PowerState::Running, None)], extra_kept.clone())),
        200
    );
    b.wait_converged(4, Duration::from_secs(90), |_| Ok(()));
    let live = domblklist(&host_b.uri, &name_b);
    assert!(!live.contains("vdc") && !live.contains("hci-vol-lextra"), "vdc unplugged on B: {live}");
    assert!(!b.console(VM).contains("HCI-GUEST-BOOTED"), "no restart for a hot-plug or unplug");

    // Another host retiring a volume that B's running VM uses is refused by Ceph (it has a watcher):
    // an error on A, the data intact.
    let mut retire = desired(&id_a, 4, vec![], vec![]);
    retire.retired_volumes = vec![RetiredVolume { pool: "ceph".into(), id: "vol-ldata".into() }];
    assert_eq!(a.put_desired(&retire), 200);
    hci_tests::poll("A's delete of an attached volume to fail", Duration::from_secs(60), || match a.report() {
        Ok(r) if r.volumes.iter().any(|v| v.id == "vol-ldata" && v.last_error.is_some()) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    assert!(ceph.rbd(&["ls", "hci"]).expect("rbd ls").contains("hci-vol-ldata"), "the attached volume stays");
    assert_eq!(a.put_desired(&desired(&id_a, 5, vec![], vec![])), 200);

    // Stopped on B (the extra disk unplugged), the data volume still holds what the guest wrote on A.
    assert_eq!(b.put_desired(&desired(&id_b, 5, vec![vm(&marker, PowerState::Stopped, None)], extra_kept)), 200);
    b.wait_converged(5, Duration::from_secs(90), |_| Ok(()));
    let dump = std::env::temp_dir().join(format!("hci-live-data-{pid}"));
    ceph.rbd(&["export", "hci/hci-vol-ldata", &dump.to_string_lossy()]).expect("rbd export");
    let head = std::fs::read(&dump).expect("exported data");
    let _ = std::fs::remove_file(&dump);
    let wanted = format!("HCI-MARKER {marker}");
    assert!(head.starts_with(wanted.as_bytes()), "data volume starts with {:?}", String::from_utf8_lossy(&head[..40]));

    // B deletes it and retires the volumes: gone from Ceph.
    let mut last = desired(&id_b, 6, vec![], vec![]);
    last.retired_volumes = ["vol-lboot", "vol-ldata", "vol-lextra"]
        .iter()
        .map(|id| RetiredVolume { pool: "ceph".into(), id: id.to_string() })
        .collect();
    assert_eq!(b.put_desired(&last), 200);
    b.wait_converged(6, Duration::from_secs(60), |_| Ok(()));
    let images = ceph.rbd(&["ls", "hci"]).expect("rbd ls");
    assert!(!images.contains("hci-vol-l"), "{images}");
    drop((a, b));
}

/// Waits for the guest's heartbeat on `to`'s console to pass `uptime_before` + 2 s; returns the console.
fn heartbeat_continues(to: &AgentProc, uptime_before: f64) -> String {
    hci_tests::poll("the heartbeat continuing on the target", Duration::from_secs(60), || {
        let text = to.console(VM);
        match last_uptime(&text) {
            Some(up) if up > uptime_before + 2.0 => Ok(text),
            other => Err(format!("uptime on the target {other:?}, before {uptime_before}")),
        }
    })
}

#[test]
fn running_vm_moves_live_with_its_local_disks_copied() {
    let pid = std::process::id() % 100_000;
    let (id_a, id_b) = (format!("t-copy-a-{pid}"), format!("t-copy-b-{pid}"));
    let (host_a, host_b) = (LibvirtHost::up(&id_a), LibvirtHost::up(&id_b));
    let flags = vec!["--migration-address".to_string(), "127.0.0.1".into()];
    let (a, b) = (AgentProc::start_with(&host_a, &flags), AgentProc::start_with(&host_b, &flags));
    let marker = format!("copy-{pid}");
    let local = || volumes_in("default");

    assert_eq!(a.put_desired(&desired(&id_a, 1, vec![vm(&marker, PowerState::Running, None)], local())), 200);
    a.wait_converged(1, BOOT, |_| Ok(()));
    a.wait_console(VM, &format!("HCI-MARKER-WRITTEN {marker}"), BOOT);
    a.wait_console(VM, "HCI-GUEST-ALIVE", BOOT);

    // B makes its own volumes (the same image, an empty data disk) and waits for the VM.
    let incoming = Some(VmMigration::Incoming { from_host: id_a.clone() });
    assert_eq!(b.put_desired(&desired(&id_b, 1, vec![vm(&marker, PowerState::Running, incoming)], local())), 200);
    hci_tests::poll("B's volumes for the incoming VM", Duration::from_secs(60), || match b.report() {
        Ok(r) if r.volumes.len() == 2 && r.volumes.iter().all(|v| v.last_error.is_none()) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    assert!(host_b.domains().is_empty());

    let uptime_before = last_uptime(&a.console(VM)).expect("a heartbeat on A");
    let started = std::time::Instant::now();
    let outgoing = Some(VmMigration::Outgoing { to_host: id_b.clone(), to_agent: b.url("") });
    assert_eq!(a.put_desired(&desired(&id_a, 2, vec![vm(&marker, PowerState::Running, outgoing)], local())), 200);
    a.wait_converged(2, MOVE, |r| match r.vms.first() {
        Some(v) if v.state == VmRunState::Departed => Ok(()),
        other => Err(format!("{other:?}")),
    });
    eprintln!("live migration with disk copy: {:?}", started.elapsed());
    let console_b = heartbeat_continues(&b, uptime_before);
    assert!(!console_b.contains("HCI-GUEST-BOOTED"), "the guest rebooted on B:\n{console_b}");
    assert!(host_a.domains().is_empty(), "A's libvirt still has {:?}", host_a.domains());

    // A lets go (its local copies are deleted); stopped on B, B's own data volume holds the marker
    // the guest wrote on A: it was copied.
    assert_eq!(a.put_desired(&desired(&id_a, 3, vec![], vec![])), 200);
    a.wait_converged(3, Duration::from_secs(60), |r| if r.volumes.is_empty() { Ok(()) } else { Err(format!("{r:?}")) });
    assert_eq!(b.put_desired(&desired(&id_b, 2, vec![vm(&marker, PowerState::Stopped, None)], local())), 200);
    b.wait_converged(2, Duration::from_secs(90), |_| Ok(()));
    let head = read_volume_head(&b.data_dir().join("pools/default/hci-vol-ldata.qcow2"));
    assert!(head.starts_with(&format!("HCI-MARKER {marker}")), "B's data volume starts with {head:?}");
}

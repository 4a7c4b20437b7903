//! `FakeHypervisor` keeps the semantics the trait documents (and `LibvirtHypervisor` has): idempotent
//! define that refuses foreign domains, no-op start/shutdown, undefine of a missing domain is Ok,
//! NoSuchDomain elsewhere; and its failure injection, delays and call log work as reconciler tests
//! need them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hci_agent::hypervisor::fake::{FakeHypervisor, Method};
use hci_agent::hypervisor::{DomainSpec, Hypervisor, HypervisorError};
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

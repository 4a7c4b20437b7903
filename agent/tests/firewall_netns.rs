//! The firewall with real packets: network namespaces for two hosts and their VMs (see
//! `firewall_common`), the agent's table applied with the real `nft`, and TCP, UDP and ICMP sent
//! between the VMs. Every outcome is compared with the model-level oracle
//! (`FirewallModel::verdict`) along the packet's path (its host, and the other host when it crosses
//! the fabric). Needs root, nft, socat and ping (scripts/install-deps.sh); skipped otherwise.

mod firewall_common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use firewall_common::*;
use hci_agent::firewall::model::{CtState, FirewallModel, Packet, Verdict, L4};
use hci_agent::firewall::nft::NftFirewall;
use hci_agent::firewall::{Enforcer, Firewall, InterfaceChange, UpdateKind};

const QUICK: Duration = Duration::from_millis(1000);
const PATIENT: Duration = Duration::from_millis(3000);
const PARALLEL_PROBES: usize = 75;

fn matrix_vms() -> Vec<VmSpec> {
    let vm = |name, host, zone, ip| VmSpec { name, host, zone, ip };
    vec![
        vm("web1", 0, "web", "10.1.0.11"),
        vm("app1", 0, "app", "10.2.0.11"),
        vm("db1", 0, "db", "10.3.0.11"),
        vm("db2", 0, "db", "10.3.0.12"),
        vm("iso1", 0, "iso", "10.9.0.11"),
        vm("app2", 1, "app", "10.2.0.21"),
        vm("db3", 1, "db", "10.3.0.21"),
        vm("iso2", 1, "iso", "10.9.0.21"),
    ]
}

/// Named counter `counter` of the table in `host` has counted packets.
fn assert_counted(host: &str, counter: &str) {
    let listing = must(&["ip", "netns", "exec", host, "nft", "list", "counter", "inet", "hci", counter]);
    assert!(!listing.contains("packets 0 "), "counter {counter} counted nothing: {listing}");
}

/// The named VMs of the matrix, all on the first host.
fn on_one_host(names: &[&str]) -> Vec<VmSpec> {
    matrix_vms().into_iter().filter(|vm| names.contains(&vm.name)).map(|vm| VmSpec { host: 0, ..vm }).collect()
}

fn enforce(lab: &Lab, h: usize) -> Enforcer {
    let mut enforcer = Enforcer::new(Arc::new(NftFirewall::in_netns(&lab.hosts[h])));
    let model = lab.host_model(h, &matrix_zones(), &matrix_policies());
    assert_eq!(enforcer.apply(model).expect("apply"), UpdateKind::Full);
    enforcer
}

/// What the oracle says of the first packet of `probe` from `from` to `to`, on every host it crosses.
fn expected(models: &[FirewallModel], from: &VmSpec, to: &VmSpec, probe: Probe) -> bool {
    let proto = match probe {
        Probe::Tcp(port) => L4::Tcp(port),
        Probe::Udp => L4::Udp(5353),
        Probe::Icmp => L4::Icmp,
    };
    let packet = |iif: String, oif: String| Packet {
        iif,
        oif: Some(oif),
        src: from.ip.parse().ok(),
        dst: to.ip.parse().ok(),
        proto,
        ct_state: CtState::New,
    };
    let hops = if from.host == to.host {
        vec![(from.host, packet(from.tap(), to.tap()))]
    } else {
        vec![(from.host, packet(from.tap(), FABRIC.into())), (to.host, packet(FABRIC.into(), to.tap()))]
    };
    hops.iter().all(|(h, p)| models[*h].verdict(p) == Verdict::Accept)
}

/// Runs every case in parallel batches; a blocked outcome where the oracle expects reached is tried
/// once more with a longer wait (a slow answer on a loaded machine is not a firewall verdict).
fn outcomes(lab: &Lab, cases: &[(&'static str, &'static str, Probe)]) -> Vec<bool> {
    let mut results = vec![false; cases.len()];
    for (chunk_index, chunk) in cases.chunks(PARALLEL_PROBES).enumerate() {
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(from, to, probe)| {
                    let ns = lab.vm_ns(from).to_string();
                    let ip: Ipv4Addr = lab.vm(to).ip.parse().expect("ip");
                    scope.spawn(move || reaches(&ns, ip, *probe, None, QUICK))
                })
                .collect();
            for (i, handle) in handles.into_iter().enumerate() {
                results[chunk_index * PARALLEL_PROBES + i] = handle.join().expect("probe thread");
            }
        });
    }
    results
}

#[test]
fn zone_matrix_with_real_packets_on_one_host_and_across_two() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("m", 2, &matrix_vms());
    let _enforcers = [enforce(&lab, 0), enforce(&lab, 1)];
    let models = [0, 1].map(|h| lab.host_model(h, &matrix_zones(), &matrix_policies()));
    let names: Vec<&'static str> = matrix_vms().iter().map(|vm| vm.name).collect();
    let mut cases = Vec::new();
    for from in &names {
        for to in &names {
            if from != to {
                for probe in [Probe::Tcp(8080), Probe::Tcp(9999), Probe::Udp, Probe::Icmp] {
                    cases.push((*from, *to, probe));
                }
            }
        }
    }
    let started = Instant::now();
    let got = outcomes(&lab, &cases);
    let mut mismatches = Vec::new();
    let mut reached = 0;
    for ((from, to, probe), got) in cases.iter().zip(got) {
        let want = expected(&models, lab.vm(from), lab.vm(to), *probe);
        let got = got || (want && reaches(lab.vm_ns(from), lab.vm(to).ip.parse().expect("ip"), *probe, None, PATIENT));
        reached += usize::from(got);
        if got != want {
            mismatches.push(format!("{from} -> {to} {probe:?}: want reached={want}, got {got}"));
        }
    }
    eprintln!("{} probes in {:?}: {reached} reached", cases.len(), started.elapsed());
    assert!(
        mismatches.is_empty(),
        "{} of {} probes disagree with the model:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
    // The matrix is not trivial: same-host and cross-host flows pass, the isolated zone reaches only itself.
    for (from, to, probe, want) in [
        ("web1", "app1", Probe::Tcp(8080), true),
        ("web1", "app2", Probe::Tcp(8080), true),
        ("app2", "db1", Probe::Udp, true),
        ("web1", "db3", Probe::Icmp, true),
        ("web1", "app1", Probe::Tcp(9999), false),
        ("app1", "web1", Probe::Tcp(8080), false),
        ("db1", "db2", Probe::Icmp, false),
        ("iso1", "iso2", Probe::Tcp(9999), true),
        ("iso1", "web1", Probe::Icmp, false),
        ("web1", "iso1", Probe::Icmp, false),
    ] {
        assert_eq!(expected(&models, lab.vm(from), lab.vm(to), probe), want, "{from} -> {to} {probe:?}");
    }
    assert_counted(&lab.hosts[0], "policy_web-app");
}

#[test]
fn a_vm_cannot_speak_from_an_address_that_is_not_its_own() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("s", 1, &on_one_host(&["web1", "app1", "db1"]));
    let _enforcer = enforce(&lab, 0);
    let db1: Ipv4Addr = "10.3.0.11".parse().expect("ip");
    assert!(reaches(lab.vm_ns("app1"), db1, Probe::Udp, None, PATIENT), "app → db UDP 5353 is allowed");
    // web1 takes an address of the app zone (which may reach db) and tries again.
    must(&["ip", "-n", lab.vm_ns("web1"), "addr", "add", "10.2.0.99/32", "dev", "eth0"]);
    must(&["ip", "-n", &lab.hosts[0], "route", "add", "10.2.0.99/32", "dev", "t-web1"]);
    assert!(!reaches(lab.vm_ns("web1"), db1, Probe::Udp, Some("10.2.0.99"), QUICK), "spoofed source passed");
    assert_counted(&lab.hosts[0], "drop_spoofed");
}

#[test]
fn drift_is_detected_and_restored() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("d", 1, &on_one_host(&["web1", "app1"]));
    let host = lab.hosts[0].clone();
    let mut enforcer = enforce(&lab, 0);
    let (web1, app1): (Ipv4Addr, Ipv4Addr) = ("10.1.0.11".parse().expect("ip"), "10.2.0.11".parse().expect("ip"));
    let allowed = || reaches(lab.vm_ns("web1"), app1, Probe::Tcp(8080), None, PATIENT);
    let denied = || !reaches(lab.vm_ns("app1"), web1, Probe::Tcp(8080), None, QUICK);
    assert!(allowed() && denied());
    // Traffic moves counters; that is not drift.
    assert_eq!(enforcer.check_drift().expect("check"), None);

    let tampering: [&[&str]; 5] = [
        &["flush", "table", "inet", "hci"],
        &["delete", "table", "inet", "hci"],
        &["insert", "rule", "inet", "hci", "forward", "accept"],
        &["delete", "element", "inet", "hci", "vm-addrs", "{ t-web1 . 10.1.0.11 }"],
        &["add", "element", "inet", "hci", "zone_app", "{ t-web1 }"],
    ];
    for edit in tampering {
        let args: Vec<&str> =
            ["ip", "netns", "exec", &host, "nft"].iter().copied().chain(edit.iter().copied()).collect();
        must(&args);
        if edit[0] != "add" && edit[0] != "delete" || edit[1] == "table" {
            assert!(!denied(), "after `nft {}` the denied flow should pass (the table is open)", edit.join(" "));
        }
        let event =
            enforcer.check_drift().expect("check").unwrap_or_else(|| panic!("`nft {}` not detected", edit.join(" ")));
        eprintln!("nft {}: {}", edit.join(" "), event.difference);
        assert!(allowed() && denied(), "not restored after `nft {}`", edit.join(" "));
        assert_eq!(enforcer.check_drift().expect("check"), None);
    }

    // A watcher as the agent runs it: a check every 100 ms restores a flushed table within seconds.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut events = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                events += usize::from(enforcer.check_drift().expect("check").is_some());
                std::thread::sleep(Duration::from_millis(100));
            }
            events
        });
        let flushed = Instant::now();
        must(&["ip", "netns", "exec", &host, "nft", "flush", "table", "inet", "hci"]);
        let firewall = NftFirewall::in_netns(&host);
        wait_until(Duration::from_secs(5), "the watcher to restore the table", || {
            firewall.list().ok().flatten().is_some_and(|l| l.to_string().contains("drop_default\"}"))
        });
        eprintln!("flushed table restored after {:?}", flushed.elapsed());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(watcher.join().expect("watcher"), 1);
    });
    assert!(allowed() && denied());
}

#[test]
fn one_vm_change_is_an_element_edit() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("i", 1, &on_one_host(&["web1", "app1"]));
    let mut enforcer = enforce(&lab, 0);
    let app1: Ipv4Addr = "10.2.0.11".parse().expect("ip");
    assert!(reaches(lab.vm_ns("web1"), app1, Probe::Tcp(8080), None, PATIENT));
    let web1 = lab.vm("web1").interface();
    assert_eq!(
        enforcer.change_interfaces(&[InterfaceChange::Remove(web1.clone())]).expect("remove"),
        UpdateKind::Interfaces(1)
    );
    assert!(!reaches(lab.vm_ns("web1"), app1, Probe::Tcp(8080), None, QUICK), "a tap in no zone reaches nothing");
    // Removing what is gone is fine (idempotent), and changes nothing.
    assert_eq!(
        enforcer.change_interfaces(&[InterfaceChange::Remove(web1.clone())]).expect("remove"),
        UpdateKind::Unchanged
    );
    assert_eq!(enforcer.change_interfaces(&[InterfaceChange::Add(web1)]).expect("add"), UpdateKind::Interfaces(1));
    assert!(reaches(lab.vm_ns("web1"), app1, Probe::Tcp(8080), None, PATIENT));
    assert_eq!(enforcer.check_drift().expect("check"), None, "incremental edits are what the model says");
}

#[test]
fn the_longest_names_the_api_allows_fit_in_nftables() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("n", 1, &[]);
    let (a, b) = ("a".repeat(63), "b".repeat(63));
    let model = FirewallModel {
        zones: vec![zone(&a, "10.1.0.0/24", false, false), zone(&b, "10.2.0.0/24", false, false)],
        policies: vec![policy(&"p".repeat(63), &a, &b, hci_shared::resources::Protocol::Any, &[])],
        interfaces: vec![hci_agent::firewall::model::Interface {
            ifname: "t-".to_string() + &"x".repeat(13),
            zone: a.clone(),
            ip: "10.1.0.5".parse().expect("ip"),
        }],
        fabric_ifaces: Vec::new(),
    };
    let mut enforcer = Enforcer::new(Arc::new(NftFirewall::in_netns(&lab.hosts[0])));
    assert_eq!(enforcer.apply(model).expect("apply"), UpdateKind::Full);
    assert_eq!(enforcer.check_drift().expect("check"), None);
}

/// The agent's firewall keeps one libnftables session (its netlink socket open for its life, so a
/// removal does not wait on the socket's close), sees what `nft` processes see, and lends its
/// socket to no program it runs.
#[test]
fn the_firewall_keeps_one_nftables_session_and_lends_it_to_no_program() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("q", 1, &[]);
    let session = NftFirewall::in_netns(&lab.hosts[0]);
    assert_eq!(session.transport(), "libnftables session", "libnftables.so.1 is installed with nftables");
    let process = NftFirewall::process(Some(&lab.hosts[0]));
    let iface = |name: &str, ip: &str| hci_agent::firewall::model::Interface {
        ifname: name.into(),
        zone: "web".into(),
        ip: ip.parse().expect("ip"),
    };
    let model = |ifaces: Vec<hci_agent::firewall::model::Interface>| FirewallModel {
        zones: matrix_zones(),
        policies: matrix_policies(),
        interfaces: ifaces,
        fabric_ifaces: Vec::new(),
    };
    let mut enforcer = Enforcer::new(Arc::new(session.clone()));
    let both = model(vec![iface("tap-a", "10.1.0.11"), iface("tap-b", "10.1.0.12")]);
    assert_eq!(enforcer.apply(both).expect("apply"), UpdateKind::Full);
    assert_eq!(enforcer.apply(model(vec![iface("tap-a", "10.1.0.11")])).expect("apply"), UpdateKind::Interfaces(1));
    let shape = |firewall: &NftFirewall| {
        hci_agent::firewall::live::shape(&firewall.list().expect("list").expect("the table")).expect("shape")
    };
    let listed = shape(&session);
    assert_eq!(listed, shape(&process), "the session and an nft process list the same table");
    assert_eq!(
        listed.elements[hci_agent::firewall::ruleset::VM_IFACES],
        ["tap-a".to_string()].into_iter().collect(),
        "tap-b removed"
    );
    assert_eq!(enforcer.check_drift().expect("check"), None);

    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sleep");
    let inherited: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
        .expect("the child's fds")
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|target| target.display().to_string())
        .filter(|target| target.starts_with("socket:"))
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert!(inherited.is_empty(), "a program the agent runs inherited sockets: {inherited:?}");
}

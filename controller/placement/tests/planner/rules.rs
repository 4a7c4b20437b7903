//! The placement rules one at a time: filters, cap, scoring, quota, refusal messages, policy.

use hci_placement::*;
use serde::de::value::MapDeserializer;
use serde::de::IntoDeserializer;
use serde::Deserialize;

use crate::support::*;

#[test]
fn the_refusal_counts_each_host_under_the_first_constraint_it_fails() {
    let mut hosts = Vec::new();
    for i in 0..3 {
        hosts.push(HostSpec { arch: "aarch64".to_string(), ..host(&format!("arm{i}")) });
    }
    for i in 0..2 {
        hosts.push(HostSpec { state: HostState::Maintenance, ..host(&format!("mnt{i}")) });
    }
    for i in 0..4 {
        hosts.push(HostSpec { memory_mib: 4096, ..host(&format!("small{i}")) });
    }
    let view = view_of(hosts);
    let big = PlacementRequest { memory_mib: 4000, ..request("X") };
    let refusal = place(&view, &big, &spread()).expect_err("nothing fits");
    assert_eq!(
        refusal.to_string(),
        "no host fits vm X: 3 hosts wrong arch (not x86_64), 2 hosts in maintenance, \
         4 hosts would exceed the 80 % memory cap"
    );
    assert_eq!(place_naive(&view, &big, &spread()), Err(refusal));
}

#[test]
fn an_empty_cluster_says_so() {
    let view = view_of([]);
    let refusal = place(&view, &request("X"), &spread()).expect_err("no hosts");
    assert_eq!(refusal.to_string(), "no host fits vm X: there are no hosts");
}

#[test]
fn every_filter_has_words() {
    let mut view = view_of([
        HostSpec { site: "s1".to_string(), ..host("a-site") },
        HostSpec { state: HostState::Offline, ..host("b-offline") },
        HostSpec { state: HostState::Fenced, ..host("c-fenced") },
        host("d-excluded"),
        HostSpec { firmware_profiles: set(&["x86_64-uefi"]), ..host("e-firmware") },
        HostSpec { zones: set(&["z9"]), ..host("f-zones") },
        host("g-group"),
        HostSpec { cpus: 1, ..host("h-vcpu") },
        HostSpec { pools: Default::default(), ..host("i-pool") },
        HostSpec {
            pools: [("local".to_string(), PoolSpec { capacity_bytes: GIB, allocated_bytes: 0 })].into(),
            ..host("j-disk")
        },
    ]);
    let member = PlacementRequest { anti_affinity_group: Some("web".to_string()), ..request("member") };
    view.apply(&Decision { host: "g-group".to_string(), previous_host: None, request: member }).expect("apply");
    let wanted = PlacementRequest {
        vcpus: 2,
        site: Some("s0".to_string()),
        anti_affinity_group: Some("web".to_string()),
        volumes: vec![VolumeDemand { pool: "local".to_string(), size_bytes: 10 * GIB }],
        exclude_hosts: set(&["d-excluded"]),
        ..request("X")
    };
    let refusal = place(&view, &wanted, &Policy::new(50, Strategy::Spread).expect("policy")).expect_err("no fit");
    assert_eq!(
        refusal.to_string(),
        "no host fits vm X: 1 host in another site (not s0), 1 host offline, 1 host fenced, \
         1 host excluded by the request, 1 host without firmware profile x86_64-bios, \
         1 host not reaching zone(s) z0, 1 host without pool(s) local, \
         1 host already running a member of anti-affinity group web, 1 host would exceed the 50 % vCPU cap, \
         1 host would exceed the 50 % disk cap of pool(s) local"
    );
}

#[test]
fn the_vcpu_cap_counts_overcommit() {
    // 4 CPUs at 2:1 are 8 vCPUs; 80 % of them is 6.4.
    let mut view = view_of([HostSpec { cpus: 4, vcpu_overcommit_percent: 200, ..host("h") }]);
    for i in 0..6 {
        place_and_apply(&mut view, &PlacementRequest { memory_mib: 1, ..request(&format!("vm{i}")) }, &spread());
    }
    let seventh = PlacementRequest { memory_mib: 1, ..request("vm6") };
    let refusal = place(&view, &seventh, &spread()).expect_err("cap");
    assert_eq!(refusal.to_string(), "no host fits vm vm6: 1 host would exceed the 80 % vCPU cap");
}

#[test]
fn a_pool_counts_its_baseline_and_every_volume_placed_in_it() {
    let pool = PoolSpec { capacity_bytes: 100 * GIB, allocated_bytes: 50 * GIB };
    let mut view = view_of([HostSpec { pools: [("local".to_string(), pool)].into(), ..host("h") }]);
    let disks = |vm: &str, gib: u64| PlacementRequest {
        volumes: vec![
            VolumeDemand { pool: "local".to_string(), size_bytes: gib * GIB / 2 },
            VolumeDemand { pool: "local".to_string(), size_bytes: gib * GIB / 2 },
        ],
        ..request(vm)
    };
    place_and_apply(&mut view, &disks("a", 20), &spread());
    assert_eq!(view.host("h").and_then(|h| h.pool_allocated_bytes("local")), Some(70 * GIB));
    place_and_apply(&mut view, &disks("b", 10), &spread());
    assert!(place(&view, &disks("c", 2), &spread()).is_err(), "80 GiB of 100 is the cap");
    assert_eq!(view.tenant("t0").map(|t| t.used.disk_bytes), Some(30 * GIB));
}

#[test]
fn spread_picks_the_least_loaded_host_and_pack_the_most_loaded_that_fits() {
    let mut view = view_of([host("a"), host("b"), host("c")]);
    let pin = |vm: &str, host: &str, vcpus: u32| Decision {
        host: host.to_string(),
        previous_host: None,
        request: PlacementRequest { vcpus, ..request(vm) },
    };
    view.apply(&pin("on-a", "a", 2)).expect("apply");
    view.apply(&pin("on-c", "c", 5)).expect("apply");
    assert_eq!(place(&view, &request("x"), &spread()).expect("fits").host, "b");
    assert_eq!(place(&view, &request("x"), &pack()).expect("fits").host, "c");
    // c holds 5 of 8 vCPUs; 2 more would be 7, above 80 % of 8 (6.4), so pack falls back to a.
    let two = PlacementRequest { vcpus: 2, ..request("x") };
    assert_eq!(place(&view, &two, &pack()).expect("fits").host, "a");
}

#[test]
fn ties_go_to_the_lowest_host_id_in_both_strategies() {
    let view = view_of([host("c"), host("a"), host("b")]);
    assert_eq!(place(&view, &request("x"), &spread()).expect("fits").host, "a");
    assert_eq!(place(&view, &request("x"), &pack()).expect("fits").host, "a");
}

#[test]
fn anti_affinity_keeps_group_members_on_different_hosts() {
    let mut view = view_of([host("a"), host("b"), host("c")]);
    let member = |vm: &str| PlacementRequest { anti_affinity_group: Some("db".to_string()), ..request(vm) };
    let hosts: Vec<String> =
        ["m1", "m2", "m3"].iter().map(|vm| place_and_apply(&mut view, &member(vm), &pack()).host).collect();
    assert_eq!(hosts, ["a", "b", "c"]);
    let refusal = place(&view, &member("m4"), &pack()).expect_err("three hosts, three members");
    assert_eq!(refusal.to_string(), "no host fits vm m4: 3 hosts already running a member of anti-affinity group db");
}

#[test]
fn a_tenant_over_quota_is_refused_before_any_host_is_considered() {
    let mut view = view_of([host("a")]);
    view.set_tenant_limit("t1", Resources { vcpus: 4, memory_mib: 8192, disk_bytes: 0 });
    let tenant_vm = |vm: &str, vcpus: u32| PlacementRequest { tenant: "t1".to_string(), vcpus, ..request(vm) };
    place_and_apply(&mut view, &tenant_vm("a1", 3), &spread());
    let refusal = place(&view, &tenant_vm("a2", 2), &spread()).expect_err("quota");
    assert_eq!(
        refusal.to_string(),
        "no host fits vm a2: tenant 't1' quota vcpus exceeded: 3 in use + 2 requested > 4 allowed"
    );
    let stranger = PlacementRequest { tenant: "nobody".to_string(), ..request("s") };
    assert!(matches!(place(&view, &stranger, &spread()), Err(NoFit::UnknownTenant { .. })));
}

#[test]
fn the_cap_can_be_lowered_but_never_raised() {
    assert_eq!(Policy::default().cap_percent(), 80);
    assert_eq!(Policy::default().strategy(), Strategy::Spread);
    assert!(Policy::new(80, Strategy::Pack).is_ok());
    assert_eq!(
        Policy::new(81, Strategy::Spread).map_err(|e| e.to_string()),
        Err("cap_percent 81 is above the maximum of 80 %; the cap may only be lowered".to_string())
    );
    assert!(policy_with_cap(90).is_err(), "a configuration cannot raise the cap either");
    assert_eq!(policy_with_cap(60).map(|p| p.cap_percent()), Ok(60));
    let pack: Result<Strategy, serde::de::value::Error> = Strategy::deserialize("pack".into_deserializer());
    assert_eq!(pack, Ok(Strategy::Pack));
}

/// A policy deserialised from `{cap_percent: cap}` (strategy defaulted).
fn policy_with_cap(cap: u8) -> Result<Policy, serde::de::value::Error> {
    let fields = MapDeserializer::new([("cap_percent", cap)].into_iter());
    Policy::deserialize(fields)
}

/// 90 empty hosts without secure boot, then 10 loaded ones with it: a secure-boot VM's walk by
/// load passes all 90 non-candidates first, more than scoring the 10 candidates would cost, so
/// the planner scores them directly. It must still pick what the naive planner picks, and refuse
/// the same way when none of the 10 has room.
#[test]
fn a_long_walk_past_non_candidates_gives_the_same_answer() {
    let mut hosts: Vec<HostSpec> = (0..90).map(|i| host(&format!("plain{i:02}"))).collect();
    for i in 0..10 {
        let firmware_profiles = set(&["x86_64-bios", "x86_64-secure"]);
        hosts.push(HostSpec { firmware_profiles, ..host(&format!("secure{i}")) });
    }
    let mut view = view_of(hosts);
    for i in 0..10u32 {
        let filler = PlacementRequest { vcpus: 1 + i % 5, memory_mib: 512, ..request(&format!("filler{i}")) };
        let pinned = Decision { host: format!("secure{i}"), previous_host: None, request: filler };
        view.apply(&pinned).expect("apply");
    }
    let secure =
        |vm: &str, vcpus: u32| PlacementRequest { vcpus, firmware: "x86_64-secure".to_string(), ..request(vm) };
    for policy in [spread(), pack()] {
        let decided = place(&view, &secure("s", 1), &policy);
        assert_eq!(decided, place_naive(&view, &secure("s", 1), &policy));
        let expected = if policy.strategy() == Strategy::Spread { "secure0" } else { "secure4" };
        assert_eq!(decided.map(|d| d.host), Ok(expected.to_string()));
        let too_big = place(&view, &secure("big", 6), &policy);
        assert_eq!(too_big, place_naive(&view, &secure("big", 6), &policy));
        assert_eq!(
            too_big.map_err(|e| e.to_string()),
            Err("no host fits vm big: 90 hosts without firmware profile x86_64-secure, \
                 10 hosts would exceed the 80 % vCPU cap"
                .to_string())
        );
    }
}

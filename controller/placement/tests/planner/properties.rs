//! Property tests: random small clusters and random streams of placements, migrations,
//! evacuations, host state changes, host reshapes and removals, and releases, drawn from small pools
//! of names and sizes so that every filter, the cap and the quotas bite often.
//!
//! Checked on every step: the indexed planner decides exactly what the naive one decides (refusals
//! included); the same input gives the same decision; a refusal accounts for every host; no
//! decision breaks the cap, a quota or an anti-affinity group; the view's bookkeeping and index stay
//! exact. And a whole stream, run twice, gives the same outcomes.

use std::collections::BTreeMap;

use hci_placement::Strategy as Scoring;
use hci_placement::{
    place, place_naive, plan_evacuation, verify, BatchRefused, ClusterView, Host, HostSpec, HostState, NoFit,
    PlacementRequest, Policy, PoolSpec, Resources, VolumeDemand,
};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

use crate::support::*;

const ARCHES: &[&str] = &["x86_64", "x86_64", "x86_64", "aarch64"];
const SITES: &[&str] = &["s0", "s1"];
const FIRMWARE: &[&str] = &["bios", "uefi", "secure"];
const ZONES: &[&str] = &["z0", "z1", "z2"];
const HOST_POOLS: &[&str] = &["local", "ceph"];
const REQUEST_POOLS: &[&str] = &["local", "local", "local", "ceph", "ceph", "nvme"];
const TENANTS: &[&str] = &["t0", "t1", "t2", "t0", "t1", "t2", "t0", "t1", "t2", "unknown"];
const GROUPS: &[&str] = &["g0", "g1"];

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    select(pool).prop_map(str::to_string)
}

/// Mostly all of `pool`, sometimes fewer, rarely none.
fn names(pool: &'static [&'static str]) -> impl Strategy<Value = std::collections::BTreeSet<String>> {
    let size = prop_oneof![8 => Just(pool.len()), 3 => 1..pool.len(), 1 => Just(0)];
    size.prop_flat_map(move |size| subsequence(pool, size)).prop_map(|names| set(&names))
}

fn state() -> impl Strategy<Value = HostState> {
    prop_oneof![
        8 => Just(HostState::Ready),
        1 => Just(HostState::Maintenance),
        1 => Just(HostState::Offline),
        1 => Just(HostState::Fenced),
    ]
}

fn pool() -> impl Strategy<Value = PoolSpec> {
    let baseline = prop_oneof![3 => 0u64..=40, 1 => 0u64..=100];
    (0u64..200, baseline).prop_map(|(capacity_gib, baseline_percent)| PoolSpec {
        capacity_bytes: capacity_gib * GIB,
        allocated_bytes: capacity_gib * GIB * baseline_percent / 100,
    })
}

prop_compose! {
    fn host_spec()(
        site in pick(SITES),
        arch in pick(ARCHES),
        state in state(),
        firmware_profiles in names(FIRMWARE),
        zones in names(ZONES),
        cpus in prop_oneof![1 => 0u32..4, 4 => 4u32..32],
        vcpu_overcommit_percent in select(&[100u32, 150, 400][..]),
        memory_mib in prop_oneof![1 => 0u64..4, 4 => 4u64..64].prop_map(|gib| gib * 1024),
        pools in prop::collection::btree_map(pick(HOST_POOLS), pool(), 0..=2),
        all_pools in (pool(), pool()).prop_map(|(local, ceph)| BTreeMap::from([
            (HOST_POOLS[0].to_string(), local),
            (HOST_POOLS[1].to_string(), ceph),
        ])),
        most in prop::bool::weighted(0.6),
    ) -> HostSpec {
        HostSpec {
            id: String::new(), site, arch, state, firmware_profiles, zones, cpus, vcpu_overcommit_percent,
            memory_mib, pools: if most { all_pools } else { pools },
        }
    }
}

/// Mostly roomy, sometimes tight.
fn limit() -> impl Strategy<Value = Resources> {
    let scale = prop_oneof![3 => Just(4u64), 1 => Just(1u64)];
    (scale, 0u64..40, 0u64..64, 0u64..400).prop_map(|(scale, vcpus, memory_gib, disk_gib)| Resources {
        vcpus: vcpus * scale,
        memory_mib: memory_gib * 1024 * scale,
        disk_bytes: disk_gib * GIB * scale,
    })
}

#[derive(Debug, Clone)]
struct Cluster {
    hosts: Vec<HostSpec>,
    limits: Vec<Resources>,
}

fn cluster() -> impl Strategy<Value = Cluster> {
    cluster_of(0..14)
}

fn cluster_of(hosts: std::ops::Range<usize>) -> impl Strategy<Value = Cluster> {
    (prop::collection::vec(host_spec(), hosts), prop::collection::vec(limit(), 3)).prop_map(|(hosts, limits)| {
        let hosts = hosts.into_iter().enumerate().map(|(i, spec)| HostSpec { id: format!("h{i}"), ..spec }).collect();
        Cluster { hosts, limits }
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    let cap = prop_oneof![3 => Just(80u8), 1 => 0u8..=80];
    let strategy = prop_oneof![Just(Scoring::Spread), Just(Scoring::Pack)];
    (cap, strategy).prop_map(|(cap, strategy)| Policy::new(cap, strategy).unwrap_or_default())
}

/// A request without its vm id and with exclusions as host numbers.
#[derive(Debug, Clone)]
struct Shape {
    request: PlacementRequest,
    exclude: Vec<usize>,
}

prop_compose! {
    fn shape()(
        tenant in pick(TENANTS),
        vcpus in 0u32..6,
        memory_mib in (0u64..12).prop_map(|half_gib| half_gib * 512),
        arch in pick(ARCHES),
        firmware in pick(FIRMWARE),
        site in prop::option::weighted(0.3, pick(SITES)),
        zones in subsequence(ZONES, 0..=2).prop_map(|zones| set(&zones)),
        anti_affinity_group in prop::option::weighted(0.4, pick(GROUPS)),
        volumes in prop::collection::vec((pick(REQUEST_POOLS), 0u64..40), 0..3),
        exclude in prop::collection::vec(0usize..14, 0..2),
    ) -> Shape {
        let volumes = volumes.into_iter().map(|(pool, gib)| VolumeDemand { pool, size_bytes: gib * GIB }).collect();
        let request = PlacementRequest {
            vm: String::new(), tenant, vcpus, memory_mib, arch, firmware, site, zones, anti_affinity_group, volumes,
            exclude_hosts: Default::default(),
        };
        Shape { request, exclude }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Place(Box<Shape>, Policy),
    Migrate {
        vm: usize,
        exclude: Option<usize>,
        policy: Policy,
    },
    Evacuate {
        host: usize,
        policy: Policy,
    },
    SetState {
        host: usize,
        state: HostState,
    },
    /// The host's spec replaced (capacity, pools, zones... even arch or site), its VMs kept.
    Reshape {
        host: usize,
        spec: Box<HostSpec>,
    },
    Remove {
        host: usize,
    },
    Release {
        vm: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (shape(), policy()).prop_map(|(shape, policy)| Op::Place(Box::new(shape), policy)),
        3 => (any::<usize>(), prop::option::of(0usize..14), policy())
            .prop_map(|(vm, exclude, policy)| Op::Migrate { vm, exclude, policy }),
        2 => (0usize..14, policy()).prop_map(|(host, policy)| Op::Evacuate { host, policy }),
        2 => (0usize..14, state()).prop_map(|(host, state)| Op::SetState { host, state }),
        1 => (0usize..14, host_spec()).prop_map(|(host, spec)| Op::Reshape { host, spec: Box::new(spec) }),
        1 => (0usize..14).prop_map(|host| Op::Remove { host }),
        2 => any::<usize>().prop_map(|vm| Op::Release { vm }),
    ]
}

fn build(cluster: &Cluster) -> ClusterView {
    let mut view = ClusterView::new();
    for spec in &cluster.hosts {
        view.upsert_host(spec.clone());
    }
    for (tenant, limit) in ["t0", "t1", "t2"].iter().zip(&cluster.limits) {
        view.set_tenant_limit(tenant, *limit);
    }
    view
}

fn host_id(view: &ClusterView, n: usize) -> Option<String> {
    let count = view.host_count();
    (count > 0).then(|| view.hosts().nth(n % count).map(|h| h.id().to_string())).flatten()
}

fn placed_id(view: &ClusterView, n: usize) -> Option<String> {
    let count = view.placed_vms().count();
    (count > 0).then(|| view.placed_vms().nth(n % count).map(|(id, _)| id.to_string())).flatten()
}

/// Runs the stream on a fresh view, checking every step; returns each step's outcome.
fn run(cluster: &Cluster, ops: &[Op]) -> Vec<String> {
    let mut view = build(cluster);
    let mut log = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let outcome = match op {
            Op::Place(shape, policy) => {
                let mut request = PlacementRequest { vm: format!("vm{step}"), ..shape.request.clone() };
                request.exclude_hosts = shape.exclude.iter().filter_map(|&n| host_id(&view, n)).collect();
                decide_and_apply(&mut view, &request, policy)
            }
            Op::Migrate { vm, exclude, policy } => match placed_id(&view, *vm) {
                None => "no vm to migrate".to_string(),
                Some(vm) => {
                    let exclude = exclude.and_then(|n| host_id(&view, n));
                    let request = view.move_request(&vm, exclude).expect("placed");
                    decide_and_apply(&mut view, &request, policy)
                }
            },
            Op::Evacuate { host, policy } => match host_id(&view, *host) {
                None => "no host to evacuate".to_string(),
                Some(host) => evacuate(&mut view, &host, policy),
            },
            Op::SetState { host, state } => match host_id(&view, *host) {
                None => "no host".to_string(),
                Some(host) => format!("{:?}", view.set_host_state(&host, *state)),
            },
            Op::Reshape { host, spec } => match host_id(&view, *host) {
                None => "no host".to_string(),
                Some(id) => {
                    view.upsert_host(HostSpec { id, ..(**spec).clone() });
                    "reshaped".to_string()
                }
            },
            Op::Remove { host } => match host_id(&view, *host) {
                None => "no host".to_string(),
                Some(host) => format!("{:?}", view.remove_host(&host)),
            },
            Op::Release { vm } => match placed_id(&view, *vm) {
                None => "no vm to release".to_string(),
                Some(vm) => format!("{:?}", view.release(&vm)),
            },
        };
        check_bookkeeping(&view);
        log.push(outcome);
    }
    log
}

/// Plans with both planners (they must agree, and agree with themselves), checks the refusal or
/// applies the decision and checks the invariants around it.
fn decide_and_apply(view: &mut ClusterView, request: &PlacementRequest, policy: &Policy) -> String {
    let indexed = place(view, request, policy);
    assert_eq!(indexed, place_naive(view, request, policy), "indexed and naive planners differ");
    assert_eq!(indexed, place(&view.clone(), request, policy), "the same input decided twice differs");
    match indexed {
        Err(refusal) => {
            check_refusal(view, &refusal);
            refusal.to_string()
        }
        Ok(decision) => {
            assert_eq!(verify(view, &decision, policy), Ok(()));
            let before = view.clone();
            view.apply(&decision).expect("a fresh decision applies");
            check_decision(&before, view, policy);
            format!("{} -> {}", decision.request.vm, decision.host)
        }
    }
}

fn evacuate(view: &mut ClusterView, host: &str, policy: &Policy) -> String {
    let before = view.clone();
    let planned = plan_evacuation(view, host, policy);
    assert_eq!(*view, before, "planning an evacuation changed the view");
    match planned {
        Err(refusal) => {
            let BatchRefused::DoesNotFit { refusals, requested, .. } = &refusal else {
                panic!("a known host: {refusal}")
            };
            assert!(!refusals.is_empty() && refusals.len() <= *requested);
            for no_fit in refusals {
                assert!(view.host(host).is_some_and(|h| h.vms().contains(no_fit.vm())));
            }
            refusal.to_string()
        }
        Ok(decisions) => {
            for decision in &decisions {
                assert_eq!(verify(view, decision, policy), Ok(()), "a batch decision no longer fits in order");
                let step_before = view.clone();
                view.apply(decision).expect("a batch decision applies");
                check_decision(&step_before, view, policy);
            }
            assert!(view.host(host).is_some_and(|h| h.vms().is_empty()), "evacuated host still holds vms");
            format!("evacuated {host}: {decisions:?}")
        }
    }
}

/// Every host is accounted for, each once, under a constraint that excluded at least one host.
fn check_refusal(view: &ClusterView, refusal: &NoFit) {
    if let NoFit::NoHost { hosts, exclusions, .. } = refusal {
        assert_eq!(*hosts, view.host_count());
        assert_eq!(exclusions.iter().map(|e| e.hosts).sum::<usize>(), *hosts, "{refusal}");
        assert!(exclusions.iter().all(|e| e.hosts > 0));
        assert!(exclusions.windows(2).all(|pair| pair[0].constraint < pair[1].constraint));
    }
}

/// What a decision may change: within the cap stays within the cap, per host and dimension; no
/// tenant's usage grows beyond its limit; no two members of a group share a host.
fn check_decision(before: &ClusterView, after: &ClusterView, policy: &Policy) {
    let cap = policy.cap_percent();
    for host in before.hosts() {
        let now = after.host(host.id()).expect("hosts do not disappear");
        for (within_before, within_after) in
            dimensions_within_cap(host, cap).into_iter().zip(dimensions_within_cap(now, cap))
        {
            assert!(!within_before || within_after, "host {} broke the {cap} % cap", host.id());
        }
    }
    for (tenant, account) in after.tenants() {
        let used_before = before.tenant(tenant).map(|t| t.used).unwrap_or_default();
        let used = account.used;
        for (now, was, limit) in [
            (used.vcpus, used_before.vcpus, account.limit.vcpus),
            (used.memory_mib, used_before.memory_mib, account.limit.memory_mib),
            (used.disk_bytes, used_before.disk_bytes, account.limit.disk_bytes),
        ] {
            assert!(now <= limit || now <= was, "tenant {tenant} went over quota: {now} > {limit}");
        }
    }
    let mut members: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    for (_, placed) in after.placed_vms() {
        if let Some(group) = &placed.request.anti_affinity_group {
            let count = members.entry((group.as_str(), placed.host.as_str())).or_default();
            *count += 1;
            assert!(*count <= 1, "two members of {group} on {}", placed.host);
        }
    }
}

/// vCPU, memory, then each pool: whether the allocation is within `cap`, by the rule
/// written out independently of the crate.
fn dimensions_within_cap(host: &Host, cap: u8) -> Vec<bool> {
    let spec = host.spec();
    let cap = u128::from(cap);
    let vcpu_room = cap * u128::from(spec.cpus) * u128::from(spec.vcpu_overcommit_percent);
    let mut within = vec![
        u128::from(host.allocated_vcpus()) * 100 * 100 <= vcpu_room,
        u128::from(host.allocated_memory_mib()) * 100 <= cap * u128::from(spec.memory_mib),
    ];
    for (name, pool) in &spec.pools {
        let allocated = host.pool_allocated_bytes(name).unwrap_or(0);
        within.push(u128::from(allocated) * 100 <= cap * u128::from(pool.capacity_bytes));
    }
    within
}

/// Hosts and tenants hold exactly the sums of what is placed on them; the index is exact.
fn check_bookkeeping(view: &ClusterView) {
    assert!(view.index_is_consistent(), "the candidate index drifted from the hosts");
    let mut per_host: BTreeMap<&str, (u64, u64, usize)> = BTreeMap::new();
    let mut per_tenant: BTreeMap<&str, Resources> = BTreeMap::new();
    for (vm, placed) in view.placed_vms() {
        let footprint = placed.request.footprint();
        let host = per_host.entry(placed.host.as_str()).or_default();
        *host = (host.0 + footprint.vcpus, host.1 + footprint.memory_mib, host.2 + 1);
        let tenant = per_tenant.entry(placed.request.tenant.as_str()).or_default();
        tenant.vcpus += footprint.vcpus;
        tenant.memory_mib += footprint.memory_mib;
        tenant.disk_bytes += footprint.disk_bytes;
        assert!(view.host(&placed.host).is_some_and(|h| h.vms().contains(vm)));
    }
    for host in view.hosts() {
        let expected = per_host.get(host.id()).copied().unwrap_or_default();
        assert_eq!((host.allocated_vcpus(), host.allocated_memory_mib(), host.vms().len()), expected);
    }
    for (tenant, account) in view.tenants() {
        assert_eq!(account.used, per_tenant.get(tenant).copied().unwrap_or_default(), "tenant {tenant}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_streams_keep_every_invariant_and_both_planners_agree(
        cluster in cluster(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let first = run(&cluster, &ops);
        let second = run(&cluster, &ops);
        prop_assert_eq!(first, second, "the same stream gave different outcomes");
    }

    #[test]
    fn placing_on_a_busy_cluster_agrees_with_the_naive_planner(
        cluster in cluster(),
        shapes in prop::collection::vec((shape(), policy()), 20..80),
    ) {
        // Longer streams of placements only: fuller hosts, so the cap decides more often.
        let ops: Vec<Op> = shapes.into_iter().map(|(shape, policy)| Op::Place(Box::new(shape), policy)).collect();
        run(&cluster, &ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Enough hosts that the indexed planner's walk often runs past its budget and scores the
    /// candidates directly instead: both ways must agree with the naive planner.
    #[test]
    fn larger_clusters_agree_with_the_naive_planner(
        cluster in cluster_of(40..160),
        ops in prop::collection::vec(op(), 100..300),
    ) {
        run(&cluster, &ops);
    }
}

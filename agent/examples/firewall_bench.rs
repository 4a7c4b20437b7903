//! Benchmark of the agent's firewall (bench/firewall/run.sh runs it in a scratch network namespace):
//! the full atomic apply of the generated table (sets, `nft -j -f`) and one VM's change (element
//! edits), beside a naive table with one rule per interface loaded with `nft -f`, in the same run.
//! Prints a report; every figure is wall time around the call the agent makes: through its
//! long-lived libnftables session, and through one `nft` process per call (the fallback, and what
//! the agent did before the session) for comparison.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hci_agent::firewall::model::{FirewallModel, Interface, Policy, Zone};
use hci_agent::firewall::nft::NftFirewall;
use hci_agent::firewall::ruleset::{from_chain, full_table, interface_changes, InterfaceChange};
use hci_agent::firewall::Firewall;
use hci_shared::names::{parse_cidr, PortRange};
use hci_shared::resources::Protocol;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn model(interfaces: usize, zones: usize, policies: usize) -> FirewallModel {
    let zones: Vec<Zone> = (0..zones)
        .map(|z| Zone {
            name: format!("z{z}"),
            isolated: false,
            cidr: parse_cidr(&format!("10.{z}.0.0/16")).expect("cidr"),
            deny_intra_zone: z % 4 == 3,
        })
        .collect();
    let n = zones.len();
    let policies = (0..policies)
        .map(|p| Policy {
            name: format!("p{p}"),
            from_zone: format!("z{}", p % n),
            to_zone: format!("z{}", (p / n + p + 1) % n),
            protocol: [Protocol::Tcp, Protocol::Udp, Protocol::Icmp, Protocol::Tcp][p % 4],
            ports: if p % 4 == 2 {
                Vec::new()
            } else {
                vec![PortRange { lo: 443, hi: 443 }, PortRange { lo: 8000 + p as u16, hi: 8100 + p as u16 }]
            },
        })
        .collect();
    let interfaces = (0..interfaces).map(|i| interface(i, n)).collect();
    FirewallModel { zones, policies, interfaces, fabric_ifaces: vec!["fab0".into()] }
}

fn interface(i: usize, zones: usize) -> Interface {
    let host = i / zones + 2;
    Interface {
        ifname: format!("b{i}"),
        zone: format!("z{}", i % zones),
        ip: Ipv4Addr::new(10, (i % zones) as u8, (host / 250) as u8, (host % 250) as u8 + 2),
    }
}

/// The naive table: the same zone chains, but one rule per interface in `forward` (its tap and
/// address, then to its zone's chain), written in nft's own syntax.
fn naive_table(model: &FirewallModel) -> String {
    let mut out = String::from("add table inet hcinaive\ndelete table inet hcinaive\ntable inet hcinaive {\n");
    out.push_str("  chain forward {\n    type filter hook forward priority 0; policy drop;\n");
    out.push_str("    ct state established,related accept\n");
    for i in &model.interfaces {
        out.push_str(&format!("    iifname \"{}\" ip saddr {} goto {}\n", i.ifname, i.ip, from_chain(&i.zone)));
    }
    out.push_str("  }\n");
    for zone in &model.zones {
        out.push_str(&format!("  chain {} {{\n", from_chain(&zone.name)));
        for policy in model.policies.iter().filter(|p| p.from_zone == zone.name) {
            let to = model.zone(&policy.to_zone).expect("zone");
            let l4 = match policy.protocol {
                Protocol::Tcp => "meta l4proto tcp ",
                Protocol::Udp => "meta l4proto udp ",
                Protocol::Icmp => "meta l4proto icmp ",
                Protocol::Any => "",
            };
            let ports: Vec<String> = policy.ports.iter().map(|r| format!("{}-{}", r.lo, r.hi)).collect();
            let dport = if ports.is_empty() { String::new() } else { format!("th dport {{ {} }} ", ports.join(", ")) };
            out.push_str(&format!("    ip daddr {} {l4}{dport}counter accept\n", to.cidr));
        }
        if !zone.deny_intra_zone {
            out.push_str(&format!("    ip daddr {} accept\n", zone.cidr));
        }
        out.push_str("    drop\n  }\n");
    }
    out.push_str("}\n");
    out
}

fn nft(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nft");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("nft");
    assert!(out.status.success(), "nft {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let started = Instant::now();
    let value = f();
    (started.elapsed(), value)
}

struct Stats(Vec<Duration>);

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v = self.0.clone();
        v.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let p90 = v[(v.len() * 9 / 10).min(v.len() - 1)];
        write!(f, "median {:.2} ms, p90 {:.2} ms, min {:.2} ms (n={})", ms(v[v.len() / 2]), ms(p90), ms(v[0]), v.len())
    }
}

fn one_vm_changes(firewall: &NftFirewall, model: &FirewallModel, repeat: usize) -> (Stats, Stats) {
    let (mut adds, mut removes) = (Vec::new(), Vec::new());
    for k in 0..repeat {
        let vm = interface(model.interfaces.len() + k, model.zones.len());
        let add = interface_changes(&[InterfaceChange::Add(vm.clone())]);
        let remove = interface_changes(&[InterfaceChange::Remove(vm)]);
        adds.push(time(|| firewall.apply_changes(&add).expect("add")).0);
        removes.push(time(|| firewall.apply_changes(&remove).expect("remove")).0);
    }
    (Stats(adds), Stats(removes))
}

fn main() {
    let interfaces = setting("BENCH_INTERFACES", 10_000);
    let zones = setting("BENCH_ZONES", 8);
    let policies = setting("BENCH_POLICIES", 20);
    let repeat = setting("BENCH_REPEAT", 10);
    let session = NftFirewall::host();
    let process = NftFirewall::process(None);
    let big = model(interfaces, zones, policies);
    big.validate().expect("valid model");
    println!("firewall bench: {interfaces} interfaces, {zones} zones, {policies} policies, {repeat} repetitions");
    println!("the agent's transport: {}", session.transport());

    let (generate, batch) = time(|| full_table(&big));
    let (serialize, json) = time(|| serde_json::to_vec(&batch).expect("json"));
    println!(
        "generate the table: {:.2} ms; serialize to JSON: {:.2} ms ({} KiB)",
        ms(generate),
        ms(serialize),
        json.len() / 1024
    );

    for firewall in [&session, &process] {
        let mut full = Vec::new();
        for _ in 0..repeat {
            full.push(time(|| firewall.apply_full(&batch).expect("full apply")).0);
        }
        println!("sets ({}): full apply (replaces the table): {}", firewall.transport(), Stats(full));
    }
    // The same table in nft's own syntax (as the kernel lists it): how much of the apply is JSON.
    let native = format!("add table inet hci\ndelete table inet hci\n{}", nft(&["list", "table", "inet", "hci"], ""));
    let mut native_full = Vec::new();
    for _ in 0..repeat {
        native_full.push(time(|| nft(&["-f", "-"], &native)).0);
    }
    println!("sets: the same table in nft syntax (nft -f): {}", Stats(native_full));
    for firewall in [&session, &process] {
        let (adds, removes) = one_vm_changes(firewall, &big, repeat * 5);
        println!("sets ({}): one VM added (3 element adds, one batch): {adds}", firewall.transport());
        println!("sets ({}): one VM removed (3 element deletes, one batch): {removes}", firewall.transport());
    }
    for size in [100, 1000] {
        let small = model(size, zones, policies);
        session.apply_full(&full_table(&small)).expect("full apply");
        let (adds, removes) = one_vm_changes(&session, &small, repeat * 5);
        println!("sets ({}): one VM added at {size} interfaces: {adds}; removed: {removes}", session.transport());
    }
    nft(&["delete", "table", "inet", "hci"], "");

    let naive = naive_table(&big);
    let mut naive_full = Vec::new();
    for _ in 0..repeat {
        naive_full.push(time(|| nft(&["-f", "-"], &naive)).0);
    }
    println!("naive: full apply ({} rules in forward, nft -f): {}", interfaces + 1, Stats(naive_full));
    let (mut naive_add, mut naive_remove) = (Vec::new(), Vec::new());
    for k in 0..repeat * 5 {
        let vm = interface(interfaces + k, zones);
        let rule = format!("iifname \"{}\" ip saddr {} goto {}", vm.ifname, vm.ip, from_chain(&vm.zone));
        let (took, echoed) =
            time(|| nft(&["--echo", "--handle", "insert", "rule", "inet", "hcinaive", "forward", &rule], ""));
        naive_add.push(took);
        let handle = echoed.rsplit("# handle ").next().expect("handle").trim().to_string();
        naive_remove.push(time(|| nft(&["delete", "rule", "inet", "hcinaive", "forward", "handle", &handle], "")).0);
    }
    println!("naive: one VM added (insert rule): {}", Stats(naive_add));
    println!("naive: one VM removed (delete rule by handle): {}", Stats(naive_remove));
    nft(&["delete", "table", "inet", "hcinaive"], "");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

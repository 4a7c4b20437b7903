//! Argument-parsing tests: every verb parses as the contract spells it, and bad values are
//! usage errors (exit 2).

use super::*;
use crate::commands::cluster::MembersCmd;
use crate::commands::dr::DrMode;
use crate::commands::host::JoinTokenCmd;
use crate::commands::zone::{IntraZoneArg, KindArg};
use crate::commands::zone_policy::ProtocolArg;
use clap::CommandFactory;

fn parse(args: &[&str]) -> Cli {
    let mut argv = vec!["hcictl"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

fn usage_error(args: &[&str]) {
    let mut argv = vec!["hcictl"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv) {
        Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
        Err(e) => assert_eq!(e.exit_code(), 2, "{args:?}: {e}"),
    }
}

#[test]
fn definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn global_options() {
    let cli = parse(&["--url", "http://a:1,http://b:2", "-o", "json", "--stale", "--token", "t", "tenant", "list"]);
    assert_eq!(cli.global.url.as_deref(), Some("http://a:1,http://b:2"));
    assert_eq!(cli.global.output, Format::Json);
    assert!(cli.global.stale);
    assert_eq!(cli.global.token.as_deref(), Some("t"));
    // Global options are accepted after the verb too.
    let cli = parse(&["vm", "list", "-o", "json", "--token-file", "/x", "--timeout", "5"]);
    assert_eq!(cli.global.output, Format::Json);
    assert_eq!(cli.global.token_file, Some(PathBuf::from("/x")));
    assert_eq!(cli.global.timeout, 5);
    usage_error(&["-o", "yaml", "vm", "list"]);
    usage_error(&["--token", "a", "--token-file", "f", "vm", "list"]);
    usage_error(&["--timeout", "0", "vm", "list"]);
    usage_error(&[]);
    usage_error(&["nonsense"]);
}

#[test]
fn cluster_verbs() {
    assert!(matches!(parse(&["cluster", "status"]).command, Command::Cluster(ClusterCmd::Status)));
    match parse(&["cluster", "members", "add", "--id", "3", "--addr", "127.0.0.1:7003"]).command {
        Command::Cluster(ClusterCmd::Members(MembersCmd::Add { id, addr })) => {
            assert_eq!((id, addr.as_str()), (3, "127.0.0.1:7003"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse(&["cluster", "members", "remove", "2"]).command,
        Command::Cluster(ClusterCmd::Members(MembersCmd::Remove { id: 2 }))
    ));
    usage_error(&["cluster", "members", "add", "--id", "x", "--addr", "a:1"]);
    usage_error(&["cluster", "members", "add", "--addr", "a:1"]);
    usage_error(&["cluster", "members", "remove", "-1"]);
}

#[test]
fn tenant_verbs() {
    match parse(&["tenant", "create", "finance", "--vcpus", "16", "--memory-mib", "32768", "--disk-gib", "500"]).command
    {
        Command::Tenant(TenantCmd::Create { name, vcpus, memory_mib, disk_gib, description }) => {
            assert_eq!((name.as_str(), vcpus, memory_mib, disk_gib), ("finance", 16, 32768, 500));
            assert_eq!(description, "");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse(&["tenant", "list"]).command, Command::Tenant(TenantCmd::List)));
    assert!(matches!(parse(&["tenant", "show", "a"]).command, Command::Tenant(TenantCmd::Show { .. })));
    match parse(&["tenant", "update", "a", "--vcpus", "8", "--description", "new"]).command {
        Command::Tenant(TenantCmd::Update { name, description, vcpus, memory_mib, disk_gib, if_match }) => {
            assert_eq!(name, "a");
            assert_eq!(description.as_deref(), Some("new"));
            assert_eq!((vcpus, memory_mib, disk_gib, if_match), (Some(8), None, None, None));
        }
        other => panic!("{other:?}"),
    }
    match parse(&["tenant", "delete", "a", "--if-match", "\"4\""]).command {
        Command::Tenant(TenantCmd::Delete { name, if_match }) => {
            assert_eq!((name.as_str(), if_match.as_deref()), ("a", Some("\"4\"")));
        }
        other => panic!("{other:?}"),
    }
    usage_error(&["tenant", "create", "a", "--vcpus", "16", "--memory-mib", "1"]);
    usage_error(&["tenant", "create", "a", "--vcpus", "-1", "--memory-mib", "1", "--disk-gib", "1"]);
    usage_error(&["tenant", "create", "a", "--vcpus", "lots", "--memory-mib", "1", "--disk-gib", "1"]);
    usage_error(&["tenant", "show"]);
}

#[test]
fn zone_and_policy_verbs() {
    match parse(&[
        "zone",
        "create",
        "dmz",
        "--tenant",
        "fin",
        "--cidr",
        "10.0.0.0/24",
        "--kind",
        "isolated",
        "--vni",
        "7",
        "--intra-zone",
        "deny",
    ])
    .command
    {
        Command::Zone(ZoneCmd::Create { name, tenant, cidr, kind, vni, vlan, mtu: None, intra_zone }) => {
            assert_eq!((name.as_str(), tenant.as_str(), cidr.as_str()), ("dmz", "fin", "10.0.0.0/24"));
            assert_eq!((kind, vni, vlan, intra_zone), (KindArg::Isolated, Some(7), None, IntraZoneArg::Deny));
        }
        other => panic!("{other:?}"),
    }
    match parse(&["zone", "create", "dmz", "--tenant", "fin", "--cidr", "10.0.0.0/24"]).command {
        Command::Zone(ZoneCmd::Create { kind, vni, intra_zone, .. }) => {
            assert_eq!((kind, vni, intra_zone), (KindArg::Normal, None, IntraZoneArg::Allow))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse(&["zone", "list"]).command, Command::Zone(ZoneCmd::List { tenant: None })));
    assert!(matches!(parse(&["zone", "show", "dmz"]).command, Command::Zone(ZoneCmd::Show { .. })));
    assert!(matches!(parse(&["zone", "delete", "dmz"]).command, Command::Zone(ZoneCmd::Delete { .. })));
    usage_error(&["zone", "create", "dmz", "--tenant", "fin", "--cidr", "c", "--kind", "open"]);
    match parse(&["zone", "create", "lan", "--tenant", "fin", "--cidr", "10.1.0.0/24", "--vlan", "100"]).command {
        Command::Zone(ZoneCmd::Create { vni, vlan, .. }) => assert_eq!((vni, vlan), (None, Some(100))),
        other => panic!("{other:?}"),
    }
    match parse(&["zone", "create", "lan", "--tenant", "fin", "--cidr", "10.1.0.0/24", "--mtu", "9000"]).command {
        Command::Zone(ZoneCmd::Create { mtu, .. }) => assert_eq!(mtu, Some(9000)),
        other => panic!("{other:?}"),
    }
    usage_error(&["zone", "create", "lan", "--tenant", "fin", "--cidr", "c", "--vlan", "100", "--vni", "7"]);

    match parse(&["zone-policy", "create", "--from", "a", "--to", "b", "--protocol", "tcp", "--ports", "22,80"]).command
    {
        Command::ZonePolicy(ZonePolicyCmd::Create { name, from_zone, to_zone, protocol, ports }) => {
            assert_eq!((from_zone.as_str(), to_zone.as_str(), ports.as_str()), ("a", "b", "22,80"));
            assert_eq!((protocol, name), (ProtocolArg::Tcp, None));
        }
        other => panic!("{other:?}"),
    }
    match parse(&["zone-policy", "create", "--from", "a", "--to", "b", "--protocol", "icmp", "--name", "ping"]).command
    {
        Command::ZonePolicy(ZonePolicyCmd::Create { name, ports, .. }) => {
            assert_eq!((name.as_deref(), ports.as_str()), (Some("ping"), ""));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse(&["zone-policy", "list"]).command, Command::ZonePolicy(ZonePolicyCmd::List)));
    assert!(matches!(parse(&["zone-policy", "show", "p1"]).command, Command::ZonePolicy(ZonePolicyCmd::Show { .. })));
    assert!(matches!(
        parse(&["zone-policy", "delete", "p1"]).command,
        Command::ZonePolicy(ZonePolicyCmd::Delete { .. })
    ));
    usage_error(&["zone-policy", "create", "--from", "a", "--to", "b", "--protocol", "sctp"]);
    usage_error(&["zone-policy", "create", "--from", "a", "--protocol", "tcp"]);
}

#[test]
fn volume_verbs() {
    match parse(&["volume", "create", "data", "--tenant", "fin", "--size-gib", "20"]).command {
        Command::Volume(VolumeCmd::Create { name, tenant, size_gib, pool, image, .. }) => {
            assert_eq!((name.as_str(), tenant.as_str(), size_gib), ("data", "fin", 20));
            assert_eq!((pool.as_str(), image), ("default", None));
        }
        other => panic!("{other:?}"),
    }
    match parse(&["volume", "list", "--tenant", "fin"]).command {
        Command::Volume(VolumeCmd::List { tenant }) => {
            assert_eq!(tenant.as_deref(), Some("fin"))
        }
        other => panic!("{other:?}"),
    }
    match parse(&["volume", "show", "data", "--tenant", "fin"]).command {
        Command::Volume(VolumeCmd::Show { target }) => {
            assert_eq!((target.id.as_str(), target.tenant.as_deref()), ("data", Some("fin")));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse(&["volume", "delete", "v1"]).command, Command::Volume(VolumeCmd::Delete { .. })));
    match parse(&["volume", "resize", "v1", "--size-gib", "40"]).command {
        Command::Volume(VolumeCmd::Resize { size_gib, .. }) => assert_eq!(size_gib, 40),
        other => panic!("{other:?}"),
    }
    match parse(&["volume", "snapshot", "v1", "--name", "before"]).command {
        Command::Volume(VolumeCmd::Snapshot { name, target }) => {
            assert_eq!((name.as_str(), target.id.as_str()), ("before", "v1"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse(&["volume", "clone", "v1", "--name", "copy"]).command,
        Command::Volume(VolumeCmd::Clone { .. })
    ));
    usage_error(&["volume", "resize", "v1"]);
    usage_error(&["volume", "create", "data", "--tenant", "fin", "--size-gib", "big"]);
}

#[test]
fn vm_verbs() {
    let cli = parse(&[
        "vm",
        "create",
        "web",
        "--tenant",
        "fin",
        "--vcpus",
        "2",
        "--memory-mib",
        "2048",
        "--volume",
        "boot",
        "--volume",
        "data",
        "--nic",
        "dmz",
        "--nic",
        "app",
        "--anti-affinity-group",
        "web",
    ]);
    match cli.command {
        Command::Vm(VmCmd::Create {
            name,
            tenant,
            vcpus,
            memory_mib,
            arch,
            firmware,
            volumes,
            nics,
            anti_affinity_group,
            ..
        }) => {
            assert_eq!((name.as_str(), tenant.as_str(), vcpus, memory_mib), ("web", "fin", 2, 2048));
            assert_eq!((arch.as_str(), firmware), ("x86_64", None));
            assert_eq!(volumes, ["boot", "data"]);
            assert_eq!(nics, ["dmz", "app"]);
            assert_eq!(anti_affinity_group.as_deref(), Some("web"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse(&["vm", "list"]).command, Command::Vm(VmCmd::List { tenant: None })));
    for verb in ["show", "delete", "start", "stop", "reboot"] {
        let cli = parse(&["vm", verb, "web", "--tenant", "fin"]);
        let Command::Vm(cmd) = cli.command else { panic!("{verb}") };
        let target = match cmd {
            VmCmd::Show { target } | VmCmd::Start { target } | VmCmd::Stop { target } | VmCmd::Reboot { target } => {
                target
            }
            VmCmd::Delete { target, .. } => target,
            other => panic!("{other:?}"),
        };
        assert_eq!((target.id.as_str(), target.tenant.as_deref()), ("web", Some("fin")));
    }
    match parse(&["vm", "migrate", "web", "--host", "h2", "--live"]).command {
        Command::Vm(VmCmd::Migrate { host, live, .. }) => {
            assert_eq!((host.as_deref(), live), (Some("h2"), true))
        }
        other => panic!("{other:?}"),
    }
    match parse(&["vm", "migrate", "web"]).command {
        Command::Vm(VmCmd::Migrate { host, live, .. }) => {
            assert_eq!((host, live), (None, false))
        }
        other => panic!("{other:?}"),
    }
    usage_error(&["vm", "create", "web", "--tenant", "fin", "--vcpus", "2"]);
    usage_error(&["vm", "start"]);
}

#[test]
fn host_audit_dr_verbs() {
    assert!(matches!(parse(&["host", "list"]).command, Command::Host(HostCmd::List)));
    assert!(matches!(parse(&["host", "show", "h1"]).command, Command::Host(HostCmd::Show { .. })));
    match parse(&["host", "join-token", "create", "--ttl", "600"]).command {
        Command::Host(HostCmd::JoinToken(JoinTokenCmd::Create { ttl, site })) => {
            assert_eq!((ttl, site), (Some(600), None))
        }
        other => panic!("{other:?}"),
    }
    usage_error(&["host", "join-token", "create", "--ttl", "0"]);
    match parse(&["audit", "--after", "10", "--limit", "5"]).command {
        Command::Audit(a) => assert_eq!((a.after, a.limit), (Some(10), Some(5))),
        other => panic!("{other:?}"),
    }
    match parse(&["audit"]).command {
        Command::Audit(a) => assert_eq!((a.after, a.limit), (None, None)),
        other => panic!("{other:?}"),
    }
    usage_error(&["audit", "--limit", "0"]);
    match parse(&["dr", "failover", "--group", "payroll", "--mode", "test"]).command {
        Command::Dr(DrCmd::Failover { group, mode, recovery_point }) => {
            assert_eq!((group.as_str(), mode, recovery_point), ("payroll", DrMode::Test, None));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse(&["dr", "cleanup", "--group", "payroll"]).command, Command::Dr(DrCmd::Cleanup { .. })));
    assert!(matches!(parse(&["dr", "report", "r1"]).command, Command::Dr(DrCmd::Report { .. })));
    usage_error(&["dr", "failover", "--group", "g", "--mode", "panic"]);
    usage_error(&["dr", "failover", "--mode", "test"]);
}

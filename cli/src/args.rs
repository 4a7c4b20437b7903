//! The command line: global options and the top-level verbs.
//!
//! Each resource's own subcommands live next to the code that runs them (`commands/*.rs`); this
//! file only assembles them, so `hcictl --help` reads like the contract's verb list.

use std::path::PathBuf;

use clap::{value_parser, Args, Parser, Subcommand};

use crate::commands::{
    audit::AuditArgs, cluster::ClusterCmd, dr::DrCmd, host::HostCmd, tenant::TenantCmd, vm::VmCmd, volume::VolumeCmd,
    zone::ZoneCmd, zone_policy::ZonePolicyCmd,
};
use crate::output::Format;

/// hcictl: operate an hci e-government cloud site through its controller API.
///
/// Exit status: 0 success, 1 request refused (4xx, or a server error), 2 usage error,
/// 3 cluster unreachable (every URL down, or every one answered 503).
#[derive(Debug, Parser)]
#[command(name = "hcictl", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Controller base URL(s), comma separated; the next is tried when one is unreachable or
    /// answers 503 (no leader)
    #[arg(long, env = "HCI_URL", global = true, value_name = "URL[,URL...]")]
    pub url: Option<String>,
    /// Bearer token [default: $HCI_TOKEN]. Visible in `ps`; prefer HCI_TOKEN or --token-file
    #[arg(long, global = true, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// Read the bearer token from FILE (e.g. a controller's DIR/admin.token); overrides HCI_TOKEN
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Output format
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Serve reads from the member asked, without a leader round-trip (may be slightly behind)
    #[arg(long, global = true)]
    pub stale: bool,
    /// Seconds to wait for each controller's answer
    #[arg(long, global = true, env = "HCI_TIMEOUT", value_name = "SECONDS", default_value_t = 30,
          value_parser = value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The controller cluster: status and membership
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Tenants (departments) and their quotas
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Security zones: the networks VMs attach to
    #[command(subcommand)]
    Zone(ZoneCmd),
    /// Allowed flows between zones
    #[command(subcommand)]
    ZonePolicy(ZonePolicyCmd),
    /// Block volumes
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Virtual machines
    #[command(subcommand)]
    Vm(VmCmd),
    /// Hypervisor hosts
    #[command(subcommand)]
    Host(HostCmd),
    /// The audit log of accepted and refused mutations
    Audit(AuditArgs),
    /// Disaster recovery: failover drills, cleanup and reports
    #[command(subcommand)]
    Dr(DrCmd),
}

#[cfg(test)]
mod tests;

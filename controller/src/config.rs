//! Command-line flags and the `--config` TOML file of `hci-controller`; flags override the file.
//!
//! It exists so that every setting has one name in both places and one default. It must never read
//! anything but the flags and the named file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde::Deserialize;

/// Bounds of `--host-lease-ms`: shorter leases flap on a loaded machine, longer ones hide failures.
const MIN_HOST_LEASE_MS: u64 = 500;
const MAX_HOST_LEASE_MS: u64 = 600_000;
/// Bounds of `--ha-restart-margin-ms`: the agent's time to ask its peers and power its VMs off
/// after it gave up on the controllers (see [`Config::fence_after_ms`]).
const MIN_HA_RESTART_MARGIN_MS: u64 = 100;
const MAX_HA_RESTART_MARGIN_MS: u64 = 600_000;

#[derive(Debug, Parser)]
#[command(name = "hci-controller", version, about = "One member of an hci site's controller cluster")]
pub struct Flags {
    /// TOML file with any of the settings below (flags override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This member's Raft id (a positive integer, unique in the cluster).
    #[arg(long)]
    pub id: Option<u64>,
    /// Address serving the operator API, /metrics and member-to-member traffic.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,
    /// Address other members and forwarded requests use to reach this one (default: --listen).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<SocketAddr>,
    /// Directory holding the RocksDB database and admin.token.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Site name written at bootstrap (e.g. primary, dr).
    #[arg(long)]
    pub site: Option<String>,
    /// On the first start of the first member: create a one-member cluster and an admin token.
    #[arg(long)]
    pub bootstrap: bool,
    /// Build a snapshot (and purge the log behind it) every N applied entries.
    #[arg(long, value_name = "N")]
    pub snapshot_every: Option<u64>,
    /// Leader heartbeat interval in milliseconds.
    #[arg(long, value_name = "MS")]
    pub heartbeat_ms: Option<u64>,
    /// Minimum election timeout in milliseconds (the maximum is twice this).
    #[arg(long, value_name = "MS")]
    pub election_timeout_ms: Option<u64>,
    /// How long a write may wait for a majority before it is answered 503.
    #[arg(long, value_name = "MS")]
    pub write_timeout_ms: Option<u64>,
    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// A host whose heartbeats stop for this many milliseconds goes offline (agents are asked to
    /// send one every quarter of it).
    #[arg(long, value_name = "MS")]
    pub host_lease_ms: Option<u64>,
    /// HA: an offline host's VMs are restarted elsewhere (and the host fenced) once it has been
    /// silent for the lease plus this many milliseconds (100-600000, default half the lease).
    #[arg(long, value_name = "MS")]
    pub ha_restart_margin_ms: Option<u64>,
    /// Placement: no host's vCPUs (against overcommit), memory or pool disk is allocated beyond this
    /// percentage (1-80, default 80; the cap can only be lowered).
    #[arg(long, value_name = "PERCENT")]
    pub placement_cap_percent: Option<u8>,
    /// Placement: `spread` (the least loaded host that fits, the default) or `pack` (the most loaded).
    #[arg(long, value_name = "STRATEGY")]
    pub placement_strategy: Option<String>,
    #[command(subcommand)]
    pub command: Option<Tool>,
}

#[derive(Debug, Subcommand)]
pub enum Tool {
    /// Print the OpenAPI document of the HTTP API and exit.
    Openapi,
}

/// The TOML file: the same settings as the flags, under the same names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub id: Option<u64>,
    pub listen: Option<SocketAddr>,
    pub advertise: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub site: Option<String>,
    pub bootstrap: Option<bool>,
    pub snapshot_every: Option<u64>,
    pub heartbeat_ms: Option<u64>,
    pub election_timeout_ms: Option<u64>,
    pub write_timeout_ms: Option<u64>,
    pub log_format: Option<String>,
    pub host_lease_ms: Option<u64>,
    pub ha_restart_margin_ms: Option<u64>,
    pub placement_cap_percent: Option<u8>,
    pub placement_strategy: Option<String>,
}

/// The effective settings of one member.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: u64,
    pub listen: SocketAddr,
    pub advertise: SocketAddr,
    pub data_dir: PathBuf,
    pub site: String,
    pub bootstrap: bool,
    pub snapshot_every: u64,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    pub write_timeout_ms: u64,
    pub log_format: String,
    pub host_lease_ms: u64,
    /// How long past the lease a silent host waits before HA fences it and restarts its VMs.
    pub ha_restart_margin_ms: u64,
    /// The placement cap and strategy; every decision carries its cap into the log.
    pub placement: hci_placement::Policy,
}

/// `--placement-cap-percent` and `--placement-strategy`.
fn placement_policy(flags: &Flags, file: &FileConfig) -> Result<hci_placement::Policy, ConfigError> {
    use hci_placement::{Policy, Strategy, MAX_CAP_PERCENT};
    let cap = flags.placement_cap_percent.or(file.placement_cap_percent).unwrap_or(MAX_CAP_PERCENT);
    if cap == 0 || cap > MAX_CAP_PERCENT {
        return Err(ConfigError::Invalid {
            field: "placement-cap-percent",
            why: format!("{cap} is outside 1-{MAX_CAP_PERCENT}"),
        });
    }
    let strategy = match flags.placement_strategy.as_deref().or(file.placement_strategy.as_deref()) {
        None | Some("spread") => Strategy::Spread,
        Some("pack") => Strategy::Pack,
        Some(other) => {
            return Err(ConfigError::Invalid {
                field: "placement-strategy",
                why: format!("'{other}' is not spread or pack"),
            })
        }
    };
    Policy::new(cap, strategy).map_err(|e| ConfigError::Invalid { field: "placement-cap-percent", why: e.to_string() })
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("parsing {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("--{0} is required (flag or config file)")]
    Missing(&'static str),
    #[error("--{field}: {why}")]
    Invalid { field: &'static str, why: String },
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.display().to_string(), source })
}

impl Config {
    pub fn resolve(flags: &Flags) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let placement = placement_policy(flags, &file)?;
        let id = flags.id.or(file.id).ok_or(ConfigError::Missing("id"))?;
        if id == 0 {
            return Err(ConfigError::Invalid { field: "id", why: "must be a positive integer".into() });
        }
        let listen = flags.listen.or(file.listen).ok_or(ConfigError::Missing("listen"))?;
        let advertise = flags.advertise.or(file.advertise).unwrap_or(listen);
        if advertise.ip().is_unspecified() {
            return Err(ConfigError::Invalid {
                field: "advertise",
                why: format!("{advertise} is not reachable by other members; give --advertise"),
            });
        }
        let heartbeat_ms = flags.heartbeat_ms.or(file.heartbeat_ms).unwrap_or(200);
        let election_timeout_ms = flags.election_timeout_ms.or(file.election_timeout_ms).unwrap_or(1000);
        if election_timeout_ms <= heartbeat_ms * 2 {
            return Err(ConfigError::Invalid {
                field: "election-timeout-ms",
                why: format!("{election_timeout_ms} must exceed twice the heartbeat ({heartbeat_ms} ms)"),
            });
        }
        let log_format = flags.log_format.clone().or(file.log_format).unwrap_or_else(|| "text".into());
        if log_format != "text" && log_format != "json" {
            return Err(ConfigError::Invalid {
                field: "log-format",
                why: format!("'{log_format}' is not text or json"),
            });
        }
        let site = flags.site.clone().or(file.site).unwrap_or_else(|| "primary".into());
        hci_shared::names::check_name(&site).map_err(|why| ConfigError::Invalid { field: "site", why })?;
        let host_lease_ms = flags.host_lease_ms.or(file.host_lease_ms).unwrap_or(10_000);
        if !(MIN_HOST_LEASE_MS..=MAX_HOST_LEASE_MS).contains(&host_lease_ms) {
            return Err(ConfigError::Invalid {
                field: "host-lease-ms",
                why: format!("{host_lease_ms} is outside {MIN_HOST_LEASE_MS}-{MAX_HOST_LEASE_MS}"),
            });
        }
        let ha_restart_margin_ms = flags
            .ha_restart_margin_ms
            .or(file.ha_restart_margin_ms)
            .unwrap_or((host_lease_ms / 2).max(MIN_HA_RESTART_MARGIN_MS));
        if !(MIN_HA_RESTART_MARGIN_MS..=MAX_HA_RESTART_MARGIN_MS).contains(&ha_restart_margin_ms) {
            return Err(ConfigError::Invalid {
                field: "ha-restart-margin-ms",
                why: format!("{ha_restart_margin_ms} is outside {MIN_HA_RESTART_MARGIN_MS}-{MAX_HA_RESTART_MARGIN_MS}"),
            });
        }
        let snapshot_every = flags.snapshot_every.or(file.snapshot_every).unwrap_or(10_000);
        if snapshot_every == 0 {
            return Err(ConfigError::Invalid { field: "snapshot-every", why: "must be positive".into() });
        }
        Ok(Self {
            placement,
            id,
            listen,
            advertise,
            data_dir: flags.data_dir.clone().or(file.data_dir).ok_or(ConfigError::Missing("data-dir"))?,
            site,
            bootstrap: flags.bootstrap || file.bootstrap.unwrap_or(false),
            snapshot_every,
            heartbeat_ms,
            election_timeout_ms,
            write_timeout_ms: flags.write_timeout_ms.or(file.write_timeout_ms).unwrap_or(5_000),
            log_format,
            host_lease_ms,
            ha_restart_margin_ms,
        })
    }

    /// `Isolation.fence_after_ms` in every host's feed: three fifths of the lease.
    ///
    /// The agent powers its HA VMs off at `last_ack_send + fence_after_ms` (+ asking its peers +
    /// the power-off itself). The leader restarts them elsewhere no earlier than
    /// `last_heartbeat_received + lease + margin`, and `last_heartbeat_received >= last_ack_send`:
    /// the acknowledged heartbeat was received after it was sent, and any later one the leader
    /// received (its answer lost) is later still; a new leader starts every lease afresh, later
    /// again. So the agent has at least `lease - fence_after_ms + margin` (2/5 of the lease plus
    /// the margin: 9 s with the defaults) between giving up and the first possible restart, to
    /// ask its peers and stop its VMs; only intervals are compared, never two machines' clocks.
    /// It stays well above the heartbeat interval (a quarter of the lease), so two heartbeats
    /// lost in a row do not fence a healthy host.
    pub fn fence_after_ms(&self) -> u64 {
        self.host_lease_ms.saturating_mul(3) / 5
    }

    /// How long an offline host must have been silent before HA fences it: lease + margin.
    pub fn ha_restart_after(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.host_lease_ms.saturating_add(self.ha_restart_margin_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("controller.toml");
        std::fs::write(
            &file,
            "id = 3\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/var/lib/hci\"\nsite = \"dr\"\nheartbeat_ms = 100\n",
        )
        .expect("write config");
        let flags = Flags::parse_from([
            "hci-controller",
            "--config",
            file.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:7100",
        ]);
        let config = Config::resolve(&flags).expect("valid");
        assert_eq!(config.id, 3);
        assert_eq!(config.listen.port(), 7100, "the flag wins over the file");
        assert_eq!(config.advertise, config.listen);
        assert_eq!(config.site, "dr");
        assert_eq!(config.heartbeat_ms, 100);
        assert_eq!(config.election_timeout_ms, 1000, "default");
        assert_eq!(config.host_lease_ms, 10_000, "default");
        assert_eq!(config.ha_restart_margin_ms, 5_000, "default: half the lease");
        assert_eq!(config.fence_after_ms(), 6_000);
        assert_eq!(config.ha_restart_after(), std::time::Duration::from_millis(15_000));
    }

    #[test]
    fn refuses_bad_settings_naming_them() {
        let base = ["hci-controller", "--id", "1", "--listen", "127.0.0.1:1", "--data-dir", "/d"];
        let with = |extra: &[&'static str]| -> Vec<&'static str> { base.iter().chain(extra).copied().collect() };
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec!["hci-controller", "--listen", "127.0.0.1:1", "--data-dir", "/d"], "--id"),
            (vec!["hci-controller", "--id", "0", "--listen", "127.0.0.1:1", "--data-dir", "/d"], "--id"),
            (vec!["hci-controller", "--id", "1", "--listen", "0.0.0.0:1", "--data-dir", "/d"], "--advertise"),
            (with(&["--site", "DR"]), "--site"),
            (with(&["--election-timeout-ms", "100"]), "--election-timeout-ms"),
            (with(&["--host-lease-ms", "10"]), "--host-lease-ms"),
            (with(&["--host-lease-ms", "600001"]), "--host-lease-ms"),
            (with(&["--ha-restart-margin-ms", "99"]), "--ha-restart-margin-ms"),
            (with(&["--ha-restart-margin-ms", "600001"]), "--ha-restart-margin-ms"),
        ];
        for (args, field) in cases {
            let err = Config::resolve(&Flags::parse_from(args)).expect_err("invalid").to_string();
            assert!(err.contains(field), "{err} should name {field}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "id = 1\nlisten_addr = \"x\"\n").expect("write");
        let flags = Flags::parse_from(["hci-controller", "--config", file.to_str().expect("utf-8")]);
        let err = Config::resolve(&flags).expect_err("unknown key").to_string();
        assert!(err.contains("listen_addr"), "{err}");
    }
}

//! Flags and `--config` TOML of `hci-agent`; flags override the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(name = "hci-agent", version, about = "The hci node agent: VMs, volumes and images on this host")]
pub struct Flags {
    /// TOML file with any of the settings below (flags override it).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// This host's id (a DNS label, unique in the site).
    #[arg(long, global = true)]
    pub host_id: Option<String>,
    /// Controller URLs (comma separated): join the cluster, send heartbeats, follow the desired state.
    #[arg(long, value_delimiter = ',', global = true)]
    pub controller: Vec<String>,
    /// Directory for the agent's state, per-VM files, images and the default pool.
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Address of the agent API.
    #[arg(long, value_name = "HOST:PORT", global = true)]
    pub listen: Option<SocketAddr>,
    /// libvirt connection URI.
    #[arg(long, value_name = "URI", global = true)]
    pub libvirt_uri: Option<String>,
    /// The libvirt URI other hosts' libvirtd use to migrate VMs here (e.g. qemu+tls://HOST/system;
    /// default: --libvirt-uri, through the `qemu+unix` transport when it names a socket; that only
    /// reaches simulated hosts on one machine).
    #[arg(long, value_name = "URI", global = true)]
    pub migration_libvirt_uri: Option<String>,
    /// The address live-migration streams to this host go to (the migration network); default: the
    /// host name libvirt resolves.
    #[arg(long, value_name = "IP", global = true)]
    pub migration_address: Option<std::net::IpAddr>,
    #[arg(long, global = true)]
    pub site: Option<String>,
    /// The host's architecture; must match what libvirt reports.
    #[arg(long, global = true)]
    pub arch: Option<String>,
    /// Single-use join token file (first join; later starts use the credential kept in the data dir).
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// This agent's API as the controllers and other agents reach it (default: http://LISTEN).
    #[arg(long, value_name = "URL", global = true)]
    pub advertise: Option<String>,
    /// Send heartbeats at least this often (the controllers ask for a quarter of their host lease).
    #[arg(long, value_name = "MS", global = true)]
    pub heartbeat_ms: Option<u64>,
    /// A directory-backed qcow2 pool: NAME=DIR (repeatable; default: default=DATA_DIR/pools/default).
    #[arg(long = "pool", value_name = "NAME=DIR", global = true)]
    pub pools: Vec<String>,
    /// An LVM-thin pool: NAME=VG/THINPOOL (repeatable; the VG and thin pool must exist).
    #[arg(long = "lvm-pool", value_name = "NAME=VG/THINPOOL", global = true)]
    pub lvm_pools: Vec<String>,
    /// A Ceph RBD pool: NAME=RBDPOOL@MON[,MON...] (repeatable; auth none until cephx support).
    #[arg(long = "rbd-pool", value_name = "NAME=RBDPOOL@MONS", global = true)]
    pub rbd_pools: Vec<String>,
    /// This host's address on the underlay network between hosts: the zone VXLAN devices send
    /// from it, and it is reported to the controllers (without it, VMs reach only this host's VMs).
    #[arg(long, value_name = "IP", global = true)]
    pub underlay_address: Option<std::net::Ipv4Addr>,
    /// The device (a NIC or bond facing the other hosts) that zones with a VLAN are carried on,
    /// as 802.1Q VLAN devices `vl-<vlan>` stacked on it; the agent never changes the device itself.
    #[arg(long, value_name = "IFACE", global = true)]
    pub vlan_trunk: Option<String>,
    /// Build zone networks and the firewall even without --underlay-address (a single host: its
    /// VMs reach only each other). Without either, the agent leaves the host's networking alone.
    #[arg(long, global = true)]
    pub network: bool,
    /// Seconds between drift-repair passes.
    #[arg(long, value_name = "S", global = true)]
    pub reconcile_interval: Option<u64>,
    /// Seconds a guest gets to shut down before it is forced off.
    #[arg(long, value_name = "S", global = true)]
    pub shutdown_timeout: Option<u64>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print this host's inventory as JSON and exit.
    HostInfo,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub host_id: Option<String>,
    pub controller: Option<Vec<String>>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub libvirt_uri: Option<String>,
    pub migration_libvirt_uri: Option<String>,
    pub migration_address: Option<std::net::IpAddr>,
    pub site: Option<String>,
    pub arch: Option<String>,
    pub token_file: Option<PathBuf>,
    pub advertise: Option<String>,
    pub heartbeat_ms: Option<u64>,
    pub pools: Option<Vec<String>>,
    pub lvm_pools: Option<Vec<String>>,
    pub rbd_pools: Option<Vec<String>>,
    pub underlay_address: Option<std::net::Ipv4Addr>,
    pub vlan_trunk: Option<String>,
    pub network: Option<bool>,
    pub reconcile_interval: Option<u64>,
    pub shutdown_timeout: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host_id: String,
    pub controllers: Vec<String>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub libvirt_uri: String,
    pub migration_libvirt_uri: String,
    pub migration_address: Option<std::net::IpAddr>,
    pub site: String,
    pub arch: Option<String>,
    pub token_file: Option<PathBuf>,
    /// `http(s)://HOST:PORT` of this agent's API.
    pub advertise: String,
    pub heartbeat_ms: Option<u64>,
    pub pools: Vec<PoolConfig>,
    pub underlay_address: Option<std::net::Ipv4Addr>,
    /// The device VLAN zones are stacked on.
    pub vlan_trunk: Option<String>,
    /// Build zone networks and the firewall on this host.
    pub network: bool,
    pub reconcile_interval_s: u64,
    pub shutdown_timeout_s: u64,
}

/// One storage pool the agent serves volumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolConfig {
    /// qcow2 files in a directory (a libvirt dir pool).
    Dir { name: String, dir: PathBuf },
    /// Thin LVs in an existing LVM thin pool.
    LvmThin { name: String, vg: String, thin_pool: String },
    /// RBD images in a Ceph pool.
    Rbd { name: String, rbd_pool: String, monitors: Vec<String> },
}

impl PoolConfig {
    pub fn name(&self) -> &str {
        match self {
            PoolConfig::Dir { name, .. } | PoolConfig::LvmThin { name, .. } | PoolConfig::Rbd { name, .. } => name,
        }
    }
}

fn split_pool(field: &'static str, spec: &str) -> Result<(String, String), ConfigError> {
    let (name, rest) =
        spec.split_once('=').ok_or_else(|| ConfigError::Invalid { field, why: format!("'{spec}' is not NAME=...") })?;
    hci_shared::names::check_name(name).map_err(|why| ConfigError::Invalid { field, why })?;
    Ok((name.to_string(), rest.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {message}")]
    File { path: String, message: String },
    #[error("--{0} is required (flag or config file)")]
    Missing(&'static str),
    #[error("--{field}: {why}")]
    Invalid { field: &'static str, why: String },
}

impl Config {
    pub fn resolve(flags: &Flags) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::File { path: path.display().to_string(), message: e.to_string() })?;
                toml::from_str(&text)
                    .map_err(|e| ConfigError::File { path: path.display().to_string(), message: e.to_string() })?
            }
            None => FileConfig::default(),
        };
        let host_id = flags.host_id.clone().or(file.host_id).ok_or(ConfigError::Missing("host-id"))?;
        hci_shared::names::check_name(&host_id).map_err(|why| ConfigError::Invalid { field: "host-id", why })?;
        let data_dir = flags.data_dir.clone().or(file.data_dir).ok_or(ConfigError::Missing("data-dir"))?;
        let vlan_trunk = flags.vlan_trunk.clone().or(file.vlan_trunk.clone());
        if let Some(trunk) = &vlan_trunk {
            hci_shared::names::check_interface_name(trunk)
                .map_err(|why| ConfigError::Invalid { field: "vlan-trunk", why })?;
        }
        let site = flags.site.clone().or(file.site).unwrap_or_else(|| "primary".into());
        hci_shared::names::check_name(&site).map_err(|why| ConfigError::Invalid { field: "site", why })?;
        let arch = flags.arch.clone().or(file.arch);
        if let Some(a) = &arch {
            if !hci_shared::validate::ARCHES.contains(&a.as_str()) {
                return Err(ConfigError::Invalid {
                    field: "arch",
                    why: format!("'{a}' is not one of x86_64, ppc64le, aarch64"),
                });
            }
        }
        let pool_specs = if flags.pools.is_empty() { file.pools.unwrap_or_default() } else { flags.pools.clone() };
        let mut pools = Vec::new();
        for spec in pool_specs {
            let (name, dir) = split_pool("pool", &spec)?;
            pools.push(PoolConfig::Dir { name, dir: PathBuf::from(dir) });
        }
        let lvm_specs =
            if flags.lvm_pools.is_empty() { file.lvm_pools.unwrap_or_default() } else { flags.lvm_pools.clone() };
        for spec in lvm_specs {
            let (name, rest) = split_pool("lvm-pool", &spec)?;
            let (vg, thin_pool) = rest.split_once('/').ok_or_else(|| ConfigError::Invalid {
                field: "lvm-pool",
                why: format!("'{spec}' is not NAME=VG/THINPOOL"),
            })?;
            pools.push(PoolConfig::LvmThin { name, vg: vg.to_string(), thin_pool: thin_pool.to_string() });
        }
        let rbd_specs =
            if flags.rbd_pools.is_empty() { file.rbd_pools.unwrap_or_default() } else { flags.rbd_pools.clone() };
        for spec in rbd_specs {
            let (name, rest) = split_pool("rbd-pool", &spec)?;
            let (rbd_pool, mons) = rest.split_once('@').ok_or_else(|| ConfigError::Invalid {
                field: "rbd-pool",
                why: format!("'{spec}' is not NAME=RBDPOOL@MON[,MON...]"),
            })?;
            let monitors: Vec<String> = mons.split(',').filter(|m| !m.is_empty()).map(str::to_string).collect();
            if monitors.is_empty() {
                return Err(ConfigError::Invalid { field: "rbd-pool", why: format!("'{spec}' names no monitor") });
            }
            pools.push(PoolConfig::Rbd { name, rbd_pool: rbd_pool.to_string(), monitors });
        }
        if pools.is_empty() {
            pools.push(PoolConfig::Dir { name: "default".to_string(), dir: data_dir.join("pools").join("default") });
        }
        let mut seen = std::collections::BTreeSet::new();
        for pool in &pools {
            if !seen.insert(pool.name().to_string()) {
                return Err(ConfigError::Invalid {
                    field: "pool",
                    why: format!("pool '{}' is defined twice", pool.name()),
                });
            }
        }
        let libvirt_uri = flags.libvirt_uri.clone().or(file.libvirt_uri).unwrap_or_else(|| "qemu:///system".into());
        let listen = flags.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7100)));
        let controllers =
            if flags.controller.is_empty() { file.controller.unwrap_or_default() } else { flags.controller.clone() };
        for url in &controllers {
            hci_shared::hosts_validate::agent_url("controller", url).map_err(|e| ConfigError::Invalid {
                field: "controller",
                why: e.message.trim_start_matches("controller: ").to_string(),
            })?;
        }
        let advertise = flags.advertise.clone().or(file.advertise);
        if !controllers.is_empty() && advertise.is_none() && listen.ip().is_unspecified() {
            return Err(ConfigError::Invalid {
                field: "advertise",
                why: format!("--listen {listen} is no address others can reach; give --advertise http://HOST:PORT"),
            });
        }
        let advertise = advertise.unwrap_or_else(|| format!("http://{listen}"));
        hci_shared::hosts_validate::agent_url("advertise", &advertise).map_err(|e| ConfigError::Invalid {
            field: "advertise",
            why: e.message.trim_start_matches("advertise: ").to_string(),
        })?;
        let heartbeat_ms = flags.heartbeat_ms.or(file.heartbeat_ms);
        if heartbeat_ms.is_some_and(|ms| ms < 100) {
            return Err(ConfigError::Invalid { field: "heartbeat-ms", why: "at least 100".into() });
        }
        Ok(Self {
            host_id,
            controllers,
            listen,
            migration_libvirt_uri: flags
                .migration_libvirt_uri
                .clone()
                .or(file.migration_libvirt_uri)
                .unwrap_or_else(|| peer_uri(&libvirt_uri)),
            migration_address: flags.migration_address.or(file.migration_address),
            libvirt_uri,
            site,
            arch,
            token_file: flags.token_file.clone().or(file.token_file),
            advertise,
            heartbeat_ms,
            pools,
            underlay_address: flags.underlay_address.or(file.underlay_address),
            network: flags.network
                || file.network.unwrap_or(false)
                || flags.underlay_address.or(file.underlay_address).is_some()
                || vlan_trunk.is_some(),
            vlan_trunk,
            reconcile_interval_s: flags.reconcile_interval.or(file.reconcile_interval).unwrap_or(10).max(1),
            shutdown_timeout_s: flags.shutdown_timeout.or(file.shutdown_timeout).unwrap_or(30),
            data_dir,
        })
    }
}

/// `uri` as another libvirtd must name it. Inside a libvirtd, `qemu:///system` is that daemon itself
/// whatever its `socket=` parameter says; `qemu+unix` goes through the remote driver to the socket.
fn peer_uri(uri: &str) -> String {
    match uri.strip_prefix("qemu:///") {
        Some(rest) if uri.contains("socket=") => format!("qemu+unix:///{rest}"),
        _ => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::peer_uri;

    #[test]
    fn peers_reach_a_socket_through_the_remote_driver() {
        assert_eq!(peer_uri("qemu:///system?socket=/run/h/x/sock"), "qemu+unix:///system?socket=/run/h/x/sock");
        assert_eq!(peer_uri("qemu:///system"), "qemu:///system");
        assert_eq!(peer_uri("qemu+tls://h1/system"), "qemu+tls://h1/system");
    }

    #[test]
    fn the_network_is_built_only_when_asked_for() {
        use clap::Parser;
        let resolve = |extra: &[&str]| {
            let args = ["hci-agent", "--host-id", "h1", "--data-dir", "/tmp/x"].iter().chain(extra);
            super::Config::resolve(&super::Flags::parse_from(args)).expect("config")
        };
        let plain = resolve(&[]);
        assert_eq!((plain.network, plain.underlay_address), (false, None));
        let fabric = resolve(&["--underlay-address", "192.168.10.1"]);
        assert_eq!((fabric.network, fabric.underlay_address), (true, Some([192, 168, 10, 1].into())));
        assert!(resolve(&["--network"]).network);
        let trunk = resolve(&["--vlan-trunk", "bond0"]);
        assert_eq!((trunk.network, trunk.vlan_trunk.as_deref()), (true, Some("bond0")));
        let args = ["hci-agent", "--host-id", "h1", "--data-dir", "/tmp/x", "--vlan-trunk", "eth0/x"];
        let err = super::Config::resolve(&super::Flags::parse_from(args)).expect_err("bad trunk");
        assert!(err.to_string().contains("vlan-trunk"), "{err}");
        assert!(super::Flags::try_parse_from(["hci-agent", "--underlay-address", "fe80::1"]).is_err());
    }
}

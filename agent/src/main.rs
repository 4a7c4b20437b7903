//! `hci-agent` entry point: flags, logging, wiring of the real hypervisor, pools and image store;
//! then either print the host's inventory (`host-info`) or serve the agent API and reconcile forever.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use hci_agent::config::{Command, Config, Flags, PoolConfig};
use hci_agent::firewall::nft::NftFirewall;
use hci_agent::hypervisor::libvirt::LibvirtHypervisor;
use hci_agent::hypervisor::timed::Timed;
use hci_agent::hypervisor::Hypervisor;
use hci_agent::metrics::AgentMetrics;
use hci_agent::network::dhcp::udp::UdpDhcp;
use hci_agent::network::ip::IpDataPlane;
use hci_agent::network::HostNetworking;
use hci_agent::peers::HttpPeers;
use hci_agent::reconciler::{HostResources, IncomingEndpoint};
use hci_agent::service::Agent;
use hci_agent::volumes::dir_qcow2::DirQcow2Pool;
use hci_agent::volumes::images::ImageStore;
use hci_agent::volumes::lvm_thin::LvmThinPool;
use hci_agent::volumes::rbd::RbdPool;
use hci_agent::volumes::VolumeBackend;
use hci_firmware_profiles::Profiles;

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let config = Config::resolve(&flags)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let metrics = AgentMetrics::new();
    let res = wire(&config, &metrics)?;
    match flags.command {
        Some(Command::HostInfo) => {
            let info = hci_agent::inventory::host_info(&res, &config.site).context("reading the host inventory")?;
            use std::io::Write;
            writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&info)?).context("writing to stdout")?;
            Ok(())
        }
        None => serve(config, res, metrics),
    }
}

/// Connects the real implementations of every host interface.
fn wire(config: &Config, metrics: &AgentMetrics) -> anyhow::Result<HostResources> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let libvirt = LibvirtHypervisor::connect(&config.libvirt_uri).context("connecting to libvirt")?;
    let hypervisor: Arc<dyn Hypervisor> = Arc::new(Timed::new(libvirt, metrics.libvirt_seconds.clone()));
    let caps = hypervisor.capabilities().context("reading hypervisor capabilities")?;
    if let Some(arch) = &config.arch {
        if arch != &caps.arch {
            bail!("--arch {arch} does not match this host's hypervisor ({})", caps.arch);
        }
    }
    let mut pools: BTreeMap<String, Arc<dyn VolumeBackend>> = BTreeMap::new();
    for pool in &config.pools {
        let backend: Arc<dyn VolumeBackend> = match pool {
            PoolConfig::Dir { name, dir } => Arc::new(
                DirQcow2Pool::open(&config.libvirt_uri, name, &config.host_id, dir)
                    .with_context(|| format!("opening pool {name} at {}", dir.display()))?,
            ),
            PoolConfig::LvmThin { name, vg, thin_pool } => Arc::new(
                LvmThinPool::open(name, &config.host_id, vg, thin_pool)
                    .with_context(|| format!("opening LVM-thin pool {name} on {vg}/{thin_pool}"))?,
            ),
            PoolConfig::Rbd { name, rbd_pool, monitors } => Arc::new(
                RbdPool::open(&config.libvirt_uri, name, &config.host_id, rbd_pool, monitors)
                    .with_context(|| format!("opening RBD pool {name} on {rbd_pool}@{}", monitors.join(",")))?,
            ),
        };
        pools.insert(pool.name().to_string(), backend);
    }
    let images = ImageStore::new(&config.data_dir.join("images")).context("opening the image store")?;
    let network = config.network.then(|| {
        let firewall = NftFirewall::host();
        tracing::info!(transport = firewall.transport(), "firewall: table inet hci");
        Arc::new(
            HostNetworking::new(
                &config.host_id,
                config.underlay_address,
                Arc::new(IpDataPlane::host()),
                Arc::new(firewall),
                metrics.network.clone(),
            )
            .with_vlan_trunk(config.vlan_trunk.clone())
            .with_dhcp(Arc::new(UdpDhcp::host().counting(metrics.network.dhcp_replies.clone()))),
        )
    });
    Ok(HostResources {
        host_id: config.host_id.clone(),
        domain_type: if caps.accelerator == "kvm" { "kvm".into() } else { "qemu".into() },
        firmware: caps.firmware,
        hypervisor,
        pools,
        images: Arc::new(images),
        profiles: Profiles::builtin().context("loading firmware profiles")?,
        vm_dir: config.data_dir.join("vms"),
        shutdown_timeout: Duration::from_secs(config.shutdown_timeout_s),
        peers: Arc::new(HttpPeers::new().context("building the HTTP client for other agents")?),
        incoming: IncomingEndpoint {
            libvirt_uri: config.migration_libvirt_uri.clone(),
            address: config.migration_address.map(|ip| match ip {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            }),
        },
        network,
    })
}

/// Checks the firewall table every second and restores it when someone changed it (the data
/// plane's devices and routes are repaired by the next reconcile pass).
async fn watch_firewall(network: Arc<HostNetworking>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let net = network.clone();
        match tokio::task::spawn_blocking(move || net.check_drift()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "checking the firewall table"),
            Err(e) => tracing::error!(error = %e, "the firewall check panicked"),
        }
    }
}

/// What the agent needs to join the controller cluster (`--controller`, `--token-file`, `--advertise`).
fn cluster_settings(config: &Config) -> hci_agent::controller::Settings {
    hci_agent::controller::Settings {
        controllers: config.controllers.clone(),
        token_file: config.token_file.clone(),
        advertise: config.advertise.clone(),
        heartbeat: config.heartbeat_ms.map(Duration::from_millis),
        data_dir: config.data_dir.clone(),
    }
}

fn serve(config: Config, res: HostResources, metrics: AgentMetrics) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async move {
        let agent = Agent::open(res, config.site.clone(), config.data_dir.clone(), metrics)
            .context("loading the agent state")?;
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        tracing::info!(host = %config.host_id, listen = %config.listen, "agent serving");
        tokio::spawn(agent.clone().run(Duration::from_secs(config.reconcile_interval_s)));
        if let Some(network) = agent.res.network.clone() {
            tokio::spawn(watch_firewall(network));
        }
        if !config.controllers.is_empty() {
            tokio::spawn(hci_agent::controller::run(agent.clone(), cluster_settings(&config)));
        }
        axum::serve(listener, hci_agent::api::router(agent))
            .with_graceful_shutdown(async {
                use tokio::signal::unix::{signal, SignalKind};
                if let Ok(mut term) = signal(SignalKind::terminate()) {
                    term.recv().await;
                }
            })
            .await
            .context("serving the agent API")
    })
}

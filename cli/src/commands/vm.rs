//! `hcictl vm`: virtual machines and their power and placement.

use clap::Subcommand;
use hci_shared::api::{NicRequest, VmCreate, VmMigrate};
use hci_shared::hosts::VmView;
use hci_shared::resources::{PowerState, Vm};
use reqwest::Method;

use crate::client::{Call, Client};
use crate::commands::{etag_arg, label, Target};
use crate::error::CliError;
use crate::output::{of_tenant, Output};
use crate::resolve::{resolve, HOST, VM, VOLUME};

#[derive(Debug, Subcommand)]
pub enum VmCmd {
    /// Create a VM
    Create {
        /// The VM's name (unique within the tenant)
        name: String,
        /// The tenant that owns the VM
        #[arg(long)]
        tenant: String,
        /// Number of virtual CPUs
        #[arg(long)]
        vcpus: u32,
        /// Memory in MiB
        #[arg(long)]
        memory_mib: u64,
        /// CPU architecture: x86_64, ppc64le or aarch64
        #[arg(long, default_value = "x86_64")]
        arch: String,
        /// Firmware profile (default: the architecture's plain one, e.g. x86_64-bios)
        #[arg(long)]
        firmware: Option<String>,
        /// Attach this volume (id, or name within the tenant); repeat for more, the first boots
        #[arg(long = "volume", value_name = "ID|NAME")]
        volumes: Vec<String>,
        /// Add a NIC in this zone; repeat for more
        #[arg(long = "nic", value_name = "ZONE")]
        nics: Vec<String>,
        /// Keep this VM on a different host from the group's other members
        #[arg(long, value_name = "GROUP")]
        anti_affinity_group: Option<String>,
        /// Create it stopped (placed, holding its host's capacity, not started)
        #[arg(long)]
        stopped: bool,
        /// Do not restart it on another host when its host fails (HA is on by default)
        #[arg(long)]
        no_ha: bool,
    },
    /// List VMs
    List {
        /// Only this tenant's VMs
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Show one VM
    Show {
        #[command(flatten)]
        target: Target,
    },
    /// Delete a VM
    Delete {
        #[command(flatten)]
        target: Target,
        /// Only delete if the VM's ETag is still this
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Power a VM on
    Start {
        #[command(flatten)]
        target: Target,
    },
    /// Power a VM off
    Stop {
        #[command(flatten)]
        target: Target,
    },
    /// Reboot a VM
    Reboot {
        #[command(flatten)]
        target: Target,
    },
    /// Move a VM to another host
    Migrate {
        #[command(flatten)]
        target: Target,
        /// Destination host (id or name; default: chosen by the controller)
        #[arg(long, value_name = "ID|NAME")]
        host: Option<String>,
        /// Keep the VM running while it moves (the default for a running VM)
        #[arg(long, conflicts_with = "cold")]
        live: bool,
        /// Move the stopped VM cold (the default for a stopped VM)
        #[arg(long)]
        cold: bool,
    },
}

fn id_of(client: &Client, target: &Target) -> Result<String, CliError> {
    resolve(client, VM, &target.id, target.tenant.as_deref())
}

pub fn run(cmd: VmCmd, client: &Client, out: &mut Output) -> Result<(), CliError> {
    match cmd {
        VmCmd::Create {
            name,
            tenant,
            vcpus,
            memory_mib,
            arch,
            firmware,
            volumes,
            nics,
            anti_affinity_group,
            stopped,
            no_ha,
        } => {
            let volumes =
                volumes.iter().map(|v| resolve(client, VOLUME, v, Some(&tenant))).collect::<Result<Vec<_>, _>>()?;
            let nics = nics.into_iter().map(|zone| NicRequest { zone }).collect();
            let power = stopped.then_some(PowerState::Stopped);
            let ha = no_ha.then_some(false);
            let body = VmCreate {
                name,
                tenant,
                vcpus,
                memory_mib,
                arch,
                firmware,
                volumes,
                nics,
                anti_affinity_group,
                power,
                ha,
            };
            out.one::<Vm>(&client.post(&["v1", "vms"], &body)?, false)
        }
        VmCmd::List { tenant } => out.list::<VmView>(&client.get(&["v1", "vms"])?, &of_tenant(tenant.as_deref())),
        VmCmd::Show { target } => {
            let id = id_of(client, &target)?;
            out.one::<VmView>(&client.get(&["v1", "vms", &id])?, true)
        }
        VmCmd::Delete { target, if_match } => {
            let id = id_of(client, &target)?;
            client.delete(&["v1", "vms", &id], etag_arg(if_match))?;
            out.done(&format!("deleted vm {}", label(&target.id, &id)))
        }
        VmCmd::Start { target } => power(client, out, &target, "start"),
        VmCmd::Stop { target } => power(client, out, &target, "stop"),
        VmCmd::Reboot { target } => power(client, out, &target, "reboot"),
        VmCmd::Migrate { target, host, live, cold } => {
            let live = if live {
                Some(true)
            } else if cold {
                Some(false)
            } else {
                None
            };
            let id = id_of(client, &target)?;
            let host = host.map(|h| resolve(client, HOST, &h, None)).transpose()?;
            out.one::<Vm>(&client.post(&["v1", "vms", &id, "migrate"], &VmMigrate { host, live })?, false)
        }
    }
}

fn power(client: &Client, out: &mut Output, target: &Target, action: &str) -> Result<(), CliError> {
    let id = id_of(client, target)?;
    let reply = client.send(Call::new(Method::POST, &["v1", "vms", &id, action]))?;
    out.one::<Vm>(&reply, false)
}

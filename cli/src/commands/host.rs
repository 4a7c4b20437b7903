//! `hcictl host`: the hypervisor hosts agents have registered, and the join tokens they join with.

use clap::{value_parser, Subcommand};
use hci_shared::api::HostMaintenance;
use hci_shared::hosts::{HostView, JoinTokenCreate};

use crate::client::Client;
use crate::error::CliError;
use crate::output::{all, Format, Output};
use crate::resolve::{resolve, HOST};

#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// List hosts: state, size, VMs and the age of their last heartbeat
    List,
    /// Show one host: state, inventory, usage (-o json shows everything)
    Show {
        /// The host's id or name
        #[arg(value_name = "ID|NAME")]
        id: String,
    },
    /// Drain a host for maintenance (its VMs move elsewhere within the cap), or return it to service
    Maintenance {
        /// The host's id or name
        #[arg(value_name = "ID|NAME")]
        id: String,
        /// Return the host to service (nothing moves back)
        #[arg(long)]
        off: bool,
    },
    /// Single-use tokens agents join the cluster with
    #[command(subcommand, name = "join-token")]
    JoinToken(JoinTokenCmd),
}

#[derive(Debug, Subcommand)]
pub enum JoinTokenCmd {
    /// Create a join token: give it to one agent (its --token-file); it works once, until it expires
    Create {
        /// Lifetime in seconds
        #[arg(long, value_name = "SECONDS", value_parser = value_parser!(u64).range(1..=604_800))]
        ttl: Option<u64>,
        /// The site the joining host must be in (default: the cluster's)
        #[arg(long)]
        site: Option<String>,
    },
}

pub fn run(cmd: HostCmd, client: &Client, out: &mut Output) -> Result<(), CliError> {
    match cmd {
        HostCmd::List => out.list::<HostView>(&client.get(&["v1", "hosts"])?, &all),
        HostCmd::Show { id } => {
            let id = resolve(client, HOST, &id, None)?;
            out.one::<HostView>(&client.get(&["v1", "hosts", &id])?, true)
        }
        HostCmd::Maintenance { id, off } => {
            let id = resolve(client, HOST, &id, None)?;
            let body = HostMaintenance { enabled: !off };
            out.one::<HostView>(&client.post(&["v1", "hosts", &id, "maintenance"], &body)?, true)
        }
        HostCmd::JoinToken(JoinTokenCmd::Create { ttl, site }) => {
            let reply = client.post(&["v1", "hosts", "join-tokens"], &JoinTokenCreate { site, ttl_seconds: ttl })?;
            if out.format == Format::Json {
                return out.json(&reply.value()?);
            }
            out.generic(&reply)
        }
    }
}

//! `hcictl zone-policy`: the allowed flows between zones.

use clap::{Subcommand, ValueEnum};
use hci_shared::api::ZonePolicyCreate;
use hci_shared::resources::{PolicyAction, Protocol, ZonePolicy};

use crate::client::Client;
use crate::commands::{etag_arg, label};
use crate::error::CliError;
use crate::output::{all, Output};
use crate::resolve::{resolve, ZONE_POLICY};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    Tcp,
    Udp,
    Icmp,
    Any,
}

impl From<ProtocolArg> for Protocol {
    fn from(p: ProtocolArg) -> Self {
        match p {
            ProtocolArg::Tcp => Protocol::Tcp,
            ProtocolArg::Udp => Protocol::Udp,
            ProtocolArg::Icmp => Protocol::Icmp,
            ProtocolArg::Any => Protocol::Any,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ZonePolicyCmd {
    /// Allow a flow from one zone to another
    Create {
        /// A name for the policy (default: assigned by the controller)
        #[arg(long)]
        name: Option<String>,
        /// The zone traffic comes from
        #[arg(long = "from", value_name = "ZONE")]
        from_zone: String,
        /// The zone traffic goes to
        #[arg(long = "to", value_name = "ZONE")]
        to_zone: String,
        /// The protocol allowed
        #[arg(long, value_enum)]
        protocol: ProtocolArg,
        /// Ports and ranges, e.g. 22,80,8000-8100 (tcp/udp only)
        #[arg(long, default_value = "")]
        ports: String,
    },
    /// List zone policies
    List,
    /// Show one zone policy
    Show {
        /// The policy's id or name
        #[arg(value_name = "ID|NAME")]
        id: String,
    },
    /// Delete a zone policy
    Delete {
        /// The policy's id or name
        #[arg(value_name = "ID|NAME")]
        id: String,
        /// Only delete if the policy's ETag is still this
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
}

pub fn run(cmd: ZonePolicyCmd, client: &Client, out: &mut Output) -> Result<(), CliError> {
    match cmd {
        ZonePolicyCmd::Create { name, from_zone, to_zone, protocol, ports } => {
            let body = ZonePolicyCreate {
                name,
                from_zone,
                to_zone,
                protocol: protocol.into(),
                ports,
                action: PolicyAction::Allow,
            };
            out.one::<ZonePolicy>(&client.post(&["v1", "zone-policies"], &body)?, false)
        }
        ZonePolicyCmd::List => out.list::<ZonePolicy>(&client.get(&["v1", "zone-policies"])?, &all),
        ZonePolicyCmd::Show { id } => {
            let id = resolve(client, ZONE_POLICY, &id, None)?;
            out.one::<ZonePolicy>(&client.get(&["v1", "zone-policies", &id])?, true)
        }
        ZonePolicyCmd::Delete { id, if_match } => {
            let resolved = resolve(client, ZONE_POLICY, &id, None)?;
            client.delete(&["v1", "zone-policies", &resolved], etag_arg(if_match))?;
            out.done(&format!("deleted zone policy {}", label(&id, &resolved)))
        }
    }
}

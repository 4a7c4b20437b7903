//! `hcictl cluster`: the controller cluster's status and its membership.

use clap::{value_parser, Subcommand};
use hci_shared::api::{ClusterStatus, Member, MemberAdd};

use crate::client::Client;
use crate::error::CliError;
use crate::output::{Format, Output, Table, View};
use crate::views::cluster_text;

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Show the site, the leader, the term and the members
    Status,
    /// Add, remove or list controller members
    #[command(subcommand)]
    Members(MembersCmd),
}

#[derive(Debug, Subcommand)]
pub enum MembersCmd {
    /// List the members and their roles
    List,
    /// Add a member: it joins as a learner and becomes a voter once caught up
    Add {
        /// The new member's id (its --id)
        #[arg(long, value_parser = value_parser!(u64).range(1..))]
        id: u64,
        /// The address the new member listens on
        #[arg(long, value_name = "HOST:PORT")]
        addr: String,
    },
    /// Remove a member
    Remove {
        /// The member's id
        #[arg(value_parser = value_parser!(u64).range(1..))]
        id: u64,
    },
}

pub fn run(cmd: ClusterCmd, client: &Client, out: &mut Output) -> Result<(), CliError> {
    let (reply, members_only) = match cmd {
        ClusterCmd::Status => (client.get(&["v1", "cluster"])?, false),
        ClusterCmd::Members(MembersCmd::List) => (client.get(&["v1", "cluster"])?, true),
        ClusterCmd::Members(MembersCmd::Add { id, addr }) => {
            (client.post(&["v1", "cluster", "members"], &MemberAdd { id, addr })?, false)
        }
        ClusterCmd::Members(MembersCmd::Remove { id }) => {
            (client.delete(&["v1", "cluster", "members", &id.to_string()], None)?, false)
        }
    };
    if out.format == Format::Json {
        return out.json(&reply.value()?);
    }
    let status: ClusterStatus = reply.decode()?;
    if members_only {
        let mut table = Table::new(Member::headers());
        for m in &status.members {
            table.row(m.row());
        }
        return out.text(&table.render());
    }
    out.text(&cluster_text(&status))
}

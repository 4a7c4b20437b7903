//! `hcictl host`: the hypervisor hosts agents have registered.

use clap::Subcommand;
use hci_shared::resources::Host;

use crate::client::Client;
use crate::error::CliError;
use crate::output::{all, Output};
use crate::resolve::{resolve, HOST};

#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// List hosts and their state
    List,
    /// Show one host (-o json shows its whole inventory)
    Show {
        /// The host's id or name
        #[arg(value_name = "ID|NAME")]
        id: String,
    },
}

pub fn run(cmd: HostCmd, client: &Client, out: &mut Output) -> Result<(), CliError> {
    match cmd {
        HostCmd::List => out.list::<Host>(&client.get(&["v1", "hosts"])?, &all),
        HostCmd::Show { id } => {
            let id = resolve(client, HOST, &id, None)?;
            out.one::<Host>(&client.get(&["v1", "hosts", &id])?, true)
        }
    }
}

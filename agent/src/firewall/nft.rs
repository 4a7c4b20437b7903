//! The real [`Firewall`]: the `nftables` crate's JSON objects handed to the `nft` command (`-j`).
//!
//! Every apply is one `nft -j -f -` run, which nft turns into one netlink batch that the kernel
//! commits as a whole or not at all; killing the agent or nft mid-way leaves the table as it was or
//! as it was meant to be. It exists apart from the generator so that tests and the benchmark can
//! point it into a network namespace (`ip netns exec NAME nft`).

use std::io::Write;
use std::process::{Command, Stdio};

use nftables::schema::Nftables;

use super::ruleset::TABLE;
use super::{Firewall, FirewallError};

/// How to run `nft`: the program and the arguments before nft's own (e.g. `ip netns exec NS nft`).
#[derive(Debug, Clone)]
pub struct NftFirewall {
    program: String,
    prefix: Vec<String>,
}

impl Default for NftFirewall {
    fn default() -> Self {
        NftFirewall { program: "nft".into(), prefix: Vec::new() }
    }
}

impl NftFirewall {
    /// `nft` of this network namespace.
    pub fn host() -> Self {
        Self::default()
    }

    /// `nft` inside network namespace `netns` (through `ip netns exec`).
    pub fn in_netns(netns: &str) -> Self {
        NftFirewall { program: "ip".into(), prefix: vec!["netns".into(), "exec".into(), netns.into(), "nft".into()] }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.prefix);
        command
    }

    /// `nft -j -f -` with the batch on stdin. (The crate's own helper does not capture nft's stderr,
    /// which is the only place nft says why it refused a batch.)
    fn apply(&self, what: &'static str, batch: &Nftables<'static>) -> Result<(), FirewallError> {
        let fail = |message: String| FirewallError::Apply { what, message };
        let payload = serde_json::to_vec(batch).map_err(|e| fail(format!("serializing: {e}")))?;
        let mut child = self
            .command()
            .args(["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("running {}: {e}", self.program)))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&payload).map_err(|e| fail(format!("writing the batch to nft: {e}")))?;
        }
        let output = child.wait_with_output().map_err(|e| fail(format!("waiting for nft: {e}")))?;
        if !output.status.success() {
            return Err(fail(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim())));
        }
        Ok(())
    }
}

impl Firewall for NftFirewall {
    fn apply_full(&self, table: &Nftables<'static>) -> Result<(), FirewallError> {
        self.apply("the full table", table)
    }

    fn apply_changes(&self, changes: &Nftables<'static>) -> Result<(), FirewallError> {
        self.apply("interface changes", changes)
    }

    fn list(&self) -> Result<Option<serde_json::Value>, FirewallError> {
        let output = self
            .command()
            .args(["-j", "list", "table", "inet", TABLE])
            .output()
            .map_err(|e| FirewallError::List(format!("running {}: {e}", self.program)))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if stderr.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(FirewallError::List(stderr.trim().to_string()));
        }
        serde_json::from_slice(&output.stdout)
            .map(Some)
            .map_err(|e| FirewallError::List(format!("parsing nft's JSON: {e}")))
    }
}

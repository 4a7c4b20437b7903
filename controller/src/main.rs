//! `hci-controller` entry point: flags, logging, then run one member until SIGTERM.

use anyhow::Context;
use clap::Parser;
use hci_controller::config::{Config, Flags, Tool};

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    if let Some(Tool::Openapi) = flags.command {
        print!("{}", hci_controller::api::openapi::document());
        return Ok(());
    }
    let config = Config::resolve(&flags)?;
    init_logging(&config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(hci_controller::node::run(config)).context("controller member failed")?;
    Ok(())
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

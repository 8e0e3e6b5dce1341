//! `proctor __proxy`: the egress proxy, run by proctor inside a container of
//! its own (see `cage/proxy.rs`). Hidden: people never run it by hand.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::CommandError;
use crate::cage::proxy::{probe, serve, AllowList, ProxyConfig};

/// Serve as a loop's allow-listing egress proxy (internal; proctor starts it).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", required_unless_present = "probe")]
    pub listen: Option<SocketAddr>,
    /// Instead of serving, check that the proxy at `host:port` answers.
    #[arg(long, value_name = "ADDR", conflicts_with = "listen")]
    pub probe: Option<String>,
    /// Comma-separated `host` or `host:port` entries that may be reached.
    #[arg(long, value_name = "HOSTS", default_value = "")]
    pub allow: String,
    /// File to append readiness and denials to, one JSON line each.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
}

pub async fn cmd_proxy(args: Args) -> Result<i32, CommandError> {
    if let Some(address) = &args.probe {
        return match probe(address).await {
            Ok(()) => Ok(0),
            Err(why) => {
                eprintln!("proctor: egress proxy unreachable: {why}");
                Ok(1)
            }
        };
    }
    let Some(listen) = args.listen else {
        return Err(CommandError::user("`--listen` or `--probe` is required"));
    };
    let entries: Vec<&str> = args.allow.split(',').collect();
    let allow = AllowList::parse(&entries).map_err(CommandError::user)?;
    serve(ProxyConfig {
        listen,
        allow,
        log: args.log,
    })
    .await
    .map_err(|e| CommandError::Internal {
        message: format!("the egress proxy cannot listen on {listen}: {e}"),
    })?;
    Ok(0)
}

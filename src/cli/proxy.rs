//! `proctor __proxy`: the egress proxy and its relay, run by proctor inside
//! containers of their own (see `cage/proxy.rs`). Hidden: people never run
//! it by hand.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::CommandError;
use crate::cage::proxy::{relay, serve, AllowList, Listen, ProxyConfig, RelayConfig};

/// Serve as a loop's allow-listing egress proxy, or as the relay to it in a
/// loop's network holder (internal; proctor starts both).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// TCP address to listen on.
    #[arg(
        long,
        value_name = "ADDR",
        required_unless_present = "listen_unix",
        conflicts_with = "listen_unix"
    )]
    pub listen: Option<SocketAddr>,
    /// Unix socket to create and listen on instead.
    #[arg(long, value_name = "PATH")]
    pub listen_unix: Option<PathBuf>,
    /// Relay every connection on `--listen` to the proxy's unix socket at
    /// PATH instead of serving as the proxy.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["listen_unix", "allow"])]
    pub relay_to: Option<PathBuf>,
    /// Comma-separated `host` or `host:port` entries that may be reached.
    #[arg(long, value_name = "HOSTS")]
    pub allow: Option<String>,
    /// File to append readiness and denials to, one JSON line each.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Exit (0) as soon as stdin closes: proctor holds it open, so the
    /// container ends when proctor does, even after `kill -9`.
    #[arg(long)]
    pub until_stdin_closes: bool,
}

pub async fn cmd_proxy(args: Args) -> Result<i32, CommandError> {
    if args.until_stdin_closes {
        // A plain thread, not the runtime's: a blocking read there would
        // keep the runtime from shutting down on the other exits.
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    if let Some(to) = args.relay_to {
        let Some(listen) = args.listen else {
            return Err(CommandError::user("`--relay-to` needs `--listen`"));
        };
        relay(RelayConfig {
            listen,
            to: to.clone(),
            log: args.log,
        })
        .await
        .map_err(|e| CommandError::Internal {
            message: format!(
                "the relay on {listen} cannot serve the egress proxy at `{}`: {e}",
                to.display()
            ),
        })?;
        return Ok(0);
    }
    let listen = match (args.listen, args.listen_unix) {
        (Some(address), None) => Listen::Tcp(address),
        (None, Some(path)) => Listen::Unix(path),
        _ => {
            return Err(CommandError::user(
                "one of `--listen` and `--listen-unix` is required",
            ))
        }
    };
    let allow = args.allow.unwrap_or_default();
    let entries: Vec<&str> = allow.split(',').collect();
    let allow = AllowList::parse(&entries).map_err(CommandError::user)?;
    let shown = listen.to_string();
    serve(ProxyConfig {
        listen,
        allow,
        log: args.log,
    })
    .await
    .map_err(|e| CommandError::Internal {
        message: format!("the egress proxy cannot listen on {shown}: {e}"),
    })?;
    Ok(0)
}

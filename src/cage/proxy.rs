//! The egress proxy: the only way out of a loop whose `network:` is a host
//! list. It runs *inside* a container of its own, as proctor's own binary
//! (`proctor __proxy`, bind-mounted read-only into the built-in `host`
//! image), on the engine's ordinary bridge, where the listed hosts are, and
//! listens on a unix socket in a host directory mounted into it.
//!
//! The agent never sees that socket. It runs in the network namespace of
//! its loop's *holder* container, which has nothing but loopback; inside
//! the holder a relay (`proctor __proxy --relay-to`) listens on
//! `127.0.0.1:PROXY_PORT` and carries each connection, byte for byte, over
//! the socket (mounted read-only into the holder, never into the agent) to
//! the proxy. The relay decides nothing; the proxy does.
//!
//! It speaks just enough HTTP/1.1 proxy protocol for agent CLIs and package
//! managers: `CONNECT host:port` tunnels (HTTPS, anything over TLS) and
//! absolute-URI plain HTTP requests. A target is allowed only when it
//! matches an entry of the allow-list exactly (see [`AllowList`]); any other
//! gets `403 Forbidden` and a line in the denial log, which the host reads
//! and turns into `network_denied` events.
//!
//! This file must never talk to the container engine, never resolve or
//! connect to a host before it was allowed, and never let a request choose
//! where its bytes go after the allow decision.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// The port the relay listens on, on the holder's loopback; agents find
/// it in `HTTP_PROXY` and friends.
pub const PROXY_PORT: u16 = 3128;
/// Where the proxy binary and its log are mounted inside the proxy container.
pub const PROXY_EXE_IN_CONTAINER: &str = "/proctor-proxy";
pub const PROXY_LOG_IN_CONTAINER: &str = "/proctor-egress.log";
/// Where the directory holding the proxy's socket is mounted, read-write
/// into the proxy and read-only into the holder.
pub const PROXY_SOCKET_DIR_IN_CONTAINER: &str = "/proctor-egress";
/// The socket's name in that directory.
pub const PROXY_SOCKET_NAME: &str = "proxy.sock";
/// Where the relay's own log (its `ready` line) is mounted in the holder.
pub const RELAY_LOG_IN_CONTAINER: &str = "/proctor-relay.log";

/// Largest request head the proxy reads before giving up on a client.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to an allowed host may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections served at once; more wait for a slot. Each may hold a
/// thread resolving a name, and the proxy's container allows 256 tasks.
const MAX_CONNECTIONS: usize = 128;
/// The log stops growing here: an agent that hammers an unlisted host must
/// not fill the host's disk. Later refusals still get their 403.
const MAX_LOG_BYTES: u64 = 8 << 20;

/// The origin-form path the proxy answers itself: proctor checks with it
/// that a loop's containers can reach their proxy at all.
pub const READY_PATH: &str = "/proctor-egress-ready";

/// The version of the denial-log line format.
pub const LOG_VERSION: u32 = 1;

/// One line of the proxy's log file: a readiness notice or a denial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogLine {
    /// The proxy listens; written once, before any connection is accepted.
    Ready { v: u32, listen: String },
    /// A request for a target that is not on the list.
    Denied {
        v: u32,
        /// `host:port` as the client asked for it (host lowercased).
        target: String,
        method: String,
    },
}

impl LogLine {
    /// Parses one line; anything that is not a log line is `None`.
    pub fn parse(line: &str) -> Option<LogLine> {
        serde_json::from_str(line.trim()).ok()
    }
}

/// The hosts a loop may reach. Entries are `host` (any port) or
/// `host:port`, where host is a DNS name, an IPv4 address or `[v6]`.
///
/// Matching is exact and case-insensitive, ignoring one trailing dot:
/// `example.com` allows neither `api.example.com` nor `example.com.evil`,
/// so every subdomain an agent needs is listed on its own. An IP address
/// matches only when the client asks for that literal address; a name is
/// never compared with the addresses it resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<(String, Option<u16>)>,
}

impl AllowList {
    /// Parses the entries; an unparsable one is an error naming it.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, String> {
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            let (host, port) = split_authority(entry)
                .ok_or_else(|| format!("`{entry}` is not `host` or `host:port`"))?;
            let port = match port {
                None => None,
                Some(p) => Some(
                    p.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("`{entry}` has a bad port `{p}`"))?,
                ),
            };
            out.push((normalize_host(host), port));
        }
        out.sort();
        out.dedup();
        Ok(AllowList { entries: out })
    }

    /// Whether a request for `host:port` may pass.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = normalize_host(host);
        self.entries
            .iter()
            .any(|(h, p)| *h == host && p.is_none_or(|p| p == port))
    }

    /// The entries in their canonical order, as the command line carries them.
    pub fn to_arg(&self) -> String {
        self.entries
            .iter()
            .map(|(h, p)| {
                let h = if h.contains(':') {
                    format!("[{h}]")
                } else {
                    h.clone()
                };
                match p {
                    Some(p) => format!("{h}:{p}"),
                    None => h,
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Lowercase, without brackets or one trailing dot.
fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

/// `host[:port]` or `[v6][:port]` into host and port text.
fn split_authority(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.is_empty() || authority.contains(['/', '@', ' ', '\t']) {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if v6.is_empty() {
            return None;
        }
        return match after {
            "" => Some((&authority[..v6.len() + 2], None)),
            _ => Some((&authority[..v6.len() + 2], Some(after.strip_prefix(':')?))),
        };
    }
    match authority.rsplit_once(':') {
        // A bare IPv6 address without brackets is not an authority.
        Some((host, _)) if host.contains(':') => None,
        Some((host, port)) if !host.is_empty() => Some((host, Some(port))),
        Some(_) => None,
        None => Some((authority, None)),
    }
}

/// What a client asked for, from its request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// `GET` [`READY_PATH`]: answered by the proxy itself.
    Ready,
    /// `CONNECT host:port`: a raw tunnel.
    Connect { host: String, port: u16 },
    /// An absolute-URI `http://` request, rewritten to origin form.
    Forward {
        host: String,
        port: u16,
        method: String,
        /// The head to send upstream: origin-form request line, the
        /// client's headers minus hop-by-hop ones, `Connection: close`.
        head: Vec<u8>,
    },
}

impl Request {
    fn target(&self) -> (&str, u16) {
        match self {
            Request::Ready => ("", 0),
            Request::Connect { host, port } | Request::Forward { host, port, .. } => {
                (host.as_str(), *port)
            }
        }
    }

    fn method(&self) -> &str {
        match self {
            Request::Ready => "GET",
            Request::Connect { .. } => "CONNECT",
            Request::Forward { method, .. } => method,
        }
    }
}

/// Why a request head was refused before any allow decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadRequest(pub String);

/// Parses a complete request head (up to and including the blank line).
pub(crate) fn parse_head(head: &[u8]) -> Result<Request, BadRequest> {
    let bad = |why: &str| BadRequest(why.to_string());
    let text = std::str::from_utf8(head).map_err(|_| bad("the request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad("only HTTP/1.x is spoken here"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad("malformed method"));
    }
    if method == "GET" && target == READY_PATH {
        return Ok(Request::Ready);
    }
    if method == "CONNECT" {
        let (host, port) = split_authority(target).ok_or_else(|| bad("bad CONNECT target"))?;
        let port = port
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("CONNECT needs `host:port`"))?;
        return Ok(Request::Connect {
            host: normalize_host(host),
            port,
        });
    }
    let Some(rest) = target
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
        .map(|_| &target[7..])
    else {
        return Err(bad(
            "only absolute `http://` URIs and CONNECT are proxied; HTTPS goes through CONNECT",
        ));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = split_authority(authority).ok_or_else(|| bad("bad host in URI"))?;
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("bad port in URI"))?,
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    // The URI's authority is the target (RFC 9112, 3.2.2): a `Host` header
    // naming another site must not reach a virtual host behind an allowed
    // address.
    let mut out = format!("{method} {path} {version}\r\nHost: {authority}\r\n");
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let name = line.split(':').next().unwrap_or_default().trim();
        let dropped = [
            "host",
            "connection",
            "proxy-connection",
            "proxy-authorization",
            "keep-alive",
        ]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h));
        if !dropped {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    // One request per upstream connection: a second request on the same
    // client connection must not ride a tunnel the first one opened.
    out.push_str("Connection: close\r\n\r\n");
    Ok(Request::Forward {
        host: normalize_host(host),
        port,
        method: method.to_string(),
        head: out.into_bytes(),
    })
}

/// Where the proxy accepts connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    /// A unix socket created at this path (the relay's way in).
    Unix(PathBuf),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(address) => write!(f, "{address}"),
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The proxy's settings, from `proctor __proxy`'s command line.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: Listen,
    pub allow: AllowList,
    /// Where readiness and denials are appended, one JSON line each.
    pub log: Option<PathBuf>,
}

/// A listening socket of either kind.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    async fn bind(listen: &Listen) -> std::io::Result<(Listener, String)> {
        match listen {
            Listen::Tcp(address) => {
                let listener = TcpListener::bind(address).await?;
                let shown = listener.local_addr()?.to_string();
                Ok((Listener::Tcp(listener), shown))
            }
            Listen::Unix(path) => {
                // A socket left by an earlier proxy in the same directory.
                if std::fs::symlink_metadata(path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    std::fs::remove_file(path)?;
                }
                let listener = UnixListener::bind(path)?;
                Ok((Listener::Unix(listener), listen.to_string()))
            }
        }
    }

    async fn accept(&self) -> std::io::Result<Conn> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok(Conn::Tcp(stream))
            }
            Listener::Unix(listener) => Ok(Conn::Unix(listener.accept().await?.0)),
        }
    }
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Serves until the process is killed. Returns only if it cannot listen.
pub async fn serve(config: ProxyConfig) -> std::io::Result<()> {
    let (listener, shown) = Listener::bind(&config.listen).await?;
    let log = Arc::new(DenialLog {
        path: config.log.clone(),
        written: std::sync::atomic::AtomicU64::new(0),
    });
    log.write(&LogLine::Ready {
        v: LOG_VERSION,
        listen: shown,
    });
    let allow = Arc::new(config.allow);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let client = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors and the like: back off, keep serving.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let allow = allow.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match client {
                Conn::Tcp(stream) => handle(stream, &allow, &log).await,
                Conn::Unix(stream) => handle(stream, &allow, &log).await,
            }
        });
    }
}

/// The relay's settings: listen on `listen` (the holder's loopback) and
/// carry every connection to the proxy's unix socket at `to`.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub listen: SocketAddr,
    pub to: PathBuf,
    /// Where the relay appends its `ready` line.
    pub log: Option<PathBuf>,
}

/// How long the relay waits for the proxy to answer through the socket
/// before it gives up (the proxy is started first, so this is slack).
const RELAY_PROXY_WAIT: Duration = Duration::from_secs(15);

/// Relays until the process is killed. It reports `ready` only once it
/// listens *and* the proxy answered through the socket, so a holder whose
/// relay is ready gives its agents a working way out. Returns only if it
/// cannot listen or never reaches the proxy.
pub async fn relay(config: RelayConfig) -> std::io::Result<()> {
    let listener = TcpListener::bind(config.listen).await?;
    let deadline = tokio::time::Instant::now() + RELAY_PROXY_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        match probe_unix(&config.to).await {
            Ok(()) => break,
            Err(why) if tokio::time::Instant::now() >= deadline => {
                return Err(std::io::Error::other(why));
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }
    let log = DenialLog {
        path: config.log.clone(),
        written: std::sync::atomic::AtomicU64::new(0),
    };
    log.write(&LogLine::Ready {
        v: LOG_VERSION,
        listen: listener.local_addr()?.to_string(),
    });
    let to = Arc::new(config.to);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let mut client = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let to = to.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = client.set_nodelay(true);
            // No proxy, no way out: the client sees its connection close.
            if let Ok(mut upstream) = UnixStream::connect(to.as_path()).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}

/// Appends log lines; a line is one `write` on an `O_APPEND` file, so
/// concurrent connections never interleave within a line.
struct DenialLog {
    path: Option<PathBuf>,
    written: std::sync::atomic::AtomicU64,
}

impl DenialLog {
    fn write(&self, line: &LogLine) {
        let Ok(mut text) = serde_json::to_string(line) else {
            return;
        };
        text.push('\n');
        let before = self
            .written
            .fetch_add(text.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if before + text.len() as u64 > MAX_LOG_BYTES {
            return;
        }
        match &self.path {
            Some(path) => append(path, text.as_bytes()),
            // Run by hand: the log is the terminal. (In its container
            // nobody reads stdout, so it stays quiet there.)
            None => {
                // A closed stdout ends the log quietly (never a panic).
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
        }
    }
}

fn append(path: &Path, bytes: &[u8]) {
    let file = std::fs::OpenOptions::new().append(true).open(path);
    if let Ok(mut file) = file {
        let _ = file.write_all(bytes);
    }
}

async fn handle<S>(mut client: S, allow: &AllowList, log: &DenialLog)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (head, rest) = match read_head(&mut client).await {
        Ok(read) => read,
        Err(why) => {
            respond(&mut client, "400 Bad Request", &why).await;
            return;
        }
    };
    let request = match parse_head(&head) {
        Ok(request) => request,
        Err(BadRequest(why)) => {
            respond(&mut client, "400 Bad Request", &why).await;
            return;
        }
    };
    if request == Request::Ready {
        respond(&mut client, "200 OK", "ready\n").await;
        return;
    }
    let (host, port) = request.target();
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    if !allow.allows(host, port) {
        // Logged before the answer, so a client that saw its 403 can rely
        // on the denial being on record.
        log.write(&LogLine::Denied {
            v: LOG_VERSION,
            target: target.clone(),
            method: request.method().to_string(),
        });
        let body = format!(
            "proctor: `{target}` is not on this loop's network allow-list; add it to `network:` in the manifest\n"
        );
        respond(&mut client, "403 Forbidden", &body).await;
        return;
    }
    let connect_host = host.to_string();
    let upstream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((connect_host.as_str(), port)),
    )
    .await;
    let mut upstream = match upstream {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let body = format!("proctor: cannot reach `{target}`: {e}\n");
            respond(&mut client, "502 Bad Gateway", &body).await;
            return;
        }
        Err(_) => {
            let body = format!("proctor: connecting to `{target}` timed out\n");
            respond(&mut client, "504 Gateway Timeout", &body).await;
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let started = match &request {
        // Answered above.
        Request::Ready => return,
        Request::Connect { .. } => {
            client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
        }
        Request::Forward { head, .. } => upstream.write_all(head).await,
    };
    if started.is_err() {
        return;
    }
    // Bytes the client sent after its head (a TLS hello, a request body).
    if !rest.is_empty() && upstream.write_all(&rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Reads until the blank line that ends a request head; returns the head
/// and whatever followed it in the same reads.
async fn read_head<S>(client: &mut S) -> Result<(Vec<u8>, Vec<u8>), String>
where
    S: AsyncRead + Unpin,
{
    let read = async {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            let n = client
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read failed: {e}"))?;
            if n == 0 {
                return Err("the client closed before sending a request".to_string());
            }
            let searched_from = buf.len().saturating_sub(3);
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf[searched_from..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
            {
                let end = searched_from + i + 4;
                let rest = buf.split_off(end);
                return Ok((buf, rest));
            }
            if buf.len() > MAX_HEAD_BYTES {
                return Err("request head too large".to_string());
            }
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, read)
        .await
        .map_err(|_| "timed out waiting for the request head".to_string())?
}

/// Asks the proxy at `address` (`host:port`) whether it is reachable and
/// serving; `Err` says why not.
pub async fn probe(address: &str) -> Result<(), String> {
    let exchange = async {
        let conn = TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        ask_ready(conn, address).await
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("no answer from {address} within 5s"))?
}

/// [`probe`] through the proxy's unix socket.
pub async fn probe_unix(path: &Path) -> Result<(), String> {
    let shown = format!("unix:{}", path.display());
    let exchange = async {
        let conn = UnixStream::connect(path)
            .await
            .map_err(|e| format!("cannot connect to {shown}: {e}"))?;
        ask_ready(conn, &shown).await
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("no answer from {shown} within 5s"))?
}

async fn ask_ready<S>(mut conn: S, shown: &str) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!("GET {READY_PATH} HTTP/1.1\r\nHost: proxy\r\n\r\n");
    conn.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send to {shown}: {e}"))?;
    let mut reply = Vec::new();
    (&mut conn)
        .take(1024)
        .read_to_end(&mut reply)
        .await
        .map_err(|e| format!("no reply from {shown}: {e}"))?;
    if reply.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!(
            "unexpected reply from {shown}: {}",
            String::from_utf8_lossy(&reply)
                .lines()
                .next()
                .unwrap_or_default()
        ))
    }
}

async fn respond<S>(client: &mut S, status: &str, body: &str)
where
    S: AsyncWrite + Unpin,
{
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(reply.as_bytes()).await;
    let _ = client.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(entries).unwrap()
    }

    #[test]
    fn hosts_match_exactly_with_or_without_a_port() {
        let allow = list(&["API.example.com", "registry.npmjs.org:443", "10.0.0.7:8000"]);
        assert!(allow.allows("api.example.com", 443));
        assert!(allow.allows("api.example.com", 80));
        assert!(allow.allows("API.EXAMPLE.COM.", 8443));
        assert!(!allow.allows("example.com", 443));
        assert!(!allow.allows("evil.api.example.com", 443));
        assert!(!allow.allows("api.example.com.evil", 443));
        assert!(allow.allows("registry.npmjs.org", 443));
        assert!(!allow.allows("registry.npmjs.org", 80));
        assert!(allow.allows("10.0.0.7", 8000));
        assert!(!allow.allows("10.0.0.7", 8001));
        assert!(!allow.allows("10.0.0.70", 8000));
    }

    #[test]
    fn ipv6_entries_are_bracketed() {
        let allow = list(&["[::1]:8080", "[fd00::2]"]);
        assert!(allow.allows("::1", 8080));
        assert!(allow.allows("[::1]", 8080));
        assert!(!allow.allows("::1", 80));
        assert!(allow.allows("FD00::2", 1));
        let arg = allow.to_arg();
        assert_eq!(arg, "[::1]:8080,[fd00::2]");
        let split: Vec<&str> = arg.split(',').collect();
        assert_eq!(AllowList::parse(&split).unwrap(), allow);
    }

    #[test]
    fn bad_entries_are_refused() {
        for entry in [
            "a b",
            "host:0",
            "host:99999",
            "host:x",
            "user@host",
            "::1",
            "[]",
        ] {
            assert!(AllowList::parse(&[entry]).is_err(), "{entry}");
        }
    }

    #[test]
    fn connect_heads_parse() {
        let req = parse_head(b"CONNECT Api.Example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(
            req,
            Request::Connect {
                host: "api.example.com".into(),
                port: 443
            }
        );
        assert!(parse_head(b"CONNECT example.com HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_head(b"CONNECT [::1]:22 HTTP/1.1\r\n\r\n").is_ok());
    }

    #[test]
    fn absolute_uris_are_rewritten_to_origin_form() {
        let head = b"GET http://srv:8000/a/b?c=d HTTP/1.1\r\nHost: elsewhere.example\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: x\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n";
        let Request::Forward {
            host,
            port,
            method,
            head,
        } = parse_head(head).unwrap()
        else {
            panic!("not a forward");
        };
        assert_eq!((host.as_str(), port, method.as_str()), ("srv", 8000, "GET"));
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "GET /a/b?c=d HTTP/1.1\r\nHost: srv:8000\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let Request::Forward { port, head, .. } =
            parse_head(b"POST http://example.com?q HTTP/1.0\r\n\r\n").unwrap()
        else {
            panic!("not a forward");
        };
        assert_eq!(port, 80);
        assert!(String::from_utf8(head)
            .unwrap()
            .starts_with("POST /?q HTTP/1.0\r\n"));
    }

    #[test]
    fn other_requests_are_bad() {
        for head in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET https://example.com/ HTTP/1.1\r\n\r\n",
            b"GET http://user@example.com/ HTTP/1.1\r\n\r\n",
            b"GET http://example.com/ HTTP/2\r\n\r\n",
            b"get http://example.com/ HTTP/1.1\r\n\r\n",
            b"GET  http://example.com/ HTTP/1.1\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
        ] {
            assert!(
                parse_head(head).is_err(),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn log_lines_round_trip() {
        let line = LogLine::Denied {
            v: LOG_VERSION,
            target: "evil.example:443".into(),
            method: "CONNECT".into(),
        };
        let text = serde_json::to_string(&line).unwrap();
        assert_eq!(LogLine::parse(&text), Some(line));
        assert_eq!(LogLine::parse("not json"), None);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(head in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_head(&head);
        }

        #[test]
        fn a_denied_name_stays_denied_under_any_case(host in "[a-z][a-z0-9-]{0,12}\\.[a-z]{2,5}", port in 1u16..) {
            let allow = list(&["allowed.example"]);
            prop_assert!(!allow.allows(&host.to_ascii_uppercase(), port) || host == "allowed.example");
        }
    }

    /// Sends `send` to `proxy` and returns all it answers (within 5 s).
    async fn exchange(proxy: SocketAddr, send: &str) -> String {
        let mut conn = TcpStream::connect(proxy).await.unwrap();
        conn.write_all(send.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The proxy end to end on loopback, with a tiny upstream server.
    #[tokio::test]
    async fn tunnels_and_forwards_only_listed_hosts() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_port = upstream.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = upstream.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    let first = String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let body = format!("upstream saw: {first}");
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("egress.log");
        std::fs::write(&log, "").unwrap();
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = free.local_addr().unwrap();
        drop(free);
        let config = ProxyConfig {
            listen: Listen::Tcp(listen),
            allow: AllowList::parse(&[format!("127.0.0.1:{up_port}")]).unwrap(),
            log: Some(log.clone()),
        };
        tokio::spawn(serve(config));
        let mut ready = false;
        for _ in 0..100 {
            if std::fs::read_to_string(&log).unwrap().contains("\"ready\"") {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ready, "the proxy never became ready");

        let got = exchange(
            listen,
            &format!("GET http://127.0.0.1:{up_port}/x HTTP/1.1\r\nHost: h\r\n\r\n"),
        )
        .await;
        assert!(got.contains("upstream saw: GET /x HTTP/1.1"), "{got}");

        let got = exchange(
            listen,
            &format!("CONNECT 127.0.0.1:{up_port} HTTP/1.1\r\n\r\nGET /tunnelled HTTP/1.1\r\n\r\n"),
        )
        .await;
        assert!(
            got.starts_with("HTTP/1.1 200 Connection established"),
            "{got}"
        );
        assert!(got.contains("upstream saw: GET /tunnelled"), "{got}");

        let other = up_port.wrapping_add(1).max(1);
        let got = exchange(
            listen,
            &format!("CONNECT 127.0.0.1:{other} HTTP/1.1\r\n\r\n"),
        )
        .await;
        assert!(got.starts_with("HTTP/1.1 403"), "{got}");
        let got = exchange(listen, "GET http://localhost:1/ HTTP/1.1\r\n\r\n").await;
        assert!(got.starts_with("HTTP/1.1 403"), "{got}");
        let got = exchange(listen, "GET /direct HTTP/1.1\r\n\r\n").await;
        assert!(got.starts_with("HTTP/1.1 400"), "{got}");
        probe(&listen.to_string()).await.unwrap();
        assert!(probe("127.0.0.1:1").await.is_err());

        let lines: Vec<LogLine> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter_map(LogLine::parse)
            .collect();
        let denied: Vec<&str> = lines
            .iter()
            .filter_map(|l| match l {
                LogLine::Denied { target, .. } => Some(target.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            denied,
            [format!("127.0.0.1:{other}").as_str(), "localhost:1"]
        );
    }
    /// The relay carries connections from loopback to the proxy's unix
    /// socket; the proxy decides, and logs refusals, as over TCP.
    #[tokio::test]
    async fn the_relay_reaches_the_proxy_only_through_its_socket() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_port = upstream.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = upstream.accept().await {
                let mut buf = vec![0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nup")
                    .await;
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join(PROXY_SOCKET_NAME);
        let proxy_log = dir.path().join("egress.log");
        let relay_log = dir.path().join("relay.log");
        std::fs::write(&proxy_log, "").unwrap();
        std::fs::write(&relay_log, "").unwrap();
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = free.local_addr().unwrap();
        drop(free);
        // The relay starts first and waits for the proxy behind it.
        tokio::spawn(relay(RelayConfig {
            listen,
            to: socket.clone(),
            log: Some(relay_log.clone()),
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!std::fs::read_to_string(&relay_log)
            .unwrap()
            .contains("ready"));
        tokio::spawn(serve(ProxyConfig {
            listen: Listen::Unix(socket.clone()),
            allow: AllowList::parse(&[format!("127.0.0.1:{up_port}")]).unwrap(),
            log: Some(proxy_log.clone()),
        }));
        let mut ready = false;
        for _ in 0..200 {
            if std::fs::read_to_string(&relay_log)
                .unwrap()
                .lines()
                .any(|l| matches!(LogLine::parse(l), Some(LogLine::Ready { .. })))
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ready, "the relay never became ready");
        probe_unix(&socket).await.unwrap();
        probe(&listen.to_string()).await.unwrap();

        let got = exchange(
            listen,
            &format!("GET http://127.0.0.1:{up_port}/ HTTP/1.1\r\n\r\n"),
        )
        .await;
        assert!(got.ends_with("up"), "{got}");
        let got = exchange(listen, "CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n").await;
        assert!(got.starts_with("HTTP/1.1 403"), "{got}");
        let log = std::fs::read_to_string(&proxy_log).unwrap();
        assert!(log.contains("\"target\":\"127.0.0.1:1\""), "{log}");
        assert!(
            log.contains(&format!("\"listen\":\"unix:{}\"", socket.display())),
            "{log}"
        );
    }
}

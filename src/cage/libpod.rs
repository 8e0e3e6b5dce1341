//! The calls proctor makes to Podman's native (libpod) API: creating a
//! container, waiting for it, and reading a container's exit code early.
//! bollard speaks only the Docker-compatible API, whose create endpoint on
//! Podman ignores the init path and the options of mounts (see `spec.rs`),
//! whose wait endpoint on Podman 4 polls the container's state with no
//! pause at all (a core of the service's CPU for as long as the container
//! runs, see [`wait_container`]), and whose container model cannot parse
//! Podman's `stopped` state; every other call (attach, start, kill,
//! remove, list, network removal) goes through bollard on both engines. [`ping`] here only reads why a TLS connection
//! fails (see `docker/connect.rs`).
//!
//! This is a deliberately tiny HTTP/1.1 client over the engine's unix
//! socket or TCP address (plain or TLS with [`tls_config`], which the
//! Docker API client uses too): one request, `Connection: close`, a bounded
//! reply. It must never be used for anything streaming.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::address::{EngineAddress, TlsFiles};
use super::CageError;

/// Where the native API answers, with the TLS setup made once.
#[derive(Debug, Clone)]
pub(crate) enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
    Tls {
        authority: String,
        server_name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
    },
}

impl Endpoint {
    /// The endpoint for `address`; reads the TLS files, if any.
    pub(crate) fn new(address: &EngineAddress) -> Result<Endpoint, CageError> {
        match address {
            EngineAddress::Unix(path) => Ok(Endpoint::Unix(path.clone())),
            EngineAddress::Tcp {
                authority,
                tls: None,
            } => Ok(Endpoint::Tcp(authority.clone())),
            EngineAddress::Tcp {
                authority,
                tls: Some(files),
            } => {
                let host = match authority.rsplit_once(':') {
                    Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
                    None => authority.as_str(),
                };
                let server_name =
                    ServerName::try_from(host.to_string()).map_err(|e| CageError::BadAddress {
                        setting: "engine".into(),
                        address: address.to_string(),
                        reason: format!("not a TLS server name: {e}"),
                    })?;
                Ok(Endpoint::Tls {
                    authority: authority.clone(),
                    server_name,
                    config: Arc::new(tls_config(files)?),
                })
            }
        }
    }
}

/// A rustls client that trusts only `ca.pem` (not the system's roots) and
/// presents `cert.pem` with `key.pem` when `DOCKER_CERT_PATH` holds them
/// (none otherwise, as Docker's client does), for `DOCKER_TLS_VERIFY`; a
/// file that holds no certificate or key is an error naming it.
pub(crate) fn tls_config(files: &TlsFiles) -> Result<rustls::ClientConfig, CageError> {
    let bad = |path: &PathBuf, what: String| CageError::TlsFile {
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, what),
    };
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&files.ca)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(&files.ca, e.to_string()))?;
    let (added, _) = roots.add_parsable_certificates(cas);
    if added == 0 {
        return Err(bad(&files.ca, "no CA certificate in it".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&files.ca, e.to_string()))?
        .with_root_certificates(roots);
    let Some(client) = &files.client else {
        return Ok(builder.with_no_client_auth());
    };
    let certs = CertificateDer::pem_file_iter(&client.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(&client.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(&client.cert, "no PEM certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&client.key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            bad(&client.key, "no PEM private key in it".into())
        }
        e => bad(&client.key, e.to_string()),
    })?;
    builder
        .with_client_auth_cert(certs, key)
        .map_err(|e| bad(&client.key, e.to_string()))
}

trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

async fn open(endpoint: &Endpoint) -> std::io::Result<Box<dyn Conn>> {
    Ok(match endpoint {
        Endpoint::Unix(path) => Box::new(UnixStream::connect(path).await?),
        Endpoint::Tcp(authority) => Box::new(TcpStream::connect(authority.as_str()).await?),
        Endpoint::Tls {
            authority,
            server_name,
            config,
        } => {
            let tcp = TcpStream::connect(authority.as_str()).await?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            Box::new(connector.connect(server_name.clone(), tcp).await?)
        }
    })
}

/// Replies larger than this are not a create reply.
const MAX_REPLY_BYTES: u64 = 1 << 20;

/// Creates a container from a libpod `SpecGenerator` body and returns its id
/// and the engine's warnings.
pub(crate) async fn create_container(
    endpoint: &Endpoint,
    api_version: &str,
    body: &Value,
    timeout: Duration,
) -> Result<(String, Vec<String>), CageError> {
    const OP: &str = "libpod create container";
    let path = format!("/v{api_version}/libpod/containers/create");
    let (status, json) = request(endpoint, "POST", &path, Some(body), timeout, OP).await?;
    if (200..300).contains(&status) {
        if let Some(id) = json.get("Id").and_then(Value::as_str) {
            let warnings = json
                .get("Warnings")
                .and_then(Value::as_array)
                .map(|w| {
                    w.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            return Ok((id.to_string(), warnings));
        }
    }
    Err(reply_error(OP, status, &json))
}

/// How often Podman's service looks at a waited-on container's state. The
/// exit is normally read sooner, when the output stream closes (see
/// [`exit_code_if_ended`]); this bounds the delay when it does not.
pub(crate) const WAIT_INTERVAL: &str = "100ms";

/// Waits for a container's command to end and returns its exit code.
///
/// Podman's Docker-compatible wait (`POST /containers/{id}/wait`) polls
/// the state database with a one-nanosecond interval: measured on Podman
/// 4.3, 4.1 s of the service's CPU over a 4.3 s wait, against 0.02 s for
/// this endpoint with [`WAIT_INTERVAL`]. A CPU the exam under test then
/// does not get.
pub(crate) async fn wait_container(
    endpoint: &Endpoint,
    api_version: &str,
    id: &str,
    timeout: Duration,
) -> Result<i64, CageError> {
    const OP: &str = "libpod wait for container";
    let path = format!(
        "/v{api_version}/libpod/containers/{id}/wait?condition=stopped&condition=exited&interval={WAIT_INTERVAL}"
    );
    let (status, json) = request(endpoint, "POST", &path, None, timeout, OP).await?;
    if !(200..300).contains(&status) {
        return Err(reply_error(OP, status, &json));
    }
    // The code comes as a bare number, as text.
    exit_code_of(&json).ok_or_else(|| CageError::EngineReply {
        op: OP,
        status,
        message: format!("no exit code in the reply: {json}"),
    })
}

fn exit_code_of(json: &Value) -> Option<i64> {
    match json {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The exit code of a container once its command has ended, `None` while
/// it still runs.
///
/// Podman marks a container `stopped`, with its exit code, as soon as the
/// command ends, but `exited` only after a separate cleanup process ran;
/// its wait endpoints wait for the latter, 80-400 ms later.
pub(crate) async fn exit_code_if_ended(
    endpoint: &Endpoint,
    api_version: &str,
    id: &str,
    timeout: Duration,
) -> Result<Option<i64>, CageError> {
    const OP: &str = "libpod inspect container";
    let path = format!("/v{api_version}/libpod/containers/{id}/json");
    let (status, json) = request(endpoint, "GET", &path, None, timeout, OP).await?;
    if !(200..300).contains(&status) {
        return Err(reply_error(OP, status, &json));
    }
    let state = &json["State"];
    match state["Status"].as_str() {
        Some("stopped") | Some("exited") => Ok(state["ExitCode"].as_i64()),
        _ => Ok(None),
    }
}

/// `GET /_ping`, for what a failing connection says (a TLS alert, say).
pub(crate) async fn ping(endpoint: &Endpoint, timeout: Duration) -> Result<(), CageError> {
    request(endpoint, "GET", "/_ping", None, timeout, "ping").await?;
    Ok(())
}

fn reply_error(op: &'static str, status: u16, json: &Value) -> CageError {
    let message = json
        .get("message")
        .or(Some(json))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| json.to_string());
    CageError::EngineReply {
        op,
        status,
        message,
    }
}

/// One request, `Connection: close`, the whole (bounded) reply parsed as
/// JSON (`null` when it is not JSON).
async fn request(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
    op: &'static str,
) -> Result<(u16, Value), CageError> {
    let payload = body.map(Value::to_string).unwrap_or_default();
    let content_type = if body.is_some() {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\n\
         Host: podman\r\n\
         {content_type}\
         Content-Length: {}\r\n\
         Connection: close\r\n\r\n{payload}",
        payload.len()
    );
    let exchange = async {
        let mut stream = open(endpoint).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut reply = Vec::new();
        (&mut stream)
            .take(MAX_REPLY_BYTES)
            .read_to_end(&mut reply)
            .await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| CageError::EngineTimeout { op, after: timeout })?
        .map_err(|source| CageError::EngineIo { op, source })?;
    let (status, body) = parse_reply(&reply).ok_or_else(|| CageError::EngineReply {
        op,
        status: 0,
        message: "unreadable HTTP reply".into(),
    })?;
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).trim().to_string()));
    Ok((status, json))
}

/// Splits a complete HTTP/1.1 reply into its status and decoded body.
fn parse_reply(reply: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&reply[..split]).ok()?;
    let rest = &reply[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some((status, body))
}

/// Decodes a chunked transfer-encoded body.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_reply_parses() {
        let reply = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"Id\":\"ab\"}";
        let (status, body) = parse_reply(reply).unwrap();
        assert_eq!(status, 201);
        assert_eq!(body, b"{\"Id\":\"ab\"}");
    }

    #[test]
    fn chunked_reply_parses() {
        let reply = b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n";
        let (status, body) = parse_reply(reply).unwrap();
        assert_eq!(status, 500);
        assert_eq!(body, b"hello world");
    }

    #[test]
    fn a_wait_reply_gives_its_exit_code() {
        let reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n7\n";
        let (status, body) = parse_reply(reply).unwrap();
        assert_eq!(status, 200);
        let json = serde_json::from_slice(&body).unwrap();
        assert_eq!(exit_code_of(&json), Some(7));
        assert_eq!(exit_code_of(&Value::String("-1\n".into())), Some(-1));
        assert_eq!(exit_code_of(&Value::Null), None);
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(parse_reply(b"nonsense").is_none());
        assert!(parse_reply(b"HTTP/1.1 abc\r\n\r\n").is_none());
        assert!(
            parse_reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_none()
        );
    }
}

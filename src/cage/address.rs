//! Where the engine is: a local unix socket, or a TCP address (plain HTTP,
//! or TLS by Docker's conventions, with or without a client certificate).
//!
//! Parsing, and seeing which of Docker's TLS files exist; nothing here
//! connects. An address proctor cannot use is a one-line error that names
//! the setting and says what is supported.

use std::fmt;
use std::path::{Path, PathBuf};

use super::CageError;

/// Docker's ports for the engine API without and with TLS.
const PLAIN_PORT: u16 = 2375;
const TLS_PORT: u16 = 2376;

/// An engine address proctor can talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineAddress {
    /// A unix socket on this machine: the engine shares the host's
    /// filesystem, so trees travel as bind mounts.
    Unix(PathBuf),
    /// `host:port` over TCP, plain or TLS: the engine may be on another
    /// machine, so trees travel as tar streams through the API.
    Tcp {
        /// `host:port` (`[v6]:port` for IPv6).
        authority: String,
        tls: Option<TlsFiles>,
    },
}

/// The CA that signed the engine's certificate and, if there is one, the
/// client certificate with its key, as Docker keeps them in
/// `DOCKER_CERT_PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The directory the files are in (`DOCKER_CERT_PATH`, else `~/.docker`).
    pub dir: PathBuf,
    pub ca: PathBuf,
    /// `None` when neither `cert.pem` nor `key.pem` exists: like Docker's
    /// client, proctor then connects without a client certificate.
    pub client: Option<ClientCert>,
}

/// A client certificate and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// `ca.pem` in `dir`, and `cert.pem` with `key.pem` if both exist.
    /// Docker's client uses its default client certificate only when the
    /// files are there; one without the other is an error naming the
    /// missing one.
    pub fn in_dir(dir: &Path) -> Result<TlsFiles, CageError> {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        // Anything but "not found" (say, a directory proctor may not
        // search) counts as there, so reading it names the real problem.
        let absent = |path: &Path| matches!(std::fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        let client = match (absent(&cert), absent(&key)) {
            (true, true) => None,
            (false, false) => Some(ClientCert { cert, key }),
            (cert_absent, _) => {
                let (present, missing) = if cert_absent {
                    ("key.pem", "cert.pem")
                } else {
                    ("cert.pem", "key.pem")
                };
                return Err(CageError::TlsHalfPair {
                    dir: dir.to_path_buf(),
                    present,
                    missing,
                });
            }
        };
        Ok(TlsFiles {
            dir: dir.to_path_buf(),
            ca: dir.join("ca.pem"),
            client,
        })
    }

    /// Fails, naming the file, unless `ca.pem` and the client certificate
    /// and key, if any, can be read.
    pub fn check_readable(&self) -> Result<(), CageError> {
        let client = self.client.iter().flat_map(|c| [&c.cert, &c.key]);
        for path in std::iter::once(&self.ca).chain(client) {
            if let Err(source) = std::fs::File::open(path) {
                return Err(CageError::TlsFile {
                    path: path.clone(),
                    source,
                });
            }
        }
        Ok(())
    }
}

/// The TLS settings from the environment (Docker's variables).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsEnv {
    /// `DOCKER_TLS_VERIFY` set to anything but empty or `0`.
    pub verify: bool,
    /// `DOCKER_CERT_PATH`, else `~/.docker`.
    pub cert_dir: Option<PathBuf>,
}

impl TlsEnv {
    /// Reads `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH` and `HOME`.
    pub fn from_env() -> TlsEnv {
        let verify = std::env::var("DOCKER_TLS_VERIFY")
            .map(|v| !v.trim().is_empty() && v.trim() != "0")
            .unwrap_or(false);
        let cert_dir = std::env::var_os("DOCKER_CERT_PATH")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| PathBuf::from(h).join(".docker"))
            });
        TlsEnv { verify, cert_dir }
    }
}

impl EngineAddress {
    /// Parses `address` as `setting` (`DOCKER_HOST`, `engine`) names it.
    pub fn parse(address: &str, setting: &str, tls: &TlsEnv) -> Result<EngineAddress, CageError> {
        let bad = |reason: &str| CageError::BadAddress {
            setting: setting.to_string(),
            address: address.to_string(),
            reason: reason.to_string(),
        };
        let address = address.trim();
        if let Some(path) = address.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad("a unix socket path must be absolute"));
            }
            return Ok(EngineAddress::Unix(PathBuf::from(path)));
        }
        if address.starts_with('/') {
            return Ok(EngineAddress::Unix(PathBuf::from(address)));
        }
        let Some(rest) = address.strip_prefix("tcp://") else {
            let scheme = address
                .split_once("://")
                .map(|(s, _)| format!("`{s}://` is not supported"))
                .unwrap_or_else(|| "not an engine address".into());
            return Err(bad(&scheme));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err(bad(
                "a tcp address is `tcp://host:port`, without a path or user",
            ));
        }
        let default_port = if tls.verify { TLS_PORT } else { PLAIN_PORT };
        let authority = authority(rest, default_port).map_err(|reason| bad(&reason))?;
        let tls = match (tls.verify, &tls.cert_dir) {
            (false, _) => None,
            (true, Some(dir)) => Some(TlsFiles::in_dir(dir)?),
            (true, None) => {
                return Err(bad(
                    "`DOCKER_TLS_VERIFY` is set but neither `DOCKER_CERT_PATH` nor `HOME` says where the certificates are",
                ))
            }
        };
        Ok(EngineAddress::Tcp { authority, tls })
    }

    /// Whether the engine may be on another machine (and so must not be
    /// handed host paths).
    pub fn is_remote(&self) -> bool {
        matches!(self, EngineAddress::Tcp { .. })
    }
}

impl fmt::Display for EngineAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineAddress::Unix(path) => write!(f, "unix://{}", path.display()),
            EngineAddress::Tcp {
                authority,
                tls: None,
            } => write!(f, "tcp://{authority}"),
            EngineAddress::Tcp {
                authority,
                tls: Some(_),
            } => write!(f, "tcp://{authority} (TLS)"),
        }
    }
}

/// `host:port` checked, with `default_port` added when none is given.
fn authority(text: &str, default_port: u16) -> Result<String, String> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| "an IPv6 host needs its closing `]`".to_string())?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected `{p}` after the host"))?,
            ),
        };
        (format!("[{host}]"), port)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (text.to_string(), None),
        }
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty() {
        return Err("the address names no host".into());
    }
    if !bare
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(format!("`{bare}` is not a host name or IP address"));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("`{p}` is not a port number")),
        },
    };
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> TlsEnv {
        TlsEnv::default()
    }

    /// The address, or the error as the user reads it: message, then hint.
    fn parse(text: &str) -> Result<EngineAddress, String> {
        use crate::exit_codes::DomainError;
        EngineAddress::parse(text, "DOCKER_HOST", &plain())
            .map_err(|e| format!("{e}; {}", e.hint().unwrap_or_default()))
    }

    #[test]
    fn unix_sockets_parse_with_or_without_scheme() {
        assert_eq!(
            parse("unix:///run/x.sock").unwrap(),
            EngineAddress::Unix("/run/x.sock".into())
        );
        assert_eq!(
            parse("/run/x.sock").unwrap(),
            EngineAddress::Unix("/run/x.sock".into())
        );
        assert!(parse("unix://relative.sock").is_err());
    }

    #[test]
    fn tcp_addresses_parse_and_get_docker_default_ports() {
        let tcp = |authority: &str| EngineAddress::Tcp {
            authority: authority.into(),
            tls: None,
        };
        assert_eq!(
            parse("tcp://127.0.0.1:4000").unwrap(),
            tcp("127.0.0.1:4000")
        );
        assert_eq!(parse("tcp://engine.lan/").unwrap(), tcp("engine.lan:2375"));
        assert_eq!(parse("tcp://[::1]:2375").unwrap(), tcp("[::1]:2375"));
        assert_eq!(parse("tcp://[::1]").unwrap(), tcp("[::1]:2375"));
        assert!(parse("tcp://h:2376").unwrap().is_remote());
        assert!(!parse("/x.sock").unwrap().is_remote());
        let tls = TlsEnv {
            verify: true,
            cert_dir: Some("/certs".into()),
        };
        let address = EngineAddress::parse("tcp://h", "engine", &tls).unwrap();
        assert_eq!(
            address,
            EngineAddress::Tcp {
                authority: "h:2376".into(),
                tls: Some(TlsFiles {
                    dir: "/certs".into(),
                    ca: "/certs/ca.pem".into(),
                    client: None,
                }),
            }
        );
        assert_eq!(address.to_string(), "tcp://h:2376 (TLS)");
    }

    #[test]
    fn bad_addresses_say_what_is_supported() {
        use crate::exit_codes::DomainError;
        let mut said = Vec::new();
        for text in [
            "ssh://me@host",
            "http://host:2375",
            "https://host:2376",
            "npipe:////./pipe/docker_engine",
            "kubernetes",
            "tcp://",
            "tcp://:2375",
            "tcp://h:port",
            "tcp://h:70000",
            "tcp://h:0",
            "tcp://h:1/path",
            "tcp://me@h:1",
            "tcp://[::1",
            "tcp://h h:1",
        ] {
            let error = EngineAddress::parse(text, "DOCKER_HOST", &plain()).unwrap_err();
            let (message, hint) = (error.to_string(), error.hint().unwrap_or_default());
            assert!(!message.contains('\n') && !hint.contains('\n'), "{message}");
            // As the command line prints it.
            said.push(format!("error: {message}\nhint: {hint}"));
        }
        insta::assert_snapshot!(said.join("\n"));
        let tls = TlsEnv {
            verify: true,
            cert_dir: None,
        };
        let error = EngineAddress::parse("tcp://h:1", "DOCKER_HOST", &tls).unwrap_err();
        assert!(error.to_string().contains("DOCKER_CERT_PATH"), "{error}");
    }

    #[test]
    fn unreadable_certificates_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::in_dir(dir.path()).unwrap();
        let error = files.check_readable().unwrap_err().to_string();
        assert!(error.contains("ca.pem"), "{error}");
        assert!(error.contains("DOCKER_CERT_PATH"), "{error}");
        std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
        files.check_readable().unwrap();
        for name in ["cert.pem", "key.pem"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let files = TlsFiles::in_dir(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join("key.pem")).unwrap();
        let error = files.check_readable().unwrap_err().to_string();
        assert!(error.contains("key.pem"), "{error}");
    }

    #[test]
    fn a_client_certificate_is_both_files_or_neither() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::in_dir(dir.path()).unwrap();
        assert_eq!(files.client, None);
        assert_eq!(files.ca, dir.path().join("ca.pem"));
        for (present, missing) in [("cert.pem", "key.pem"), ("key.pem", "cert.pem")] {
            std::fs::write(dir.path().join(present), "x").unwrap();
            let error = TlsFiles::in_dir(dir.path()).unwrap_err().to_string();
            assert!(error.contains(&format!("no `{missing}`")), "{error}");
            assert!(error.contains("DOCKER_CERT_PATH"), "{error}");
            assert!(!error.contains('\n'), "{error}");
            std::fs::remove_file(dir.path().join(present)).unwrap();
        }
        for name in ["cert.pem", "key.pem"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let files = TlsFiles::in_dir(dir.path()).unwrap();
        assert_eq!(
            files.client,
            Some(ClientCert {
                cert: dir.path().join("cert.pem"),
                key: dir.path().join("key.pem"),
            })
        );
        // Through the address: the half pair stops `parse`.
        std::fs::remove_file(dir.path().join("cert.pem")).unwrap();
        let tls = TlsEnv {
            verify: true,
            cert_dir: Some(dir.path().into()),
        };
        let error = EngineAddress::parse("tcp://h:1", "DOCKER_HOST", &tls).unwrap_err();
        assert!(error.to_string().contains("no `cert.pem`"), "{error}");
    }
}

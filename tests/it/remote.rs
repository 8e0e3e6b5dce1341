//! A remote engine (`DOCKER_HOST=tcp://…`) end to end on both engines: the
//! test process forwards a loopback TCP port to the engine's unix socket,
//! so the real binary talks HTTP over TCP and must take the tar path (no
//! bind mounts): the worktree is uploaded before each container starts and
//! the agent's edits are downloaded after it exits, never `.git`,
//! `.proctor` or `INBOX`. TLS goes through a TLS-terminating forwarder in
//! the test, with and without client certificates. Every image a test
//! imports is removed when it ends, however it ends (`TestImage`).
//!
//! Needs `/bin/busybox` from Debian's `busybox-static` (`.ci/run` installs
//! it). Like every container test, a missing engine fails the test.

use crate::common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bollard::query_parameters::ListVolumesOptionsBuilder;
use common::{on_both_engines, redact, runtime, stderr, TestImage, TestRepo};
use proctor::cage::EngineKind;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// The path of `engine`'s socket; fails the test, saying how to start the
/// engine, if there is none.
fn existing_socket(engine: EngineKind) -> String {
    let socket = common::socket_path(engine);
    assert!(
        Path::new(&socket).exists(),
        "no {} socket at {socket}; {}",
        engine.as_str(),
        common::ENGINE_HELP
    );
    socket
}

/// Listens on 127.0.0.1 (a free port) and splices every connection to the
/// unix socket; returns `tcp://127.0.0.1:PORT`. The threads live as long as
/// the test process.
fn forward_tcp_to(engine: EngineKind) -> String {
    let socket = existing_socket(engine);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(engine) = UnixStream::connect(&socket) else {
                continue;
            };
            splice(client, engine);
        }
    });
    format!("tcp://127.0.0.1:{port}")
}

fn splice(client: TcpStream, engine: UnixStream) {
    let (mut client_read, mut engine_write) =
        (client.try_clone().unwrap(), engine.try_clone().unwrap());
    let (mut engine_read, mut client_write) = (engine, client);
    std::thread::spawn(move || {
        let _ = copy(&mut client_read, &mut engine_write);
        let _ = engine_write.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = copy(&mut engine_read, &mut client_write);
        let _ = client_write.shutdown(Shutdown::Write);
    });
}

fn copy(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<()> {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
    }
}

/// A certificate authority made at test time.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this
    /// CA, for a server or a client; returns its PEM and its key's PEM.
    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "proctor test");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A `DOCKER_CERT_PATH` directory: `ca.pem`, `cert.pem`, `key.pem`.
fn cert_dir(ca_pem: &str, (cert, key): &(String, String)) -> tempfile::TempDir {
    let dir = ca_only_dir(ca_pem);
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    dir
}

/// A `DOCKER_CERT_PATH` directory with only `ca.pem`: no client certificate.
fn ca_only_dir(ca_pem: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca_pem).unwrap();
    dir
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    Arc::new(roots)
}

/// What dockerd `--tlsverify` does: serve `server` and require a client
/// certificate signed by `ca`.
fn tls_server_config(ca: &Ca, server: &(String, String)) -> Arc<rustls::ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&ca.pem), ring())
        .build()
        .unwrap();
    server_config(
        rustls::ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier),
        server,
    )
}

/// What dockerd `--tls` without `--tlsverify` does: serve `server` and ask
/// for no client certificate.
fn tls_server_config_without_client_auth(server: &(String, String)) -> Arc<rustls::ServerConfig> {
    server_config(
        rustls::ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth(),
        server,
    )
}

fn server_config(
    builder: rustls::ConfigBuilder<rustls::ServerConfig, rustls::server::WantsServerCert>,
    (cert, key): &(String, String),
) -> Arc<rustls::ServerConfig> {
    let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    Arc::new(builder.with_single_cert(chain, key).unwrap())
}

/// A TLS-terminating forwarder: listens on 127.0.0.1 (a free port), does
/// the handshake with `config` and splices the decrypted bytes to the unix
/// socket. Returns `tcp://127.0.0.1:PORT` and the handshake errors so far.
/// The thread lives as long as the test process.
fn forward_tls_to(
    engine: EngineKind,
    config: Arc<rustls::ServerConfig>,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let socket = existing_socket(engine);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let refused = Arc::new(Mutex::new(Vec::new()));
    let errors = refused.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, socket, errors) = (acceptor.clone(), socket.clone(), errors.clone());
                tokio::spawn(async move {
                    let mut client = match acceptor.accept(client).await {
                        Ok(tls) => tls,
                        Err(error) => {
                            errors.lock().unwrap().push(error.to_string());
                            return;
                        }
                    };
                    let Ok(mut engine) = tokio::net::UnixStream::connect(&socket).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                });
            }
        });
    });
    (format!("tcp://127.0.0.1:{port}"), refused)
}

/// Busybox with the applets the scripted agent and exam use.
fn busybox_rootfs(dir: &Path) {
    common::busybox_rootfs(
        dir,
        &[
            "sh", "cat", "sed", "test", "[", "echo", "rm", "mkdir", "ls", "grep",
        ],
    );
}

const CALC: &str = "add() { echo $(( $1 - $2 )); }\n";
const TEST: &str = r#". ./calc.sh
[ "$(add 2 2)" = 4 ] || { echo "FAIL: add 2 2 printed $(add 2 2)"; exit 1; }
echo ok
"#;
/// Run 1 only writes its journal; run 2 fixes the bug, deletes a file,
/// adds one, and tries to plant files in `.git`, `.proctor` and `INBOX`.
const AGENT: &str = r#"cat >/dev/null
echo "run $PROCTOR_RUN" >> .proctor/journal/fix.md
if [ "$PROCTOR_RUN" -ge 2 ]; then
  sed -i 's/\$1 - \$2/$1 + $2/' calc.sh
  rm obsolete.txt
  mkdir -p added && echo new > added/file.txt
  echo evil > .git/hooks/pre-commit
  echo forged > .proctor/planted
  echo forged > INBOX/planted
fi
"#;

/// Volumes with proctor's repo label (Docker labels the anonymous volumes
/// of the tar path), and every volume's name, through the unix socket.
fn volumes(engine: EngineKind, label: &str) -> (Vec<String>, Vec<String>) {
    let rt = runtime();
    let client = rt.block_on(common::engine_client(engine));
    rt.block_on(async {
        let filters = std::collections::HashMap::from([(
            "label".to_string(),
            vec![format!("proctor.repo={label}")],
        )]);
        let labelled = client
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap();
        let all = client
            .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
            .await
            .unwrap();
        let names = |v: bollard::models::VolumeListResponse| -> Vec<String> {
            v.volumes
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.name)
                .collect()
        };
        (names(labelled), names(all))
    })
}

/// How the binary reaches the engine: `DOCKER_HOST` and, for TLS,
/// `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`.
struct Remote {
    address: String,
    env: Vec<(&'static str, String)>,
}

impl Remote {
    fn plain(address: String) -> Remote {
        Remote {
            address,
            env: Vec::new(),
        }
    }

    fn tls(address: String, cert_dir: &Path) -> Remote {
        Remote {
            address,
            env: vec![
                ("DOCKER_TLS_VERIFY", "1".to_string()),
                ("DOCKER_CERT_PATH", cert_dir.to_string_lossy().into_owned()),
            ],
        }
    }

    /// Runs the binary in `repo` against this engine.
    fn proctor(&self, repo: &TestRepo, args: &[&str]) -> std::process::Output {
        let mut env: Vec<(&str, &str)> = vec![("DOCKER_HOST", &self.address)];
        env.extend(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        repo.proctor_env(args, &env)
    }
}

fn remote_loop_takes_the_tar_path(engine: EngineKind) {
    remote_loop(engine, &Remote::plain(forward_tcp_to(engine)), "remote");
}

/// `proctor once` through `remote` in `image` fixes a bug in a fresh
/// repository; returns the repository.
fn remote_once(remote: &Remote, image: &str) -> TestRepo {
    let once = TestRepo::new()
        .engine(&remote.address)
        .file("calc.sh", CALC)
        .file("test.sh", TEST)
        .file("fix.sh", "sed -i 's/\\$1 - \\$2/$1 + $2/' calc.sh\n")
        .commit("buggy");
    let out = remote.proctor(
        &once,
        &[
            "once",
            "--until",
            "sh test.sh",
            "--agent",
            "sh fix.sh",
            "--image",
            image,
            "--",
            "make test.sh pass",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(once.log("proctor/once")[1], "proctor(once): run 1");
    assert!(once.work("calc.sh").contains("$1 + $2"));
    assert_eq!(once.read("calc.sh"), CALC, "the checkout is untouched");
    once
}

/// The volume check compares all of the engine's volumes before and
/// after: one test per engine at a time in this process makes containers.
fn one_at_a_time(engine: EngineKind) -> std::sync::MutexGuard<'static, ()> {
    static DOCKER: Mutex<()> = Mutex::new(());
    static PODMAN: Mutex<()> = Mutex::new(());
    match engine {
        EngineKind::Docker => &DOCKER,
        EngineKind::Podman => &PODMAN,
    }
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The loop, `once` and the refused `host` image through `remote`; the
/// leftover checks go through the engine's unix socket.
fn remote_loop(engine: EngineKind, remote: &Remote, what: &str) {
    let _one_at_a_time = one_at_a_time(engine);
    let address = remote.address.clone();
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs);
    // An image each for the plain and the TLS test, removed however the
    // test ends.
    let guard = TestImage::new(engine, what);
    let image = guard.name.clone();

    let repo = TestRepo::new()
        .engine(&address)
        .file("calc.sh", CALC)
        .file("test.sh", TEST)
        .file("obsolete.txt", "delete me\n")
        .file("agent.sh", AGENT)
        .manifest(&format!(
            "loop: fix\ntask: make test.sh pass\nimage: {image}\nagent: sh agent.sh\ndone_when: sh test.sh\nbudget: 4 runs\n"
        ))
        .commit("buggy");
    let label = proctor::cage::repo_label(&repo.path());
    let (_, volumes_before) = volumes(engine, &label);

    // The image goes over TCP too.
    let rootfs_arg = rootfs.to_string_lossy().into_owned();
    let out = remote.proctor(&repo, &["image", "import", &rootfs_arg, "--name", &image]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = remote.proctor(&repo, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(repo.agent_starts(), 2);
    let log = repo.log("proctor/fix");
    assert_eq!(log[0], "proctor(fix): close");
    assert_eq!(log[1], "proctor(fix): run 2");
    // The agent's edits came back and were committed.
    assert!(
        repo.work("calc.sh").contains("$1 + $2"),
        "{}",
        repo.work("calc.sh")
    );
    assert!(!repo.work_exists("obsolete.txt"));
    assert_eq!(repo.work("added/file.txt"), "new\n");
    assert!(
        repo.work(".proctor/journal/fix.md")
            .ends_with("run 1\nrun 2\n"),
        "{}",
        repo.work(".proctor/journal/fix.md")
    );
    let git = git2::Repository::open(repo.path()).unwrap();
    let tree = git
        .find_branch("proctor/fix", git2::BranchType::Local)
        .unwrap()
        .get()
        .peel_to_tree()
        .unwrap();
    assert!(tree.get_path(Path::new("added/file.txt")).is_ok());
    assert!(tree.get_path(Path::new("obsolete.txt")).is_err());
    assert!(tree.get_path(Path::new(".proctor/journal/fix.md")).is_ok());
    // Nothing reached the host through the read-only paths.
    assert!(
        !repo.exists(".git/hooks/pre-commit"),
        "the agent wrote .git"
    );
    assert!(!repo.exists(".proctor/planted"), "the agent wrote .proctor");
    assert!(!repo.exists("INBOX/planted"), "the agent wrote INBOX");
    assert!(
        !repo.work_exists(".proctor/planted"),
        "the agent wrote .proctor"
    );
    assert!(!repo.work_exists("INBOX/planted"), "the agent wrote INBOX");
    assert_eq!(repo.status(), Vec::<String>::new());

    // `once` over the same remote engine.
    let once = remote_once(remote, &image);

    // The built-in host image is bind mounts of this machine: refused.
    let host = TestRepo::new()
        .engine(&address)
        .file("test.sh", "exit 0\n")
        .manifest("loop: h\ntask: t\nagent: 'true'\ndone_when: sh test.sh\n")
        .commit("host image");
    let out = remote.proctor(&host, &["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("`host` image"), "{err}");
    assert!(err.contains("remote engine"), "{err}");
    assert!(err.contains("image:"), "{err}");
    assert_eq!(err.trim().lines().count(), 2, "one line and a hint: {err}");

    for mut r in [repo, once, host] {
        r.engine = Some(common::socket(engine));
        r.assert_no_containers();
    }
    drop(guard);
    let (labelled, volumes_after) = volumes(engine, &label);
    assert!(labelled.is_empty(), "volumes left behind: {labelled:?}");
    let new: Vec<&String> = volumes_after
        .iter()
        .filter(|v| !volumes_before.contains(v))
        .collect();
    assert!(new.is_empty(), "volumes left behind: {new:?}");
}

#[test]
fn bad_engine_addresses_are_one_line_errors() {
    let repo = TestRepo::new().file("a", "a\n").commit("a");
    let certs = tempfile::tempdir().unwrap();
    let cert_path = certs.path().to_string_lossy().into_owned();
    let tls = |host| {
        vec![
            ("DOCKER_HOST", host),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", cert_path.as_str()),
        ]
    };
    // What each refusal says, pinned below: one error line each (and a
    // hint), exit 1.
    let mut said = Vec::new();
    let mut refused = |what: &str, env: &[(&str, &str)]| {
        let out = repo.proctor_env(&["reap"], env);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        let errors = err.lines().filter(|l| l.starts_with("error: ")).count();
        assert_eq!(errors, 1, "{what}: one error line: {err}");
        said.push(format!(
            "{what}\n{}",
            redact(&err, &[(certs.path(), "[CERTS]")])
        ));
    };
    for address in [
        "ssh://me@host",
        "http://127.0.0.1:2375",
        "tcp://127.0.0.1:notaport",
    ] {
        refused(address, &[("DOCKER_HOST", address)]);
    }
    refused("TLS without `ca.pem`", &tls("tcp://127.0.0.1:1"));
    // Half a client certificate: named before any connection.
    std::fs::write(certs.path().join("ca.pem"), "not read\n").unwrap();
    for present in ["cert.pem", "key.pem"] {
        std::fs::write(certs.path().join(present), "x\n").unwrap();
        refused(
            &format!("TLS with only `{present}`"),
            &tls("tcp://127.0.0.1:1"),
        );
        std::fs::remove_file(certs.path().join(present)).unwrap();
    }
    insta::assert_snapshot!(said.join("\n"));
}

/// The same loop through a TLS-terminating forwarder that, like dockerd
/// `--tlsverify`, requires a client certificate signed by its CA; then a
/// wrong CA, an untrusted client certificate, no client certificate, a
/// broken key and a server certificate for another name, each a one-line
/// error and exit 1.
fn remote_loop_over_tls(engine: EngineKind) {
    let ca = Ca::new("proctor test CA");
    let server = ca.issue(
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let client = ca.issue(&["client"], ExtendedKeyUsagePurpose::ClientAuth);
    let (address, refused) = forward_tls_to(engine, tls_server_config(&ca, &server));
    let good = cert_dir(&ca.pem, &client);
    remote_loop(
        engine,
        &Remote::tls(address.clone(), good.path()),
        "remote-tls",
    );
    assert_eq!(*refused.lock().unwrap(), Vec::<String>::new());

    // The forwarder refuses a client without a certificate.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let no_cert = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(&ca.pem))
        .with_no_client_auth();
    let authority = address.trim_start_matches("tcp://").to_string();
    let exchange = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(&authority).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(no_cert))
            .connect(name, tcp)
            .await?;
        tls.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut reply = Vec::new();
        tls.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    });
    assert!(
        exchange.is_err(),
        "a client without a certificate got {exchange:?}"
    );

    let repo = TestRepo::new().file("a", "a\n").commit("a");
    let system_roots = good.path().join("ca.pem");
    let run = |address: &str, dir: &Path| {
        let started = std::time::Instant::now();
        let mut remote = Remote::tls(address.to_string(), dir);
        // The system's roots (rustls-native-certs reads `SSL_CERT_FILE`)
        // hold the engine's CA: only `ca.pem` may count.
        remote
            .env
            .push(("SSL_CERT_FILE", system_roots.display().to_string()));
        let out = remote.proctor(&repo, &["reap"]);
        assert!(
            started.elapsed().as_secs() < 30,
            "took {:?}",
            started.elapsed()
        );
        out
    };
    let fails = |address: &str, dir: &Path, says: &[&str]| {
        let out = run(address, dir);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        for s in says {
            assert!(err.contains(s), "{s}: {err}");
        }
    };
    // The server certificate also names `localhost`.
    let by_name = address.replace("127.0.0.1", "localhost");
    let out = run(&by_name, good.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A ca.pem that did not sign the engine's certificate.
    let other = Ca::new("unrelated CA");
    let wrong_ca = cert_dir(&other.pem, &client);
    fails(
        &address,
        wrong_ca.path(),
        &["TLS with the engine", &address, "not signed by", "ca.pem"],
    );
    // A client certificate the engine does not trust: refused like none.
    let stranger = cert_dir(
        &ca.pem,
        &other.issue(&["client"], ExtendedKeyUsagePurpose::ClientAuth),
    );
    let before = refused.lock().unwrap().len();
    fails(
        &address,
        stranger.path(),
        &["refused the client certificate", "cert.pem"],
    );
    assert!(refused.lock().unwrap().len() > before);
    // No client certificate at all (only ca.pem): proctor connects without
    // one, as Docker's client does, and this engine refuses.
    let ca_only = ca_only_dir(&ca.pem);
    let before = refused.lock().unwrap().len();
    fails(
        &address,
        ca_only.path(),
        &[
            "wants a client certificate",
            "DOCKER_CERT_PATH",
            &ca_only.path().display().to_string(),
            "cert.pem",
            "key.pem",
        ],
    );
    assert!(refused.lock().unwrap().len() > before);
    // A key.pem that is no key: named before any connection.
    let broken = cert_dir(&ca.pem, &(client.0.clone(), "not a key\n".into()));
    fails(&address, broken.path(), &["key.pem", "no PEM private key"]);
    // An engine whose certificate is for another name.
    let elsewhere = ca.issue(&["engine.invalid"], ExtendedKeyUsagePurpose::ServerAuth);
    let (misnamed, _) = forward_tls_to(engine, tls_server_config(&ca, &elsewhere));
    fails(&misnamed, good.path(), &["not for this host name"]);
    repo.assert_no_containers();
}

/// An engine that asks for no client certificate (dockerd `--tls` without
/// `--tlsverify`), with `DOCKER_CERT_PATH` holding only `ca.pem`: an image
/// import, a `once` through the tar path, and `reap` all work.
fn tls_without_a_client_certificate(engine: EngineKind) {
    let ca = Ca::new("proctor test CA");
    let server = ca.issue(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let (address, refused) = forward_tls_to(engine, tls_server_config_without_client_auth(&server));
    let certs = ca_only_dir(&ca.pem);
    let remote = Remote::tls(address.clone(), certs.path());

    let _one_at_a_time = one_at_a_time(engine);
    let guard = TestImage::new(engine, "remote-tls-nocert");
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let rootfs_arg = rootfs.to_string_lossy().into_owned();
    let scratch = TestRepo::new().file("a", "a\n").commit("a");
    let out = remote.proctor(
        &scratch,
        &["image", "import", &rootfs_arg, "--name", &guard.name],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut once = remote_once(&remote, &guard.name);
    let label = proctor::cage::repo_label(&once.path());
    let out = remote.proctor(&once, &["reap"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(*refused.lock().unwrap(), Vec::<String>::new());

    once.engine = Some(common::socket(engine));
    once.assert_no_containers();
    let (labelled, _) = volumes(engine, &label);
    assert!(labelled.is_empty(), "volumes left behind: {labelled:?}");
}

on_both_engines!(
    remote_loop_takes_the_tar_path,
    remote_loop_over_tls,
    tls_without_a_client_certificate,
);

//! A network a test creates, with small servers of its own on it (HTTP
//! servers for the egress tests, the scripted model for the presets): each
//! a container of the `host` image running as `nobody` with a read-only
//! root, no capabilities and tight ulimits. Dropping the `TestNet` removes
//! its containers and its network.

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest, ResourcesUlimits};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions,
};
use proctor::cage::{Cage, EngineKind, HOST_IMAGE};

/// The port every server of a `TestNet` listens on.
pub const PORT: u16 = 8000;

pub struct TestNet {
    pub rt: tokio::runtime::Runtime,
    pub docker: bollard::Docker,
    /// The network's name (`proctor-test-TAG-ENGINE-PID`).
    pub name: String,
    containers: Vec<String>,
}

/// The engine's default bridge, where an `open` agent's holder is.
pub fn default_bridge(engine: EngineKind) -> &'static str {
    match engine {
        EngineKind::Docker => "bridge",
        EngineKind::Podman => "podman",
    }
}

impl TestNet {
    pub fn new(engine: EngineKind, tag: &str) -> TestNet {
        let rt = common::runtime();
        let name = common::unique(engine, tag);
        let docker = rt.block_on(async {
            let docker = common::engine_client(engine).await;
            let _ = docker.remove_network(&name).await;
            docker
                .create_network(NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(HashMap::from([("proctor.test".into(), "1".into())])),
                    ..Default::default()
                })
                .await
                .expect("create the test's network");
            docker
        });
        TestNet {
            rt,
            docker,
            name,
            containers: Vec::new(),
        }
    }

    /// Starts `cmd` (with `env`) as the container `name` on `network` and
    /// waits until it accepts a connection on [`PORT`]; returns its address
    /// on `network`.
    pub fn serve(
        &mut self,
        engine: EngineKind,
        name: &str,
        network: &str,
        cmd: Vec<String>,
        env: Vec<String>,
    ) -> String {
        let binds: Vec<String> = ["/usr", "/bin", "/lib", "/lib64"]
            .iter()
            .filter_map(|dir| {
                let source = std::fs::canonicalize(dir).ok()?;
                Some(format!("{}:{dir}:ro", source.display()))
            })
            .collect();
        let ulimit = |name: &str, n: i64| ResourcesUlimits {
            name: Some(name.into()),
            soft: Some(n),
            hard: Some(n),
        };
        let docker = self.docker.clone();
        let network = network.to_string();
        let address = self.rt.block_on(async {
            let image = common::cage(engine)
                .await
                .ensure_image(HOST_IMAGE)
                .await
                .expect("host image");
            let _ = docker
                .remove_container(
                    name,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
            let body = ContainerCreateBody {
                image: Some(image),
                cmd: Some(cmd),
                user: Some("65534:65534".into()),
                env: Some(env),
                labels: Some(HashMap::from([("proctor.test".into(), "1".into())])),
                host_config: Some(HostConfig {
                    binds: Some(binds),
                    tmpfs: Some(HashMap::from([("/tmp".into(), "rw,mode=1777".into())])),
                    readonly_rootfs: Some(true),
                    cap_drop: Some(vec!["ALL".into()]),
                    network_mode: Some(network.clone()),
                    ulimits: Some(vec![ulimit("nofile", 1024), ulimit("nproc", 256)]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let options = CreateContainerOptionsBuilder::default().name(name).build();
            docker
                .create_container(Some(options), body)
                .await
                .unwrap_or_else(|e| panic!("create the test server {name}: {e}"));
            docker
                .start_container(name, None::<StartContainerOptions>)
                .await
                .unwrap_or_else(|e| panic!("start the test server {name}: {e}"));
            docker
                .inspect_container(name, None::<InspectContainerOptions>)
                .await
                .unwrap_or_else(|e| panic!("inspect the test server {name}: {e}"))
                .network_settings
                .and_then(|n| n.networks)
                .and_then(|mut n| n.remove(&network))
                .and_then(|e| e.ip_address)
                .unwrap_or_else(|| panic!("the test server {name} has no address"))
        });
        self.containers.push(name.to_string());
        // Ready when it accepts a connection (a container this test made).
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect_timeout(
            &format!("{address}:{PORT}").parse().expect("address"),
            Duration::from_secs(1),
        )
        .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the test server {name} never listened:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        address
    }

    /// What the servers logged, for a failing test's message.
    pub fn logs(&self) -> String {
        use futures_util::StreamExt;
        let docker = self.docker.clone();
        let containers = self.containers.clone();
        self.rt.block_on(async move {
            let mut text = String::new();
            for c in containers {
                text.push_str(&format!("== {c}\n"));
                let options = LogsOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .build();
                let mut stream = docker.logs(&c, Some(options));
                let read = async {
                    while let Some(Ok(chunk)) = stream.next().await {
                        text.push_str(&chunk.to_string());
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
            }
            text
        })
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let docker = self.docker.clone();
        let containers = std::mem::take(&mut self.containers);
        let name = self.name.clone();
        self.rt.block_on(async move {
            for c in containers {
                let _ = docker
                    .remove_container(
                        &c,
                        Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                    )
                    .await;
            }
            let _ = docker.remove_network(&name).await;
        });
    }
}

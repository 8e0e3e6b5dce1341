//! What the cage is asked to enforce for a loop (its resource limits and
//! networks), and what it reports back (targets the egress proxy refused).
//! The cage enforces; this file only translates the manifest and records.

use super::events::Event;
use super::{short, Engine};
use crate::cage::{Cage, Limits, NetworkPolicy, Role};
use crate::git::TreeSize;
use crate::manifest::{preset, LoopSpec, Network};

/// Default cap on an attempt's committed tree: total bytes.
pub const DEFAULT_TREE_CAP: u64 = 1 << 30;
/// Default cap on an attempt's committed tree: number of files.
pub const DEFAULT_FILES_CAP: u64 = 100_000;
/// Default cap on an attempt's committed tree: its largest file (GitHub
/// refuses files above 100 MB too).
pub const DEFAULT_FILE_CAP: u64 = 100 << 20;
/// Default size of each container's `/tmp` and `$HOME` tmpfs (without one,
/// a tmpfs may take half of the host's memory).
pub const DEFAULT_TMP_BYTES: u64 = 1 << 30;

/// What one attempt may commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeCaps {
    pub tree: u64,
    pub files: u64,
    pub file: u64,
}

/// The first cap a tree is over: which, its limit, the tree's figure, and
/// the file for the `file` cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    pub cap: &'static str,
    pub limit: u64,
    pub size: u64,
    pub path: Option<String>,
}

impl TreeCaps {
    /// The cap `size` is over, if any: the single file first (it names a
    /// path), then the file count, then the total.
    pub fn breach(&self, size: &TreeSize) -> Option<Breach> {
        if let Some((path, bytes)) = &size.largest {
            if *bytes > self.file {
                return Some(Breach {
                    cap: "file",
                    limit: self.file,
                    size: *bytes,
                    path: Some(path.clone()),
                });
            }
        }
        if size.files > self.files {
            return Some(Breach {
                cap: "files",
                limit: self.files,
                size: size.files,
                path: None,
            });
        }
        (size.bytes > self.tree).then_some(Breach {
            cap: "tree",
            limit: self.tree,
            size: size.bytes,
            path: None,
        })
    }
}

impl Breach {
    /// The breach in words, for the report and the next prompt.
    pub fn describe(&self) -> String {
        match self.cap {
            "file" => format!(
                "`{}` is {}, over the `file` cap of {}",
                self.path.as_deref().unwrap_or("?"),
                super::fmt_bytes(self.size),
                super::fmt_bytes(self.limit)
            ),
            "files" => format!(
                "the tree would hold more than {} files, the `files` cap (at least {} were counted)",
                self.limit, self.size
            ),
            _ => format!(
                "the tree would be more than {}, the `tree` cap (at least {} were counted)",
                super::fmt_bytes(self.limit),
                super::fmt_bytes(self.size)
            ),
        }
    }
}

/// Refusals of one container beyond this many are counted, not listed.
pub(super) const MAX_DENIAL_EVENTS: usize = 100;

impl<C: Cage> Engine<'_, C> {
    /// The loop's `resources:` over the config's, over proctor's defaults
    /// (pids 512; memory three quarters of the engine host's; CPU shared;
    /// 1 GiB tmpfs).
    pub(super) fn limits_for(&self, spec: &LoopSpec) -> Limits {
        let resources = spec.resources.or(self.settings.default_resources);
        let mut limits = Limits::default();
        if let Some(pids) = resources.pids {
            limits.pids = pids;
        }
        limits.memory_bytes = resources
            .memory
            .map(|m| i64::try_from(m).unwrap_or(i64::MAX));
        limits.nano_cpus = resources.nano_cpus;
        limits.tmp_bytes = Some(resources.tmp.unwrap_or(DEFAULT_TMP_BYTES));
        limits
    }

    /// The caps on what one attempt of the loop may commit: its
    /// `resources:` over the config's, over proctor's defaults.
    pub(super) fn caps_for(&self, spec: &LoopSpec) -> TreeCaps {
        let resources = spec.resources.or(self.settings.default_resources);
        TreeCaps {
            tree: resources.tree.unwrap_or(DEFAULT_TREE_CAP),
            files: resources.files.unwrap_or(DEFAULT_FILES_CAP),
            file: resources.file.unwrap_or(DEFAULT_FILE_CAP),
        }
    }

    /// The network of a container of `role` in this loop.
    pub(super) fn network_for(&self, spec: &LoopSpec, role: Role) -> NetworkPolicy {
        if role == Role::Agent && !spec.network_set {
            if let Some(hosts) = self.preset_hosts(spec) {
                return NetworkPolicy::Hosts(hosts);
            }
        }
        let judge_network;
        let reviewer_network;
        let network = match role {
            Role::Agent => &spec.network,
            Role::Verifier => &spec.verifier_network,
            Role::Judge => {
                judge_network = self
                    .settings
                    .judge
                    .as_ref()
                    .map_or(Network::None, |j| j.network.clone());
                &judge_network
            }
            Role::Reviewer => {
                reviewer_network = self
                    .settings
                    .reviewer
                    .as_ref()
                    .map_or(Network::None, |r| r.caged.network.clone());
                &reviewer_network
            }
        };
        match network {
            Network::None => NetworkPolicy::None,
            Network::Open => NetworkPolicy::Open,
            Network::Hosts(hosts) => NetworkPolicy::Hosts(hosts.clone()),
        }
    }

    /// A preset agent's hosts, plus the host of each of its base-URL
    /// variables set on the host (an API gateway, a local model);
    /// `None` when the loop's agent is not a preset.
    fn preset_hosts(&self, spec: &LoopSpec) -> Option<Vec<String>> {
        let chosen = preset::chosen(&self.agent_for(spec)?)?;
        let mut hosts: Vec<String> = chosen
            .preset
            .hosts
            .iter()
            .map(|h| (*h).to_owned())
            .collect();
        for var in chosen.preset.base_urls {
            let host = self
                .settings
                .host_env
                .get(*var)
                .and_then(|url| preset::url_host(url));
            if let Some(host) = host {
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
        }
        Some(hosts)
    }

    /// Emits one `network_denied` event per refused target (at most
    /// [`MAX_DENIAL_EVENTS`] per container) and notes the refusals in the
    /// report.
    pub(super) fn record_denials(
        &mut self,
        spec: &LoopSpec,
        run: u32,
        role: Role,
        denied: &[String],
        container: &str,
    ) {
        if denied.is_empty() {
            return;
        }
        for target in denied.iter().take(MAX_DENIAL_EVENTS) {
            let (host, port) = split_target(target);
            (self.emit)(Event::NetworkDenied {
                loop_id: spec.id.clone(),
                run,
                role: role.as_str().to_string(),
                host,
                port,
            });
        }
        let mut unique: Vec<&str> = denied.iter().map(String::as_str).collect();
        unique.sort_unstable();
        unique.dedup();
        let shown: Vec<String> = unique.iter().take(5).map(|t| format!("`{t}`")).collect();
        let more = unique.len().saturating_sub(5);
        let unlisted = denied.len().saturating_sub(MAX_DENIAL_EVENTS);
        self.report.boundary.push(format!(
            "loop `{}`: run {run}: the {} container {} was refused {}{}: not on the loop's network list ({} refusal{}{})",
            spec.id,
            role.as_str(),
            short(container),
            shown.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() },
            denied.len(),
            if denied.len() == 1 { "" } else { "s" },
            if unlisted > 0 { format!(", {unlisted} not listed as events") } else { String::new() }
        ));
    }
}

/// `host:port` or `[v6]:port` into host (unbracketed) and port.
fn split_target(target: &str) -> (String, u16) {
    match target.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port.parse().unwrap_or(0),
        ),
        None => (target.to_string(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::split_target;

    #[test]
    fn targets_split_into_host_and_port() {
        assert_eq!(
            split_target("evil.example:443"),
            ("evil.example".into(), 443)
        );
        assert_eq!(split_target("[::1]:8080"), ("::1".into(), 8080));
        assert_eq!(split_target("odd"), ("odd".into(), 0));
    }
}

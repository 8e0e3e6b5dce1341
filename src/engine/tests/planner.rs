//! `proctor plan`'s drafter and critic are agents: their containers get
//! what an attempt's agent gets, but for the tree they work on.

use super::{make_done, Repo};
use crate::cage::fake::Scripted;
use crate::cage::{Invocation, Role};
use crate::engine::{Ending, Engine, Settings};

/// What `init` writes for a per-user toolchain, and a host variable the
/// loop names.
fn toolchain(s: &mut Settings) {
    s.toolchain_env = vec![
        ("PATH".into(), "/home/u/.cargo/bin:/usr/bin:/bin".into()),
        ("CARGO_HOME".into(), "/home/u/.cargo".into()),
        ("CARGO_NET_OFFLINE".into(), "true".into()),
    ];
    s.host_env.insert("API_KEY".into(), "k".into());
}

const MANIFEST: &str =
    "loop: fix\nagent: sh agent.sh\ndone_when: test -f done\nbudget: 2 runs\nenv: [API_KEY]\n";

/// The drafter's container, as `proctor plan` asks for it.
fn drafter_call(repo: &Repo) -> Invocation {
    let cage = repo.cage([Scripted::agent(0)]);
    let manifest = repo.manifest();
    let mut settings = repo.settings(&manifest);
    toolchain(&mut settings);
    let tip = repo.git.head().expect("head").expect("a commit");
    let tree = tempfile::tempdir().expect("temp dir");
    std::fs::write(tree.path().join("proctor.proposed.yaml"), "").expect("proposal");
    let mut emit = |_| {};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut engine = Engine::new(&cage, &repo.git, &repo.key, settings, tip, &mut emit)
            .expect("engine")
            .with_clock(&*repo.clock);
        engine
            .run_planner(
                &manifest.root,
                tree.path(),
                &["proctor.proposed.yaml"],
                "draft a plan".into(),
                "plan.round1.draft.log",
            )
            .await
            .expect("planner run")
    });
    let mut agents = cage.calls_of(Role::Agent);
    assert_eq!(agents.len(), 1);
    agents.remove(0)
}

#[test]
fn the_drafter_gets_the_toolchain_env_an_agent_gets() {
    let repo = Repo::new(MANIFEST, &[]);
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent_edits(make_done),
        Scripted::exam(0),
    ]);
    assert_eq!(repo.run_with(&cage, toolchain).ending, Ending::Closed);
    let attempt = cage.calls_of(Role::Agent).remove(0);
    let drafter = drafter_call(&Repo::new(MANIFEST, &[]));
    for (name, value) in [
        ("PATH", "/home/u/.cargo/bin:/usr/bin:/bin"),
        ("CARGO_HOME", "/home/u/.cargo"),
        ("CARGO_NET_OFFLINE", "true"),
        ("API_KEY", "k"),
    ] {
        let pair = (name.to_owned(), value.to_owned());
        assert!(drafter.env.contains(&pair), "{name}: {:?}", drafter.env);
    }
    // The same environment as an attempt's agent, less the run number.
    let attempt_env: Vec<_> = attempt
        .env
        .iter()
        .filter(|(n, _)| n != "PROCTOR_RUN")
        .cloned()
        .collect();
    assert_eq!(drafter.env, attempt_env);
    assert_eq!(drafter.command, attempt.command);
    assert_eq!(drafter.network, attempt.network);
}

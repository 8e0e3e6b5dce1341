//! Property tests: the parser never panics on any text, and a valid
//! manifest written out field by field reads back as exactly those fields.

use std::path::Path;
use std::time::Duration;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::super::*;

// ---- never panics -------------------------------------------------------

/// Tokens that make YAML parsers work hard: indicators, indentation,
/// anchors, tags, flow collections, and the manifest's own keys.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("\n".to_owned()),
        Just("  ".to_owned()),
        Just("- ".to_owned()),
        Just(": ".to_owned()),
        Just("? ".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(", ".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("<<: *a".to_owned()),
        Just("!!str ".to_owned()),
        Just("!tag ".to_owned()),
        Just("|\n".to_owned()),
        Just(">-\n".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("#".to_owned()),
        Just("---\n".to_owned()),
        Just("~".to_owned()),
        Just("\t".to_owned()),
        proptest::sample::select(LOOP_KEYS).prop_map(|k| format!("{k}: ")),
        proptest::sample::select(&["schedules", "run", "at", "junit", "human", "memory"][..])
            .prop_map(|k| format!("{k}: ")),
        "[a-z0-9 /*-]{0,8}",
        "-?[0-9]{1,25}(\\.[0-9]+)?",
        "[0-9]{1,3} runs?",
    ];
    vec(token, 0..60).prop_map(|tokens| tokens.concat())
}

/// An arbitrary YAML value, with keys mostly drawn from the manifest's own
/// so that validation (not just the reader) gets exercised.
fn value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
        proptest::sample::select(
            &[
                "human",
                "none",
                "open",
                "3 runs",
                "48h",
                "0 runs",
                "10m",
                "2g",
                "fix-tests",
                "tests/**",
                "[",
                "0 9 * * *",
            ][..]
        )
        .prop_map(serde_json::Value::from),
    ];
    let key = prop_oneof![
        3 => proptest::sample::select(LOOP_KEYS).prop_map(str::to_owned),
        1 => proptest::sample::select(&["schedules", "run", "at", "junit", "min", "human", "memory", "cpus", "pids", "budjet"][..]).prop_map(str::to_owned),
        1 => "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            vec((key.clone(), inner), 0..8)
                .prop_map(|entries| serde_json::Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// Writes a value as block-style YAML (JSON text is flow-style YAML, so
/// both styles get tested).
fn block(v: &serde_json::Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                out.push_str(&format!("{pad}{k}:"));
                nested(v, indent, out);
            }
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&format!("{pad}-"));
                nested(item, indent, out);
            }
        }
        scalar => out.push_str(&format!("{pad}{scalar}\n")),
    }
}

fn nested(v: &serde_json::Value, indent: usize, out: &mut String) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            block(v, indent + 2, out);
        }
        serde_json::Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block(v, indent + 2, out);
        }
        scalar => out.push_str(&format!(" {scalar}\n")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics_on_any_text(text in "(?s).{0,300}") {
        let _ = parse(&text, Path::new("proctor.yaml"));
        let _ = parse_config(&text, Path::new("config.yaml"));
    }

    #[test]
    fn parse_never_panics_on_yamlish_text(text in yamlish()) {
        let _ = parse(&text, Path::new("proctor.yaml"));
        let _ = parse_config(&text, Path::new("config.yaml"));
    }

    #[test]
    fn parse_never_panics_on_yaml_structures(v in value()) {
        let flow = v.to_string();
        let _ = parse(&flow, Path::new("proctor.yaml"));
        let mut text = String::new();
        block(&v, 0, &mut text);
        let _ = parse(&text, Path::new("proctor.yaml"));
        let _ = parse_config(&text, Path::new("config.yaml"));
    }

    #[test]
    fn every_error_has_problems_and_one_line_each(v in value()) {
        let mut text = String::new();
        block(&v, 0, &mut text);
        if let Err(e) = parse(&text, Path::new("p.yaml")) {
            prop_assert!(!e.problems.is_empty());
            let shown = e.to_string();
            prop_assert_eq!(shown.lines().count(), e.problems.len());
            for line in shown.lines() {
                prop_assert!(line.starts_with("p.yaml:"));
            }
        }
    }

    #[test]
    fn value_parsers_never_panic(s in "\\PC{0,40}") {
        let _ = parse_budget(&s);
        let _ = parse_duration(&s);
        let _ = parse_memory(&s);
        let _ = check_cron(&s);
        let _ = super::super::units::check_host(&s);
        if let Some(k) = to_kebab(&s) {
            prop_assert!(is_kebab(&k), "{:?} -> {:?}", s, k);
        }
    }

    #[test]
    fn durations_round_trip(secs in 0u64..10_000_000) {
        let d = Duration::from_secs(secs);
        prop_assert_eq!(parse_duration(&format_duration(d)), Some(d));
    }

    #[test]
    fn budgets_round_trip(
        (runs, wall) in (option::of(1u32..), option::of(1u64..1_000_000))
            .prop_filter("some cap", |(r, w)| r.is_some() || w.is_some())
    ) {
        let b = Budget { runs, wall: wall.map(Duration::from_secs) };
        prop_assert_eq!(parse_budget(&b.to_string()), Ok(b));
    }

    #[test]
    fn memory_round_trips(bytes in 1u64..(1 << 50)) {
        prop_assert_eq!(parse_memory(&format_memory(bytes)), Some(bytes));
    }
}

// ---- round trip ---------------------------------------------------------

/// A loop as a test would write it: `None` = key left out.
#[derive(Debug, Clone)]
struct Written {
    id: String,
    task: Option<String>,
    agent: Option<String>,
    done_when: String,
    budget: Option<Budget>,
    confirm: Option<u32>,
    check_every: Option<Duration>,
    /// `Some(1)` is sometimes written `human`, sometimes `{human: 1}`.
    gate: Option<(u32, bool)>,
    protected: Option<Vec<String>>,
    parallel: Option<bool>,
    image: Option<String>,
    network: Option<Network>,
    env: Option<Vec<String>>,
    writes: Option<Vec<String>>,
    tests: Option<TestsAudit>,
    judge: Option<String>,
    caches: Option<Vec<String>>,
    resources: Option<Resources>,
    timeout: Option<Duration>,
    children: Vec<Written>,
}

fn text() -> impl Strategy<Value = String> {
    // Starts with a letter so it is never blank; quoted on output, so any
    // printable character (quotes, colons, `#`) must survive.
    "[a-zA-Z][ -~]{0,24}"
}

fn duration() -> impl Strategy<Value = Duration> {
    (
        1u64..200,
        proptest::sample::select(&[1u64, 60, 3600, 86_400][..]),
    )
        .prop_map(|(n, unit)| Duration::from_secs(n * unit))
}

fn budget() -> impl Strategy<Value = Budget> {
    (option::of(1u32..500), option::of(duration()))
        .prop_filter("some cap", |(r, w)| r.is_some() || w.is_some())
        .prop_map(|(runs, wall)| Budget { runs, wall })
}

fn globs() -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(
        vec![
            "tests/**",
            "src/*.rs",
            "docs/**/*.md",
            "a/b",
            "{x,y}/**",
            "*.lock",
        ],
        0..4,
    )
    .prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

fn network() -> impl Strategy<Value = Network> {
    let host =
        ("[a-z][a-z0-9]{0,6}(\\.[a-z]{2,4}){0,2}", option::of(1u16..)).prop_map(|(h, port)| {
            match port {
                Some(p) => format!("{h}:{p}"),
                None => h,
            }
        });
    prop_oneof![
        Just(Network::None),
        Just(Network::Open),
        proptest::collection::btree_set(host, 1..4)
            .prop_map(|hosts| Network::Hosts(hosts.into_iter().collect())),
    ]
}

fn resources() -> impl Strategy<Value = Resources> {
    (
        option::of((6u64..4096).prop_map(|m| m << 20)),
        option::of((1i64..6400).prop_map(|hundredths| hundredths * 10_000_000)),
        option::of(1i64..100_000),
        option::of((1u64..4096).prop_map(|m| m << 20)),
        option::of(1u64..1_000_000),
        option::of(1u64..1 << 40),
        option::of((1u64..64).prop_map(|g| g << 30)),
    )
        .prop_map(
            |(memory, nano_cpus, pids, tree, files, file, tmp)| Resources {
                memory,
                nano_cpus,
                pids,
                tree,
                files,
                file,
                tmp,
            },
        )
}

fn tests_audit() -> impl Strategy<Value = TestsAudit> {
    (
        "[a-z]{1,8}(/[a-z]{1,8})?",
        option::of(0u32..10_000),
        option::of(-100i64..100),
        0u32..5,
    )
        .prop_map(|(junit, min, expect_delta, allow_skipped)| TestsAudit {
            junit,
            min,
            expect_delta,
            allow_skipped,
        })
}

fn written_leaf() -> impl Strategy<Value = Written> {
    let lute = (
        "[a-z][a-z0-9]{0,5}(-[a-z0-9]{1,4}){0,2}",
        option::of(text()),
        option::of(text()),
        text(),
        option::of(budget()),
        option::of(1u32..5),
        option::of(duration()),
        option::of((1u32..4, any::<bool>())),
        option::of(globs()),
        option::of(any::<bool>()),
    );
    let proctor = (
        option::of("[a-z0-9]{1,10}(:[a-z0-9.]{1,5})?"),
        option::of(network()),
        option::of(proptest::collection::btree_set(
            "[A-Z_][A-Z0-9_]{0,8}",
            0..3,
        )),
        option::of(globs()),
        option::of(tests_audit()),
        option::of(text()),
        option::of(proptest::collection::btree_set(
            "[a-z0-9][a-z0-9_.-]{0,10}",
            0..3,
        )),
        option::of(resources()),
        option::of(duration()),
    );
    (lute, proctor).prop_map(
        |(
            (id, task, agent, done_when, budget, confirm, check_every, gate, protected, parallel),
            (image, network, env, writes, tests, judge, caches, resources, timeout),
        )| Written {
            id,
            task,
            agent,
            done_when,
            budget,
            confirm,
            check_every,
            gate,
            protected,
            parallel,
            image,
            network,
            env: env.map(|s| s.into_iter().collect()),
            writes,
            tests,
            judge,
            caches: caches.map(|s| s.into_iter().collect()),
            resources,
            timeout,
            children: Vec::new(),
        },
    )
}

fn written_tree() -> impl Strategy<Value = Written> {
    written_leaf().prop_recursive(3, 12, 3, |inner| {
        (written_leaf(), vec(inner, 0..4)).prop_map(|(mut parent, children)| {
            parent.children = children;
            parent
        })
    })
}

/// Makes ids unique by suffixing each with its position in the tree.
fn number(w: &mut Written, next: &mut usize) {
    w.id = format!("{}-{next}", w.id);
    *next += 1;
    for child in &mut w.children {
        number(child, next);
    }
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn write(w: &Written, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    let mut field = |key: &str, value: String| out.push_str(&format!("{pad}{key}: {value}\n"));
    field("loop", w.id.clone());
    if let Some(t) = &w.task {
        field("task", q(t));
    }
    if let Some(a) = &w.agent {
        field("agent", q(a));
    }
    field("done_when", q(&w.done_when));
    if let Some(b) = &w.budget {
        field("budget", b.to_string());
    }
    if let Some(c) = w.confirm {
        field("confirm", c.to_string());
    }
    if let Some(d) = w.check_every {
        field("check_every", format_duration(d));
    }
    if let Some((n, short)) = w.gate {
        field(
            "gate",
            if n == 1 && short {
                "human".to_owned()
            } else {
                format!("{{human: {n}}}")
            },
        );
    }
    if let Some(p) = &w.protected {
        field("protected", list(p));
    }
    if let Some(p) = w.parallel {
        field("parallel", p.to_string());
    }
    if let Some(i) = &w.image {
        field("image", q(i));
    }
    if let Some(n) = &w.network {
        field(
            "network",
            match n {
                Network::None => "none".to_owned(),
                Network::Open => "open".to_owned(),
                Network::Hosts(h) => list(h),
            },
        );
    }
    if let Some(e) = &w.env {
        field("env", list(e));
    }
    if let Some(wr) = &w.writes {
        field("writes", list(wr));
    }
    if let Some(t) = &w.tests {
        let mut parts = vec![format!("junit: {}", q(&t.junit))];
        if let Some(m) = t.min {
            parts.push(format!("min: {m}"));
        }
        if let Some(d) = t.expect_delta {
            parts.push(format!("expect_delta: {d}"));
        }
        if t.allow_skipped > 0 {
            parts.push(format!("allow_skipped: {}", t.allow_skipped));
        }
        field("tests", format!("{{{}}}", parts.join(", ")));
    }
    if let Some(j) = &w.judge {
        field("judge", q(j));
    }
    if let Some(c) = &w.caches {
        field("caches", list(c));
    }
    if let Some(r) = &w.resources {
        let mut parts = Vec::new();
        if let Some(m) = r.memory {
            parts.push(format!("memory: {}", format_memory(m)));
        }
        if let Some(n) = r.nano_cpus {
            parts.push(format!("cpus: {}", n as f64 / 1e9));
        }
        if let Some(p) = r.pids {
            parts.push(format!("pids: {p}"));
        }
        for (key, size) in [("tree", r.tree), ("file", r.file), ("tmp", r.tmp)] {
            if let Some(b) = size {
                parts.push(format!("{key}: {}", format_memory(b)));
            }
        }
        if let Some(n) = r.files {
            parts.push(format!("files: {n}"));
        }
        field("resources", format!("{{{}}}", parts.join(", ")));
    }
    if let Some(t) = w.timeout {
        field("timeout", format_duration(t));
    }
    if !w.children.is_empty() {
        out.push_str(&format!("{pad}loops:\n"));
        for child in &w.children {
            let mut child_text = String::new();
            write(child, indent + 4, &mut child_text);
            // Turn the first line's indentation into the list dash.
            out.push_str(&format!("{pad}  - {}", &child_text[indent + 4..]));
        }
    }
}

/// What the parser should make of `w` under a parent that passes down `inh`.
fn expected(w: &Written, inh: &LoopSpec) -> LoopSpec {
    let mut spec = LoopSpec {
        id: w.id.clone(),
        task: w.task.clone(),
        agent: w.agent.clone().or_else(|| inh.agent.clone()),
        done_when: w.done_when.clone(),
        budget: w.budget.unwrap_or(DEFAULT_BUDGET),
        confirm: w.confirm.unwrap_or(1),
        check_every: w.check_every.unwrap_or(DEFAULT_CHECK_EVERY),
        gate: w.gate.map(|(n, _)| Gate { approvals: n }),
        protected: w.protected.clone().unwrap_or_default(),
        parallel: w.parallel.unwrap_or(false),
        max_parallel: None,
        image: w.image.clone().or_else(|| inh.image.clone()),
        network: w.network.clone().unwrap_or_else(|| inh.network.clone()),
        network_set: w.network.is_some() || inh.network_set,
        verifier_network: inh.verifier_network.clone(),
        env: w.env.clone().unwrap_or_else(|| inh.env.clone()),
        verifier_env: inh.verifier_env.clone(),
        writes: w.writes.clone().unwrap_or_else(|| inh.writes.clone()),
        tests: w.tests.clone(),
        judge: w.judge.clone(),
        caches: w.caches.clone().unwrap_or_default(),
        resources: w.resources.unwrap_or_default().or(inh.resources),
        timeout: w.timeout.or(inh.timeout),
        children: Vec::new(),
    };
    spec.children = w.children.iter().map(|c| expected(c, &spec)).collect();
    spec
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_written_manifest_reads_back_as_written(mut w in written_tree(), schedule in any::<bool>()) {
        number(&mut w, &mut 0);
        let mut text = String::new();
        write(&w, 0, &mut text);
        if schedule {
            text.push_str(&format!("schedules:\n  - run: {}\n    at: \"*/5 * * * *\"\n", w.id));
        }
        let m = match parse(&text, Path::new("proctor.yaml")) {
            Ok(m) => m,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n---\n{text}"))),
        };
        let top = LoopSpec {
            id: String::new(),
            task: None,
            agent: None,
            done_when: String::new(),
            budget: DEFAULT_BUDGET,
            confirm: 1,
            check_every: DEFAULT_CHECK_EVERY,
            gate: None,
            protected: Vec::new(),
            parallel: false,
            max_parallel: None,
            image: None,
            network: Network::Open,
            network_set: false,
            verifier_network: Network::None,
            env: Vec::new(),
            verifier_env: Vec::new(),
            writes: Vec::new(),
            tests: None,
            judge: None,
            caches: Vec::new(),
            resources: Resources::default(),
            timeout: None,
            children: Vec::new(),
        };
        prop_assert_eq!(&m.root, &expected(&w, &top), "{}", text);
        let schedules = if schedule {
            vec![Schedule { run: w.id.clone(), at: "*/5 * * * *".to_owned() }]
        } else {
            Vec::new()
        };
        prop_assert_eq!(m.schedules, schedules);
    }
}

//! One trivial container round trip (create, attach, start, wait, remove)
//! through proctor's cage, repeated: the cage side of `benches/run.sh`.
//!
//! `cargo run --release --example cage_latency -- SOCKET [RUNS] [COMMAND] [cold|warm]`
//! prints a human line on stderr and one JSON object on stdout with the
//! median, min and max in milliseconds. `warm` prepares each container
//! ahead of need (`Cage::prepare`) and times only what is left once it has
//! started (go, run, wait, remove): what an iteration of a loop waits for
//! when the engine predicted the step. The container is the host image
//! running `/bin/sh -c COMMAND` as uid 1000 with network `none`, the same
//! hardening and mounts every proctor container gets.

use std::time::{Duration, Instant};

use proctor::cage::{Cage, CageError, DockerCage, Invocation, Labels, Role, HOST_IMAGE};

#[tokio::main]
async fn main() -> Result<(), CageError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("PROCTOR_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let socket = args
        .next()
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    let runs: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
        .max(1);
    let command = args.next().unwrap_or_else(|| "true".into());
    let warm = args.next().as_deref() == Some("warm");
    let cage = DockerCage::connect_to(&socket).await?;
    cage.ensure_image(HOST_IMAGE).await?;
    let log_dir = tempfile::tempdir().map_err(|source| CageError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let labels = Labels {
        repo: "bench-latency".into(),
        run: "bench-latency".into(),
        loop_id: "latency".into(),
        role: Role::Verifier,
    };
    let invocation = Invocation::plain(command, labels, log_dir.path().join("run.log"));
    // One warm-up run settles the runtime choice and the caches.
    let first = cage.run(invocation.clone()).await?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        if warm {
            cage.prepare(&invocation, &proctor::cage::Limits::default());
            // Long enough for any start on an idle machine.
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        // Timed from outside, like the CLI's: everything the caller waits for.
        let started = Instant::now();
        let outcome = cage.run(invocation.clone()).await?;
        times.push(started.elapsed());
        if outcome.exit_code != 0 {
            eprintln!("warning: the command exited {}", outcome.exit_code);
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let runtime = match cage.runtime() {
        Some(Some(name)) => name,
        _ => "engine default".into(),
    };
    eprintln!(
        "{} ({runtime}){}: first run {:.0} ms; {runs} runs: median {:.0} ms, min {:.0} ms, max {:.0} ms",
        cage.describe(),
        if warm { " prepared ahead" } else { "" },
        ms(first.duration),
        ms(times[runs / 2]),
        ms(times[0]),
        ms(times[runs - 1])
    );
    println!(
        "{}",
        serde_json::json!({
            "engine": cage.describe(),
            "runtime": runtime,
            "prepared": warm,
            "runs": runs,
            "median_ms": ms(times[runs / 2]),
            "min_ms": ms(times[0]),
            "max_ms": ms(times[runs - 1]),
        })
    );
    cage.settle().await;
    Ok(())
}

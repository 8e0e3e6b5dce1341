#!/usr/bin/env bash
# An iteration on a real crate, proctor against Lute uncaged, in one run.
#
# The crate is regex-syntax (about 58,000 lines of Rust, no dependencies),
# vendored into the benchmark from cargo's local registry cache, where the
# build of proctor itself put it (nothing is fetched). Each iteration the
# agent makes a one-line change to src/lib.rs and the exam runs
# `cargo test --lib` on the crate (so the crate is compiled again, as after
# any edit) and passes once ITER iterations are done.
#   - proctor: `proctor run`, the exam in a fresh verifier container on the
#     committed tree, the rustup toolchain mounted read-only as
#     `proctor init` writes it, and the cargo target directory in the loop's
#     cache (`caches: [target]`, warm after the first exam).
#   - Lute: `lute once`, uncaged, the exam on the host in the checkout, its
#     `target/` warm after the first exam.
# Per-iteration wall time is the median time from one exam's end to the
# next's (the first, cold exam is not counted). The two are run A, B, A, B
# so a change in the machine's load shows.
#
# Usage: benches/crate.sh          (ITER=6 by default)
#   ITER=N                         iterations per loop
#   PROCTOR_BENCH_DOCKER=/path     Docker socket (default /var/run/docker.sock)
#   LUTE=/path/to/lute             Lute binary (default: `lute` on PATH, else a
#                                  throwaway venv with `pip install luteloops==0.2.1`)
# Needs: rustup's cargo under ~/.cargo (as on the CI machine), a release
# build (done here), python3, git. Prints a Markdown report on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

ITER=${ITER:-6}
DOCKER_SOCK=${PROCTOR_BENCH_DOCKER:-/var/run/docker.sock}
TARGET=${CARGO_TARGET_DIR:-target}

log() { printf '== %s\n' "$*" >&2; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

version=$(awk '/^name = "regex-syntax"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock)
[ -n "$version" ] || { echo "crate.sh: regex-syntax is not in Cargo.lock" >&2; exit 1; }
source=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"regex-syntax-$version" 2>/dev/null | head -1)
[ -d "$source" ] || { echo "crate.sh: regex-syntax $version is not in cargo's registry cache; run \`cargo fetch\` in this repository first" >&2; exit 1; }
command -v cargo >/dev/null || { echo "crate.sh: cargo is not on PATH" >&2; exit 1; }

log "building (release)"
cargo build --release --quiet --bin proctor
PROCTOR=$(realpath "$TARGET/release/proctor")

work=$(mktemp -d /tmp/proctor-crate-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

. benches/lib/lute.sh

lines=$(find "$source/src" -name '*.rs' -exec cat {} + | wc -l)

# The crate as a repository of its own: the registry's sources, without the
# optional `arbitrary` dependency (the only one; an offline lock file could
# not resolve it), an agent and an exam.
make_repo() { # dir tool
  mkdir -p "$1"
  cp -r "$source/." "$1/"
  (
    cd "$1"
    python3 - <<'PY'
import re
text = open("Cargo.toml").read()
text = re.sub(r'\n\[dependencies\.arbitrary\][^\[]*', '\n', text)
text = re.sub(r'\narbitrary = \[[^\]]*\]', '', text)
open("Cargo.toml", "w").write(text)
PY
    rm -f Cargo.toml.orig .cargo_vcs_info.json
    printf 'target/\n' > .gitignore
    # One line changed per iteration, and a count of them.
    printf 'cat >/dev/null\necho "// iteration $(date +%%s%%N)" >> src/lib.rs\necho x >> iterations\n' > agent.sh
    # The target directory: the loop's cache in proctor's verifier, the
    # checkout's own target/ for Lute.
    printf '[ -d /cache/target ] && export CARGO_TARGET_DIR=/cache/target\ncargo test --offline --lib -q 2>&1 | tail -3\n[ "${PIPESTATUS[0]}" -eq 0 ] || exit 1\n[ -f iterations ] && [ "$(wc -l < iterations)" -ge %s ]\n' "$ITER" > exam.sh
    sed -i '1i #!/bin/bash' exam.sh
    if [ "$2" = proctor ]; then
      printf 'loop: crate\ntask: change one line of src/lib.rs\nagent: sh agent.sh\ndone_when: bash exam.sh\nbudget: %s runs\nnetwork: none\ncaches: [target]\ntimeout: 20m\nenv: {verifier: [PATH, CARGO_HOME, RUSTUP_HOME, CARGO_NET_OFFLINE]}\n' \
        "$ITER" > proctor.yaml
      mkdir -p .proctor
      # The rustup toolchain, read-only, as `proctor init` mounts it.
      printf 'mounts: ["~/.cargo", "~/.rustup"]\n' > .proctor/config.yaml
    fi
    cargo generate-lockfile --offline -q
    git init -q
    git config user.email bench@example.com
    git config user.name bench
    git add -A
    git commit -qm "regex-syntax $version"
  )
}

proctor_loop() {
  local dir="$work/proctor-$(now_ms)"
  log "proctor: a $ITER-iteration loop on regex-syntax"
  make_repo "$dir" proctor
  (cd "$dir" && DOCKER_HOST="unix://$DOCKER_SOCK" PROCTOR_KEY_DIR="$work/keys" \
    PATH="$HOME/.cargo/bin:/usr/local/bin:/usr/bin:/bin" CARGO_HOME="$HOME/.cargo" \
    RUSTUP_HOME="$HOME/.rustup" CARGO_NET_OFFLINE=true \
    "$PROCTOR" run >"$work/out-proctor" 2>&1) || { tail -40 "$work/out-proctor" >&2; exit 1; }
  python3 benches/lib/split_events.py "$dir/.proctor/events.jsonl" proctor /dev/null
}

lute_loop() {
  local dir="$work/lute-$(now_ms)"
  log "Lute: a $ITER-iteration loop on regex-syntax, uncaged"
  make_repo "$dir" lute
  (cd "$dir" && "$LUTE" once --until "bash exam.sh" --agent "sh agent.sh" \
    --budget "$ITER runs" -- "change one line of src/lib.rs" >"$work/out-lute" 2>&1) \
    || { tail -40 "$work/out-lute" >&2; exit 1; }
  python3 benches/lib/split_events.py "$dir/.lute/events.jsonl" lute /dev/null
}

field() { python3 -c 'import json,sys; print("%.0f" % json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
ratio() { python3 -c 'import json,sys; a, b = (json.loads(x)["wall_ms"] for x in sys.argv[1:]); print(f"{a / b:.2f}")' "$1" "$2"; }

p1=$(proctor_loop); l1=$(lute_loop); p2=$(proctor_loop); l2=$(lute_loop)

cat <<EOF
## An iteration on a real crate (\`benches/crate.sh\`)

regex-syntax $version ($lines lines of Rust), one line changed per
iteration, exam \`cargo test --lib\`; $ITER iterations per loop, median time
from one exam's end to the next's (the cold first exam not counted).
$(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD), $(nproc) cores,
load average at the end $(cut -d' ' -f1-3 /proc/loadavg).

| loop | iteration | of which the exam | proctor / Lute |
|---|---|---|---|
| proctor (first) | $(field "$p1" wall_ms) ms | $(field "$p1" exam_ms) ms | $(ratio "$p1" "$l1") |
| Lute, uncaged (first) | $(field "$l1" wall_ms) ms | (host process) | |
| proctor (second) | $(field "$p2" wall_ms) ms | $(field "$p2" exam_ms) ms | $(ratio "$p2" "$l2") |
| Lute, uncaged (second) | $(field "$l2" wall_ms) ms | (host process) | |

Raw: proctor $p1 · $p2 · Lute $l1 · $l2
EOF

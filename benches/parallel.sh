#!/usr/bin/env bash
# Parallel siblings (issue #11), measured in one run on one machine:
#   (a) four children of a `parallel: true` loop, each needing 3 attempts
#       of a 2 s agent (and 4 exams), against the same four run serially:
#       wall time of `proctor run`, serial, then parallel with
#       `max_parallel: 2` (the default on a 2-core engine host) and 4;
#   (b) creating a run's worktree (`.proctor/wt/<name>`, git2, tracked
#       files only) in a repository of FILES tracked files: time (median of
#       RUNS) and the peak RSS of the process making it; and the peak RSS
#       of a whole `proctor run` of a one-child parallel tree there (the
#       child's worktree, its agent and its exams).
#
# Usage: benches/parallel.sh
#   REPS=N          repetitions of each (a) variant (default 1; medians)
#   FILES=N RUNS=N  (b)'s repository size (10000) and repetitions (5)
#   PROCTOR_BENCH_DOCKER=/path   engine socket (default /var/run/docker.sock;
#                                a Podman socket works the same)
#   PROCTOR=/path   binary to measure (default: target/debug/proctor, built
#                   here: a debug build, so proctor's own work is slower
#                   than in a release build; the agents' sleeps dominate (a))
# Needs: git, python3, /usr/bin/time. Prints a Markdown report on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-1}
FILES=${FILES:-10000}
RUNS=${RUNS:-5}
SOCK=${PROCTOR_BENCH_DOCKER:-/var/run/docker.sock}
TARGET=${CARGO_TARGET_DIR:-target}

log() { printf '== %s\n' "$*" >&2; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {printf "%.0f", a[int((NR+1)/2)]}'; }

if [ -z "${PROCTOR:-}" ]; then
  log "building (debug)"
  cargo build --quiet --bin proctor --example worktree_create
  PROCTOR=$(realpath "$TARGET/debug/proctor")
else
  cargo build --quiet --example worktree_create
fi
WORKTREE=$(realpath "$TARGET/debug/examples/worktree_create")

work=$(mktemp -d /tmp/proctor-bench-parallel.XXXXXX)
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" PROCTOR_KEY_DIR="$work/keys"
mkdir -p "$HOME"

new_repo() { # dir
  mkdir -p "$1"
  git -C "$1" init -q
  git -C "$1" config user.email bench@example.com
  git -C "$1" config user.name bench
}

# ------------------------------------------------------------------ (a) ----
# Child c<i>: its agent sleeps 2 s and counts its attempts in c<i>.n; its
# exam passes at 3. The parent has no agent; its exam checks all four.
tree() { # extra lines for the root ("" = serial)
  echo "loop: all"
  echo "done_when: 'for c in c1 c2 c3 c4; do [ \"\$(cat \$c.n)\" = 3 ] || exit 1; done'"
  [ -n "$1" ] && printf '%b\n' "$1"
  echo "loops:"
  for c in c1 c2 c3 c4; do
    echo "  - loop: $c"
    echo "    agent: 'sleep 2; n=\$(cat $c.n 2>/dev/null || echo 0); echo \$((n+1)) > $c.n'"
    echo "    done_when: '[ \"\$(cat $c.n 2>/dev/null)\" = 3 ]'"
    echo "    budget: 5 runs"
  done
}

run_tree() { # name extra-lines -> prints milliseconds
  local dir="$work/$1"
  rm -rf "$dir"
  new_repo "$dir"
  tree "$2" > "$dir/proctor.yaml"
  git -C "$dir" add -A
  git -C "$dir" commit -qm base
  local start
  start=$(now_ms)
  (cd "$dir" && DOCKER_HOST="unix://$SOCK" "$PROCTOR" run --plain >"$work/out-$1" 2>&1) \
    || { cat "$work/out-$1" >&2; exit 1; }
  echo $(( $(now_ms) - start ))
  local agents
  agents=$(grep -c '"type":"agent_end"' "$dir/.proctor/events.jsonl")
  [ "$agents" = 12 ] || { echo "run $1: $agents agents, not 12" >&2; exit 1; }
}

declare -A wall
for variant in serial par2 par4; do
  case $variant in
    serial) extra="" ;;
    par2) extra="parallel: true\nmax_parallel: 2" ;;
    par4) extra="parallel: true\nmax_parallel: 4" ;;
  esac
  samples=()
  for _ in $(seq "$REPS"); do
    log "(a) $variant"
    samples+=("$(run_tree "$variant" "$extra")")
  done
  wall[$variant]=$(printf '%s\n' "${samples[@]}" | median)
done

# ------------------------------------------------------------------ (b) ----
log "(b) a repository of $FILES tracked files"
big="$work/big"
new_repo "$big"
python3 - "$big" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "src", "d%03d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d.txt" % i), "w") as f:
        f.write("file %d\n" % i + "x" * (i % 512) + "\n")
PY
git -C "$big" add -A
git -C "$big" commit -qm "$FILES files"
wt_json=$("$WORKTREE" "$big" "$RUNS")
log "(b) worktree: $wt_json"

printf 'loop: all\ndone_when: test -f done\nparallel: true\nloops:\n  - loop: one\n    agent: touch done\n    done_when: test -f done\n' > "$big/proctor.yaml"
git -C "$big" add proctor.yaml
git -C "$big" commit -qm manifest
(cd "$big" && DOCKER_HOST="unix://$SOCK" /usr/bin/time -v -o "$work/time-big" \
  "$PROCTOR" run --plain >"$work/out-big" 2>&1) || { cat "$work/out-big" >&2; exit 1; }
run_rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time-big")
run_secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time-big")

field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$wt_json" "$1"; }
ratio() { python3 -c 'import sys; print("%.2f" % (int(sys.argv[1]) / int(sys.argv[2])))' "$1" "$2"; }

cat <<EOF
### Parallel siblings ($(date -u +%Y-%m-%d), $(nproc) cores, $("$PROCTOR" --version 2>/dev/null | head -1), engine at $SOCK)

Four children, each needing 3 attempts of a 2 s agent (12 agents, 16 child
exams, 1 parent exam), one \`proctor run\` each, median of $REPS:

| tree | wall time | against serial |
|---|---|---|
| serial (\`parallel\` unset) | $(( wall[serial] )) ms | 1.00× |
| \`parallel: true\`, \`max_parallel: 2\` (this host's default) | $(( wall[par2] )) ms | $(ratio "${wall[par2]}" "${wall[serial]}")× |
| \`parallel: true\`, \`max_parallel: 4\` | $(( wall[par4] )) ms | $(ratio "${wall[par4]}" "${wall[serial]}")× |

Creating a run's worktree in a repository of $(field files) tracked files
(git2, tracked files only), $(field runs) times: median $(field median_ms) ms
(min $(field min_ms), max $(field max_ms)); peak RSS of the process
$(( $(field peak_rss_kib_before) / 1024 )) MB before the first creation, $(( $(field peak_rss_kib_after) / 1024 )) MB after the last.
A whole \`proctor run\` of a one-child parallel tree there (the child's
worktree, one agent, two exams, the merge): $run_secs wall, peak RSS $(( run_rss / 1024 )) MB.
EOF

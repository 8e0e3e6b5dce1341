#!/usr/bin/env bash
# proctor's benchmark, in one run on one machine:
#   (a) one container round trip (create, start, wait, remove) through
#       proctor's cage vs `docker run --rm` / `podman run --rm` of the same
#       image, command, hardening and mounts (N runs, medians);
#   (b) a loop of ITER iterations with a trivial agent and exam (`proctor
#       run`, the exam passes on the ITER-th commit) on Docker: wall time
#       per iteration, split into container time and proctor's own work;
#   (c) the same on Podman;
#   (d) proctor's peak memory (max RSS) in those loops and while importing
#       a large rootfs;
#   and Lute's *uncaged* iteration on the same workload, for comparison.
#
# Usage: benches/run.sh            (RUNS=20 ITER=20 by default)
#   RUNS=N ITER=N                  repetitions
#   PROCTOR_BENCH_DOCKER=/path     Docker socket   (default /var/run/docker.sock)
#   PROCTOR_BENCH_PODMAN=/path     Podman socket   (default /run/podman/podman.sock; SKIP_PODMAN=1 to skip)
#   LUTE=/path/to/lute             Lute binary (default: `lute` on PATH, else a
#                                  throwaway venv with `pip install luteloops==0.2.1`)
#   IMPORT_MB=N                    size of the rootfs for the import memory check (default 256)
# Needs: a release build (done here), python3, /usr/bin/time, git, both
# engines' CLIs for the CLI comparison. Prints a Markdown report on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-20}
ITER=${ITER:-20}
IMPORT_MB=${IMPORT_MB:-256}
DOCKER_SOCK=${PROCTOR_BENCH_DOCKER:-/var/run/docker.sock}
PODMAN_SOCK=${PROCTOR_BENCH_PODMAN:-/run/podman/podman.sock}
TARGET=${CARGO_TARGET_DIR:-target}

log() { printf '== %s\n' "$*" >&2; }
median() { sort -n | awk '{a[NR]=$1} END {printf "%.0f", a[int((NR+1)/2)]}'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# The machine's busy CPU time (all processes, all cores) in clock ticks.
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
tick_ms() { python3 -c 'import os; print(1000 / os.sysconf("SC_CLK_TCK"))'; }
# Samples the machine's busy CPU every 20 ms into FILE ("unix-time ticks"
# lines) until killed: one python process, so the sampling costs next to
# nothing. Lets the loops' CPU be counted between their first and last exam.
start_sampler() { # file
  python3 -c '
import sys, time
out = open(sys.argv[1], "w", buffering=1)
while True:
    with open("/proc/stat") as f:
        v = f.readline().split()
    out.write("%.3f %d\n" % (time.time(), sum(int(x) for x in (v[1], v[2], v[3], v[6], v[7]))))
    time.sleep(0.02)
' "$1" &
  sampler=$!
}
sampler=
stop_sampler() { [ -n "$sampler" ] || return 0; kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true; sampler=; }

log "building (release)"
cargo build --release --quiet --bin proctor --example cage_latency
PROCTOR=$(realpath "$TARGET/release/proctor")
LATENCY=$(realpath "$TARGET/release/examples/cage_latency")

work=$(mktemp -d /tmp/proctor-bench-XXXXXX)
trap 'stop_sampler; rm -rf "$work"' EXIT

. benches/lib/lute.sh

load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- (a) ----
# The CLI runs the container the cage would run: same image (the built-in
# host image), same flags, same read-only toolchain mounts.
cli_flags=(--rm --read-only --tmpfs /tmp:rw,exec,nosuid,nodev,mode=1777
  --cap-drop ALL --security-opt no-new-privileges --pids-limit 512
  --ulimit nofile=8192:8192 --ulimit nproc=4096:4096 --network none
  -u 1000:1000 --log-driver none -w /tmp)
cli_mounts=()
for path in /usr /bin /lib /lib64 /lib32 /libx32 /etc/alternatives /etc/ssl/certs \
            /etc/ssl/openssl.cnf /etc/ca-certificates /etc/ld.so.cache; do
  [ -e "$path" ] && cli_mounts+=(-v "$(readlink -f "$path"):$path:ro")
done
ids="${TMPDIR:-/tmp}/proctor-cage-$(id -u)"

cli_round_trips() { # engine-cli-args...
  local i start
  for i in $(seq "$RUNS"); do
    start=$(now_ms)
    "$@" /bin/sh -c true >/dev/null || echo "cli run failed" >&2
    echo $(( $(now_ms) - start ))
  done | median
}

round_trip() { # name socket cli...
  local name=$1 socket=$2; shift 2
  log "(a) $name: $RUNS round trips through the cage"
  local json b0
  b0=$(busy_ticks)
  json=$("$LATENCY" "unix://$socket" "$RUNS" true cold)
  cage_cpu_ms=$(python3 -c 'import sys; print(round((int(sys.argv[2]) - int(sys.argv[1])) * float(sys.argv[3]) / int(sys.argv[4])))' \
    "$b0" "$(busy_ticks)" "$(tick_ms)" "$RUNS")
  cage_ms=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["median_ms"]))' "$json")
  cage_desc=$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["engine"] + ", " + j["runtime"])' "$json")
  log "(a) $name: $RUNS round trips through the cage, each prepared ahead of need"
  json=$("$LATENCY" "unix://$socket" "$RUNS" true warm)
  warm_ms=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["median_ms"]))' "$json")
  log "(a) $name: $RUNS round trips through the CLI"
  local mounts=("${cli_mounts[@]}" -v "$ids/passwd-1000-1000:/etc/passwd:ro" -v "$ids/group-1000-1000:/etc/group:ro")
  "$@" "${cli_flags[@]}" "${mounts[@]}" proctor-host:2 /bin/sh -c true >/dev/null  # warm-up
  cli_ms=$(cli_round_trips "$@" "${cli_flags[@]}" "${mounts[@]}" proctor-host:2)
}

# ------------------------------------------------------------ (b), (c) ----
# A repository whose agent appends a line and whose exam passes once the
# file has ITER lines: ITER iterations of agent, commit, exam.
make_repo() { # dir [agent-network]
  mkdir -p "$1"
  (
    cd "$1"
    git init -q
    git config user.email bench@example.com
    git config user.name bench
    printf 'cat >/dev/null\necho line >> counter\n' > agent.sh
    printf '[ -f counter ] && [ "$(wc -l < counter)" -ge %s ]\n' "$ITER" > exam.sh
    # proctor's manifest (none for `once`); Lute runs the same agent and
    # exam through `lute once`.
    if [ "${2:-}" != once ]; then
      printf 'loop: bench\ntask: append a line to counter\nagent: sh agent.sh\ndone_when: sh exam.sh\nbudget: %s runs\nnetwork: %s\n' \
        "$ITER" "${2:-open}" > proctor.yaml
    fi
    git add .
    git commit -qm init
  )
}

# Splits a run's events into per-iteration wall time (from one exam's end
# to the next's), container time (agent + exam containers) and the rest.
split_events() { # events.jsonl tool cpu-samples
  python3 benches/lib/split_events.py "$1" "$2" "$3"
}

peak_rss_kb() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }

proctor_loop() { # name socket agent-network [prepare-ahead]
  local name=$1 socket=$2 network=$3 ahead=${4:-} dir="$work/loop-$1"
  # `once` has no manifest file, hence no exam materials to mount read-only
  # inside the exam's tree: its exams can be prepared ahead as well.
  local verb=(run)
  case $name in *-once) verb=(once --until "sh exam.sh" --agent "sh agent.sh" --budget "$ITER runs" -- "append a line to counter") ;; esac
  log "(b/c) $name: a $ITER-iteration loop through proctor"
  case $name in *-once) make_repo "$dir" once ;; *) make_repo "$dir" "$network" ;; esac
  local start
  start_sampler "$work/cpu-$name"
  start=$(now_ms)
  (cd "$dir" && DOCKER_HOST="unix://$socket" PROCTOR_KEY_DIR="$work/keys" \
    PROCTOR_PREPARE_AHEAD="$ahead" \
    /usr/bin/time -v -o "$work/time-$name" "$PROCTOR" "${verb[@]}" \
    >"$work/out-$name" 2>&1) || { cat "$work/out-$name" >&2; exit 1; }
  loop_total_ms=$(( $(now_ms) - start ))
  stop_sampler
  loop_json=$(split_events "$dir/.proctor/events.jsonl" proctor "$work/cpu-$name")
  loop_rss=$(peak_rss_kb "$work/time-$name")
}

lute_loop() {
  local dir="$work/loop-lute-$(now_ms)"
  log "(b) Lute: a $ITER-iteration loop, uncaged"
  make_repo "$dir" once
  local start
  start_sampler "$work/cpu-lute"
  start=$(now_ms)
  (cd "$dir" && /usr/bin/time -v -o "$work/time-lute" "$LUTE" once --until "sh exam.sh" \
    --agent "sh agent.sh" --budget "$ITER runs" -- "append a line to counter" \
    >"$work/out-lute" 2>&1) || { cat "$work/out-lute" >&2; exit 1; }
  lute_total_ms=$(( $(now_ms) - start ))
  stop_sampler
  lute_json=$(split_events "$dir/.lute/events.jsonl" lute "$work/cpu-lute")
  lute_rss=$(peak_rss_kb "$work/time-lute")
}

floor() { python3 -c 'import json,os,sys; print("%.0f" % (json.loads(sys.argv[1])["cpu_ms"] / os.cpu_count()))' "$1"; }
# The wall time per iteration over that floor: 1.00 would be every core
# busy with the loop's work all the time. Other work on the machine counts
# in the CPU too, so on a loaded machine this tends to 1 whatever the loop
# does: only a quiet machine's ratio says how well the loop overlaps.
over_floor() { python3 -c 'import json,os,sys; j=json.loads(sys.argv[1]); f=j["cpu_ms"]/os.cpu_count(); print("%.2f" % (j["wall_ms"] / f) if f else "n/a")' "$1"; }
ratio() { python3 -c 'import sys; a, b = map(float, sys.argv[1:]); print(f"{a / b:.2f}" if b else "n/a")' "$1" "$2"; }
field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(f"{v:.0f}" if sys.argv[3:] == [] else f"{100*v:.1f}")' "$@"; }

# ----------------------------------------------------------------- run ----
round_trip docker "$DOCKER_SOCK" docker -H "unix://$DOCKER_SOCK" run --init
docker_cage_ms=$cage_ms; docker_warm_ms=$warm_ms; docker_cli_ms=$cli_ms; docker_desc=$cage_desc; docker_cpu_ms=$cage_cpu_ms
if [ -z "${SKIP_PODMAN:-}" ]; then
  init_path=()
  for p in /usr/libexec/podman/catatonit /usr/libexec/catatonit/catatonit /usr/bin/catatonit /usr/bin/tini-static; do
    [ -x "$p" ] && { init_path=(--init-path "$p"); break; }
  done
  # The local CLI (no service in between), on the service's runtime.
  round_trip podman "$PODMAN_SOCK" podman --runtime runc run --init "${init_path[@]}" --read-only-tmpfs=false
  podman_cage_ms=$cage_ms; podman_warm_ms=$warm_ms; podman_cli_ms=$cli_ms; podman_desc=$cage_desc; podman_cpu_ms=$cage_cpu_ms
fi

lute_loop
declare -A loops totals
variants=(docker docker-none docker-once docker-cold)
[ -z "${SKIP_PODMAN:-}" ] && variants+=(podman podman-none podman-once podman-cold)
for v in "${variants[@]}"; do
  case $v in docker*) sock=$DOCKER_SOCK ;; *) sock=$PODMAN_SOCK ;; esac
  case $v in *-none) net=none ;; *) net=open ;; esac
  case $v in *-cold) ahead=0 ;; *) ahead= ;; esac
  proctor_loop "$v" "$sock" "$net" "$ahead"
  loops[$v]=$loop_json; totals[$v]=$loop_total_ms
  case $v in docker) docker_rss=$loop_rss ;; podman) podman_rss=$loop_rss ;; esac
done

# Lute again: the machine's load may have changed since the first one.
lute_first=$lute_json; lute_first_total=$lute_total_ms
lute_loop
lute_second=$lute_json; lute_second_total=$lute_total_ms

# (d) memory while importing a large rootfs: it must stream, not buffer.
log "(d) importing a ${IMPORT_MB} MB rootfs directory"
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/" 2>/dev/null || true
for i in 1 2 3 4; do
  head -c $(( IMPORT_MB * 1024 * 1024 / 4 )) /dev/urandom > "$work/rootfs/blob$i"
done
(cd "$work" && DOCKER_HOST="unix://$DOCKER_SOCK" /usr/bin/time -v -o "$work/time-import" \
  "$PROCTOR" image import "$work/rootfs" --name proctor-bench-import >/dev/null)
import_rss=$(peak_rss_kb "$work/time-import")
(cd "$work" && DOCKER_HOST="unix://$DOCKER_SOCK" "$PROCTOR" image prune proctor-bench-import >/dev/null)

load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --------------------------------------------------------------- report ----
cat <<EOF
## proctor benchmark · $(date -u +%Y-%m-%dT%H:%MZ) · $(nproc) cores · load average at start $load_start, at end $load_end

### (a) one container round trip (create, start, wait, remove), median of $RUNS

| engine | CLI \`run --rm\` | proctor's cage, cold | cold / CLI | cage, prepared ahead (what a loop waits for) | prepared / CLI | machine CPU per cold container |
|---|---|---|---|---|---|---|
| $docker_desc | ${docker_cli_ms} ms | ${docker_cage_ms} ms | $(ratio "$docker_cage_ms" "$docker_cli_ms") | ${docker_warm_ms} ms | $(ratio "$docker_warm_ms" "$docker_cli_ms") | ${docker_cpu_ms} ms |
EOF
if [ -z "${SKIP_PODMAN:-}" ]; then
  echo "| $podman_desc | ${podman_cli_ms} ms | ${podman_cage_ms} ms | $(ratio "$podman_cage_ms" "$podman_cli_ms") | ${podman_warm_ms} ms | $(ratio "$podman_warm_ms" "$podman_cli_ms") | ${podman_cpu_ms} ms |"
fi
cat <<EOF

"Machine CPU" is the busy time of all processes on all $(nproc) cores
(\`/proc/stat\`) while the cold round trips ran, divided by their number:
what one container costs the engine (daemon, shim, OCI runtime, kernel).
EOF
cat <<EOF

### (b, c) a $ITER-iteration loop (agent + commit + exam), per iteration, medians

| | wall / iteration | agent container | exam container | proctor's own work | own share of the loop | machine CPU / iteration | CPU / $(nproc) cores | wall / that floor | whole process / $ITER | peak RSS |
|---|---|---|---|---|---|---|---|---|---|---|
| Lute 0.2.1, uncaged (first) | $(field "$lute_first" wall_ms) ms | $(field "$lute_first" agent_ms) ms (host process) | (host process) | | | $(field "$lute_first" cpu_ms) ms | $(floor "$lute_first") ms | $(over_floor "$lute_first") | $(( lute_first_total / ITER )) ms | $(( lute_rss / 1024 )) MB |
| Lute 0.2.1, uncaged (again, after proctor's) | $(field "$lute_second" wall_ms) ms | $(field "$lute_second" agent_ms) ms (host process) | (host process) | | | $(field "$lute_second" cpu_ms) ms | $(floor "$lute_second") ms | $(over_floor "$lute_second") | $(( lute_second_total / ITER )) ms | |
EOF
describe() {
  case $1 in
    docker) echo "proctor on Docker (agent network \`open\`, the default)" ;;
    docker-none) echo "proctor on Docker, agent network \`none\`" ;;
    docker-once) echo "proctor on Docker, \`once\` (no manifest: exams prepared too; \`open\`)" ;;
    docker-cold) echo "proctor on Docker, nothing prepared ahead (\`open\`)" ;;
    podman) echo "proctor on Podman (agent network \`open\`)" ;;
    podman-none) echo "proctor on Podman, agent network \`none\`" ;;
    podman-once) echo "proctor on Podman, \`once\` (no manifest: exams prepared too; \`open\`)" ;;
    podman-cold) echo "proctor on Podman, nothing prepared ahead (\`open\`)" ;;
  esac
}
for v in "${variants[@]}"; do
  j=${loops[$v]}
  rss=
  case $v in docker) rss="$(( docker_rss / 1024 )) MB" ;; podman) rss="$(( podman_rss / 1024 )) MB" ;; esac
  echo "| $(describe "$v") | $(field "$j" wall_ms) ms | $(field "$j" agent_ms) ms | $(field "$j" exam_ms) ms | $(field "$j" own_ms) ms | $(field "$j" own_share pct) % | $(field "$j" cpu_ms) ms | $(floor "$j") ms | $(over_floor "$j") | $(( ${totals[$v]} / ITER )) ms | $rss |"
done
cat <<EOF

"Machine CPU / iteration" is the busy time of all processes on all cores
from the first exam's end to the last one's, per iteration (sampled every
20 ms). Divided by the $(nproc) cores it is the least wall time any schedule
of that work could reach on this machine, however much of it overlaps;
"wall / that floor" is how far the loop stays above it. Work of other
processes counts in that CPU too: on a loaded machine (load average above
$(nproc)) the ratio tends to 1 whatever the loop does, so compare it only
between runs on a quiet machine.
EOF
cat <<EOF

### (d) peak memory

- \`proctor run\`, $ITER iterations: $(( docker_rss / 1024 )) MB on Docker$( [ -z "${SKIP_PODMAN:-}" ] && echo ", $(( podman_rss / 1024 )) MB on Podman").
- \`proctor image import\` of a ${IMPORT_MB} MB directory: $(( import_rss / 1024 )) MB.

Raw: lute $lute_first, again $lute_second$(for v in "${variants[@]}"; do printf ' · %s %s' "$v" "${loops[$v]}"; done)
EOF

#!/usr/bin/env bash
# proctor's fault suite: trials that break a run on purpose and check what
# the next run makes of it. Each trial prints one verdict line; the end is
# a Markdown table of totals. Exits 1 on any false pass, orphan, double run
# or corrupt state (2 when the suite itself cannot run).
#
# The trials, each on a fresh fixture repository (a bug in calc.sh; an agent
# that leaves an `agent-<ns>.txt` file per attempt and fixes the bug on the
# second; an exam that sleeps, then tests; `network: none` everywhere):
#   kill9    kill -9 of `proctor run` at a random moment (KILL9 trials, 30 by
#            default), then `proctor run` again
#   signal   SIGTERM, SIGINT and `proctor stop`, each mid-agent and mid-exam,
#            then `proctor run` again
#   starts   STARTS runs of `proctor run --skip-if-running` started at once
#            (STARTGROUPS times): exactly one may run
#   branch   the branch `proctor/fix` deleted, and reset to the base, while
#            the agent works
#   disk     the repository on a small tmpfs that fills up mid-agent; then
#            space is freed and `proctor run` resumes (needs root to mount)
#   events   kill -9 mid-agent, the events file cut mid-line, then resume
#   engine   a PRIVATE dockerd (its own --data-root, --exec-root, --pidfile,
#            socket and bridge `pfbr0`, no iptables: the shared engines are
#            never touched) stopped (SIGTERM) or killed (SIGKILL) mid-agent
#            and mid-exam, started again, then `proctor run` again
#
# What a verdict checks, after the last `proctor run` of the trial:
#   completed      it exited 0 (the loop closed)
#   false pass     it exited 0, yet the exam fails on the branch tip's tree
#                  (run on the host from `git archive`), or a trial found a
#                  verdict recorded from an exit code the engine caused
#   orphan         a container labelled with the fixture's repository
#   double run     more than one run started in one repository at once
#   corrupt state  `git fsck` fails; an events or ledger line is not JSON;
#                  the lock is still held or the attempt marker is left
#                  behind; an
#                  uncommitted edit is left (after a completed run); a
#                  parentless commit; an attempt commit holding two agents'
#                  files (leftovers mixed into the next agent's commit); an
#                  attempt charged with exit 143 from a stopped engine
#   redone         `interrupted` events: attempts cut short and settled
#
# Usage: benches/faults.sh                  (all trials)
#   ONLY=kill9,signal,...                   only these kinds
#   KILL9=N STARTS=N STARTGROUPS=N          counts (30, 20, 5)
#   SEED=N                                  the random moments (default: random, printed)
#   PROCTOR=/path/to/proctor                the binary (default: a debug build made here)
#   PROCTOR_FAULTS_DOCKER=unix:///path      the shared engine for all but the
#                                           engine trials (default /var/run/docker.sock)
#   KEEP=1                                  keep the trial directories
# Needs: git, python3, curl, the `docker` CLI; dockerd and `ip` (root) for
# the engine trials, `mount` (root) for the disk trial.
set -uo pipefail
cd "$(dirname "$0")/.."

KILL9=${KILL9:-30}
STARTS=${STARTS:-20}
STARTGROUPS=${STARTGROUPS:-5}
ONLY=${ONLY:-kill9,signal,starts,branch,disk,events,engine}
SEED=${SEED:-$((RANDOM * 32768 + RANDOM))}
SHARED=${PROCTOR_FAULTS_DOCKER:-unix:///var/run/docker.sock}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
RANDOM=$SEED

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'faults.sh: %s\n' "$*" >&2; exit 2; }
for tool in git python3 curl docker timeout; do
  command -v "$tool" >/dev/null || die "needs \`$tool\`"
done

if [ -z "${PROCTOR:-}" ]; then
  log "building proctor (debug)"
  cargo build --quiet --bin proctor || die "the build failed"
  PROCTOR=$(realpath "${CARGO_TARGET_DIR:-target}/debug/proctor")
fi
[ -x "$PROCTOR" ] || die "no proctor binary at $PROCTOR"

WORK=$(mktemp -d /tmp/proctor-faults.XXXXXX)
mkdir -p "$WORK/home" "$WORK/keys"
ENGINE_DIR=$WORK/engine
ENGINE_SOCK=unix://$ENGINE_DIR/docker.sock
BRIDGE=pfbr0
made_bridge=
DISK=$WORK/disk

cleanup() {
  stop_private_engine KILL
  if [ -n "$made_bridge" ]; then ip link del "$BRIDGE" 2>/dev/null; fi
  if mountpoint -q "$DISK" 2>/dev/null; then umount "$DISK"; fi
  # dockerd mounts its data root over itself (and leaves it mounted when
  # killed): unmount everything under the work directory, deepest first.
  awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Totals.
trials=0 completed=0 redone=0 orphans=0 false_passes=0 double_runs=0 corrupt=0

# ---------------------------------------------------------------- fixture

# fixture DIR AGENT_SLEEP EXAM_SLEEP: a repository whose loop closes after
# two agents (the second fixes calc.sh).
fixture() {
  local dir=$1 agent_sleep=$2 exam_sleep=$3
  mkdir -p "$dir"
  git -C "$dir" init -q
  git -C "$dir" config user.name faults
  git -C "$dir" config user.email faults@example.com
  printf 'add() { echo $(( $1 - $2 )); }\n' >"$dir/calc.sh"
  cat >"$dir/test.sh" <<EOF
sleep $exam_sleep
. ./calc.sh
[ "\$(add 2 2)" = 4 ] || { echo "FAIL: add 2 2 printed \$(add 2 2)"; exit 1; }
echo ok
EOF
  cat >"$dir/agent.sh" <<EOF
cat >/dev/null
echo "\$PROCTOR_RUN" > "agent-\$(date +%s%N).txt"
sleep $agent_sleep
if [ "\$(ls agent-*.txt | wc -l)" -ge 2 ]; then sed -i 's/\\\$1 - \\\$2/\$1 + \$2/' calc.sh; fi
EOF
  printf 'loop: fix\nagent: sh agent.sh\ndone_when: sh test.sh\nbudget: 8 runs\nnetwork: none\ntimeout: 120s\n' >"$dir/proctor.yaml"
  git -C "$dir" add -A
  git -C "$dir" commit -qm "the fixture: calc.sh subtracts"
}

# proctor_in DIR ENGINE ARGS...: the binary in DIR with a clean environment.
proctor_in() {
  local dir=$1 engine=$2
  shift 2
  (cd "$dir" && env -i PATH="$PATH" HOME="$WORK/home" PROCTOR_KEY_DIR="$WORK/keys" \
    CI=true DOCKER_HOST="$engine" timeout -k 10 "$RUN_TIMEOUT" "$PROCTOR" "$@")
}

# start_in DIR ENGINE OUT ARGS...: the same in the background; sets $bg.
start_in() {
  local dir=$1 engine=$2 out=$3
  shift 3
  (cd "$dir" && exec env -i PATH="$PATH" HOME="$WORK/home" PROCTOR_KEY_DIR="$WORK/keys" \
    CI=true DOCKER_HOST="$engine" "$PROCTOR" "$@") >"$out" 2>&1 &
  bg=$!
}

# wait_for DIR WHAT: polls (50 ms) until the events file's last line says
# WHAT is under way (`agent`: an agent works; `exam`: a verify exam runs).
# Fails after 120 s.
wait_for() {
  local dir=$1 what=$2 i last
  for ((i = 0; i < 2400; i++)); do
    last=$(tail -n 1 "$dir/.proctor/events.jsonl" 2>/dev/null)
    case "$what:$last" in
      agent:*'"type":"agent_start"'*) return 0 ;;
      exam:*'"type":"check_start"'*'"phase":"verify"'*) return 0 ;;
    esac
    sleep 0.05
  done
  return 1
}

label_of() { printf %s "$(realpath "$1")" | sha256sum | cut -c1-16; }

# ---------------------------------------------------------------- verdict

# judge NAME DIR RC ENGINE [EXPECT]: checks the repository after a trial's
# last run (exit RC) and prints the verdict line. EXPECT `complete` (the
# default) counts a run that did not close as a failure to complete only;
# `any` accepts any ending (the branch trials).
judge() {
  local name=$1 dir=$2 rc=$3 engine=$4 expect=${5:-complete}
  local problems=() state=ok fp=0 orphan dbl=0
  trials=$((trials + 1))
  # Orphans: containers of this repository still there (then removed, so
  # they do not pile up).
  orphan=$(docker -H "$engine" ps -aq --filter "label=proctor.repo=$(label_of "$dir")" 2>/dev/null | wc -l)
  if [ "$orphan" -gt 0 ]; then
    # What each leftover is, before it goes: its name, role, run, state,
    # age and labels (kept in $WORK/orphans.txt as well as printed).
    docker -H "$engine" ps -aq --filter "label=proctor.repo=$(label_of "$dir")" |
      xargs -r docker -H "$engine" inspect --format \
        '  leftover {{.Name}} role={{index .Config.Labels "proctor.role"}} run={{index .Config.Labels "proctor.run"}} state={{.State.Status}} exit={{.State.ExitCode}} created={{.Created}} started={{.State.StartedAt}} finished={{.State.FinishedAt}} labels={{json .Config.Labels}}' 2>&1 |
      tee -a "$WORK/orphans.txt" >&2
    printf '  (checked at %s)\n' "$(date -u +%H:%M:%S.%N)" | tee -a "$WORK/orphans.txt" >&2
    docker -H "$engine" ps -aq --filter "label=proctor.repo=$(label_of "$dir")" |
      xargs -r docker -H "$engine" rm -f >/dev/null 2>&1
  fi
  local report
  report=$(python3 - "$dir" "$rc" <<'EOF'
import json, os, subprocess, sys, tempfile
d, rc = sys.argv[1], int(sys.argv[2])
out = {"corrupt": [], "false_pass": [], "redone": 0, "runs": 0}
def git(*args, check=True):
    p = subprocess.run(["git", "-C", d, *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(p.stderr.strip())
    return p
if git("fsck", "--no-dangling", "--no-progress", check=False).returncode != 0:
    out["corrupt"].append("git fsck fails")
for name in ("events.jsonl", "ledger.jsonl"):
    path = os.path.join(d, ".proctor", name)
    if not os.path.exists(path):
        continue
    data = open(path, "rb").read()
    bad = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except Exception:
            bad += 1
            continue
        if name == "events.jsonl" and rec.get("type") == "interrupted":
            out["redone"] += 1
    if bad:
        out["corrupt"].append(f"{bad} line(s) of {name} are not JSON")
# The lock file stays (never deleted); a run holds a kernel lock on it.
# A POSIX lock conflicts with that OFD lock, so taking one here fails
# exactly when a run still holds it.
lock = os.path.join(d, ".proctor", "lock")
if os.path.exists(lock):
    import fcntl
    with open(lock, "r+") as f:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(f, fcntl.LOCK_UN)
        except OSError:
            out["corrupt"].append("the lock is still held")
if rc == 0 and os.path.exists(os.path.join(d, ".proctor", "tmp", "attempt")):
    out["corrupt"].append("the attempt marker is left behind")
if rc == 0:
    dirty = git("status", "--porcelain", check=False).stdout.strip()
    if dirty:
        out["corrupt"].append("uncommitted edits left: " + " ".join(dirty.split()[:6]))
branches = git("for-each-ref", "--format=%(refname:short)", "refs/heads/proctor/", check=False).stdout.split()
for b in branches:
    roots = git("rev-list", "--max-parents=0", b, check=False).stdout.split()
    if len(roots) != 1:
        out["corrupt"].append(f"{b} has {len(roots)} parentless commits")
    log = git("log", "--first-parent", "--format=%H %s", b, check=False).stdout.splitlines()
    for entry in log:
        sha, _, summary = entry.partition(" ")
        if ": run " not in summary:
            continue
        out["runs"] += 1
        body = git("show", "-s", "--format=%B", sha, check=False).stdout
        if "Proctor-Agent-Exit: 143" in body:
            out["corrupt"].append(f"{summary!r} charged with exit 143")
        parent = git("rev-parse", sha + "^", check=False).stdout.strip()
        if not parent:
            continue
        added = [p for p in git("diff", "--name-only", "--diff-filter=A", parent, sha, check=False).stdout.split() if p.startswith("agent-")]
        if len(added) > 1:
            out["corrupt"].append(f"{summary!r} holds {len(added)} agents' files")
if rc == 0 and "proctor/fix" in branches:
    with tempfile.TemporaryDirectory() as tree:
        archive = subprocess.run(["git", "-C", d, "archive", "proctor/fix"], capture_output=True)
        subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
        exam = subprocess.run(["sh", "test.sh"], cwd=tree, capture_output=True)
        if exam.returncode != 0:
            out["false_pass"].append("closed, but the exam fails on the branch tip")
print(json.dumps(out))
EOF
)
  local n_corrupt n_false n_redone
  n_corrupt=$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["corrupt"]))' "$report")
  n_false=$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["false_pass"]))' "$report")
  n_redone=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["redone"])' "$report")
  local reasons
  reasons=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("; ".join(r["false_pass"] + r["corrupt"]))' "$report")
  [ -n "${DOUBLE:-}" ] && dbl=$DOUBLE
  if [ -n "${BROKEN:-}" ]; then
    n_corrupt=$((n_corrupt + 1))
    reasons="$BROKEN${reasons:+; $reasons}"
  fi
  if [ -n "${MOVED:-}" ]; then
    n_corrupt=$((n_corrupt + 1))
    reasons="the run carried on after its branch moved${reasons:+; $reasons}"
  fi
  redone=$((redone + n_redone))
  orphans=$((orphans + orphan))
  [ "$n_false" -gt 0 ] && false_passes=$((false_passes + 1)) && problems+=("FALSE PASS")
  [ "$n_corrupt" -gt 0 ] && corrupt=$((corrupt + 1)) && problems+=("CORRUPT")
  [ "$orphan" -gt 0 ] && problems+=("$orphan ORPHAN(S)")
  [ "$dbl" -gt 0 ] && double_runs=$((double_runs + dbl)) && problems+=("DOUBLE RUN")
  if [ "$rc" = 0 ]; then
    completed=$((completed + 1)); state="completed"
  elif [ "$expect" = any ]; then
    state="stopped (exit $rc): $(grep -m1 '^error:' "$LAST_OUT" 2>/dev/null | cut -c1-110)"
  else
    state="did not complete (exit $rc)"
  fi
  local verdict=ok
  [ ${#problems[@]} -gt 0 ] && verdict="${problems[*]}: $reasons"
  printf '%-28s %s · %s redone · %s\n' "$name" "$state" "$n_redone" "$verdict"
}

# ---------------------------------------------------------------- trials

resume() { # DIR ENGINE: the run after the fault; sets $rc
  LAST_OUT=$1.resume.out
  proctor_in "$1" "$2" run >"$LAST_OUT" 2>&1
  rc=$?
}

trial_kill9() {
  local i dir at
  for ((i = 1; i <= KILL9; i++)); do
    dir=$WORK/kill9-$i
    fixture "$dir" 1 0.3
    # A whole run takes about 6 s here: kill anywhere in it.
    at=$(python3 -c "import random; random.seed($SEED + $i); print(round(random.uniform(0.2, 6.5), 2))")
    start_in "$dir" "$SHARED" "$dir.first.out" run
    sleep "$at"
    kill -9 "$bg" 2>/dev/null
    wait "$bg" 2>/dev/null
    resume "$dir" "$SHARED"
    judge "kill -9 #$i at ${at}s" "$dir" "$rc" "$SHARED"
  done
}

trial_signal() {
  local how where dir code
  for how in TERM INT stop; do
    for where in agent exam; do
      dir=$WORK/signal-$how-$where
      fixture "$dir" 2 1.5
      start_in "$dir" "$SHARED" "$dir.first.out" run
      if ! wait_for "$dir" "$where"; then
        kill -9 "$bg" 2>/dev/null
        printf '%-28s never reached the %s\n' "$how mid-$where" "$where"
        continue
      fi
      if [ "$how" = stop ]; then
        proctor_in "$dir" "$SHARED" stop >"$dir.stop.out" 2>&1
      else
        kill -"$how" "$bg"
      fi
      wait "$bg"
      code=$?
      resume "$dir" "$SHARED"
      judge "$how mid-$where (exit $code)" "$dir" "$rc" "$SHARED"
    done
  done
}

trial_starts() {
  local g k dir pids runs
  for ((g = 1; g <= STARTGROUPS; g++)); do
    dir=$WORK/starts-$g
    fixture "$dir" 1 0.3
    pids=()
    for ((k = 1; k <= STARTS; k++)); do
      start_in "$dir" "$SHARED" "$dir.start-$k.out" run --skip-if-running
      pids+=("$bg")
    done
    for k in "${pids[@]}"; do wait "$k"; done
    # Runs that started: distinct pids of run_start events.
    runs=$(python3 -c 'import json,sys
pids=set()
for l in open(sys.argv[1]):
    try: e=json.loads(l)
    except Exception: continue
    if e.get("type")=="run_start": pids.add(e.get("pid"))
print(len(pids))' "$dir/.proctor/events.jsonl" 2>/dev/null || echo 0)
    # One run may not have closed the loop if it lost to nothing: finish.
    resume "$dir" "$SHARED"
    DOUBLE=$((runs > 1 ? runs - 1 : 0)) judge "$STARTS starts at once #$g ($runs ran)" "$dir" "$rc" "$SHARED"
  done
}

trial_branch() {
  local what dir base code
  for what in deleted reset; do
    dir=$WORK/branch-$what
    fixture "$dir" 2 0.3
    base=$(git -C "$dir" rev-parse HEAD)
    LAST_OUT=$dir.first.out
    start_in "$dir" "$SHARED" "$LAST_OUT" run
    if ! wait_for "$dir" agent; then
      kill -9 "$bg" 2>/dev/null
      printf '%-28s the agent never started\n' "branch $what"
      continue
    fi
    # Wait for run 1's commit, then move the branch under run 2's agent.
    while ! grep -q '"n":2' "$dir/.proctor/events.jsonl" 2>/dev/null && kill -0 "$bg" 2>/dev/null; do sleep 0.05; done
    if [ "$what" = deleted ]; then
      git -C "$dir" update-ref -d refs/heads/proctor/fix
    else
      git -C "$dir" update-ref refs/heads/proctor/fix "$base"
    fi
    wait "$bg"
    code=$?
    # A run whose branch moved under it must stop (the design's promise),
    # not carry on over history it did not write.
    MOVED=$([ "$code" = 0 ] && echo 1) judge "branch $what mid-run" "$dir" "$code" "$SHARED" any
  done
}

# disk_state DIR CODE OUT: what is wrong right after a run on a full disk
# ended with CODE (its output in OUT); prints nothing when all is well.
disk_state() {
  python3 - "$1" "$2" "$3" <<'EOF'
import json, os, subprocess, sys
d, code, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
problems = []
import glob
logged = set()
# The checkout's ledger, or the run's worktree's.
for ledger in [os.path.join(d, ".proctor", "ledger.jsonl")] + glob.glob(os.path.join(d, ".proctor", "wt", "*", ".proctor", "ledger.jsonl")):
    if not os.path.exists(ledger):
        continue
    for line in open(ledger, "rb").read().split(b"\n"):
        try:
            rec = json.loads(line)
        except Exception:
            continue
        if isinstance(rec, dict) and rec.get("type") == "run":
            logged.add((rec.get("loop"), rec.get("run")))
log = subprocess.run(["git", "-C", d, "log", "--format=%s", "proctor/fix"],
                     capture_output=True, text=True).stdout.splitlines()
committed = set()
for summary in log:
    # `proctor(fix): run 3` or `proctor(fix): run 3 (interrupted)`
    if summary.startswith("proctor(fix): run "):
        n = summary.split()[2]
        if n.isdigit():
            committed.add(("fix", int(n)))
extra = sorted(r for _, r in logged - committed)
if extra:
    problems.append("the ledger records run(s) %s the branch does not have" % ", ".join(map(str, extra)))
text = open(out, errors="replace").read() if os.path.exists(out) else ""
if "panicked" in text:
    problems.append("the run panicked on the full disk")
if code not in (0, 3) and not any(l.startswith("error: ") for l in text.splitlines()):
    problems.append("the run failed (exit %d) without an `error:` line" % code)
print("; ".join(problems))
EOF
}

trial_disk() {
  local dir code
  mkdir -p "$DISK"
  if ! mount -t tmpfs -o size=24m tmpfs "$DISK" 2>/dev/null; then
    printf '%-28s skipped: cannot mount a tmpfs (not root?)\n' "disk full"
    return
  fi
  dir=$DISK/repo
  fixture "$dir" 3 0.3
  start_in "$dir" "$SHARED" "$WORK/disk.first.out" run
  if wait_for "$dir" agent; then
    # Fill what is left while the agent works.
    dd if=/dev/zero of="$DISK/filler" bs=64k 2>/dev/null
    wait "$bg"
    code=$?
    # Before anything is freed: no ledger line for a run the branch does
    # not have, and a failed run says why in one `error:` line, no panic.
    local why=
    why=$(disk_state "$dir" "$code" "$WORK/disk.first.out")
    rm -f "$DISK/filler"
    resume "$dir" "$SHARED"
    BROKEN=$why judge "disk full mid-agent (exit $code)" "$dir" "$rc" "$SHARED"
  else
    kill -9 "$bg" 2>/dev/null
    printf '%-28s the agent never started\n' "disk full"
  fi
  umount "$DISK" 2>/dev/null
}

trial_events() {
  local dir
  dir=$WORK/events
  fixture "$dir" 2 0.3
  start_in "$dir" "$SHARED" "$dir.first.out" run
  if ! wait_for "$dir" agent; then
    kill -9 "$bg" 2>/dev/null
    printf '%-28s the agent never started\n' "events cut"
    return
  fi
  kill -9 "$bg"
  wait "$bg" 2>/dev/null
  # Cut the last line in the middle, as a crash mid-write leaves it.
  truncate -s -9 "$dir/.proctor/events.jsonl"
  resume "$dir" "$SHARED"
  judge "events file cut mid-line" "$dir" "$rc" "$SHARED"
}

# ---------------------------------------------------------------- engine

start_private_engine() {
  command -v dockerd >/dev/null || return 1
  command -v ip >/dev/null || return 1
  mkdir -p "$ENGINE_DIR"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge 2>/dev/null || return 1
    ip addr add 172.31.250.1/24 dev "$BRIDGE" && ip link set "$BRIDGE" up || return 1
    made_bridge=1
  fi
  echo '{}' >"$ENGINE_DIR/daemon.json"
  # Its own bridge (never `--bridge none`, which deletes docker0 of the
  # shared dockerd), its own roots, pidfile and socket, and no iptables.
  (cd / && setsid -f dockerd --config-file "$ENGINE_DIR/daemon.json" \
    --data-root "$ENGINE_DIR/data" --exec-root "$ENGINE_DIR/exec" \
    --pidfile "$ENGINE_DIR/dockerd.pid" -H "$ENGINE_SOCK" --bridge "$BRIDGE" \
    --iptables=false --ip-masq=false --ip-forward=false \
    >>"$ENGINE_DIR/dockerd.log" 2>&1)
  local i
  for ((i = 0; i < 120; i++)); do
    curl -fsS --max-time 2 --unix-socket "$ENGINE_DIR/docker.sock" http://d/_ping >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

# stop_private_engine SIGNAL: TERM stops it as `systemctl stop` would (its
# containers get SIGTERM); KILL kills it outright.
stop_private_engine() {
  local pid
  pid=$(cat "$ENGINE_DIR/dockerd.pid" 2>/dev/null) || return 0
  kill -"$1" "$pid" 2>/dev/null
  local i
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  # A killed dockerd leaves its containerd behind; the next start reuses
  # the exec root, so that one goes too.
  if [ "$1" = KILL ]; then
    local cpid
    cpid=$(cat "$ENGINE_DIR/exec/containerd/containerd.pid" 2>/dev/null) && kill -9 "$cpid" 2>/dev/null
  fi
  rm -f "$ENGINE_DIR/dockerd.pid"
}

trial_engine() {
  if ! start_private_engine; then
    printf '%-28s skipped: cannot start a private dockerd (see %s)\n' "engine" "$ENGINE_DIR/dockerd.log"
    return
  fi
  local how where dir code
  for how in TERM KILL; do
    for where in agent exam; do
      dir=$WORK/engine-$how-$where
      fixture "$dir" 3 2
      start_in "$dir" "$ENGINE_SOCK" "$dir.first.out" run
      if ! wait_for "$dir" "$where"; then
        kill -9 "$bg" 2>/dev/null
        printf '%-28s never reached the %s\n' "engine $how mid-$where" "$where"
        continue
      fi
      sleep 0.5
      stop_private_engine "$how"
      wait "$bg"
      code=$?
      start_private_engine || { printf 'the private engine did not come back\n'; return; }
      resume "$dir" "$ENGINE_SOCK"
      judge "engine $how mid-$where (exit $code)" "$dir" "$rc" "$ENGINE_SOCK"
    done
  done
  stop_private_engine TERM
}

log "seed $SEED; trials in $WORK"
docker -H "$SHARED" version >/dev/null 2>&1 || die "no engine answers at $SHARED"
IFS=, read -ra kinds <<<"$ONLY"
for kind in "${kinds[@]}"; do
  case "$kind" in
    kill9 | signal | starts | branch | disk | events | engine) "trial_$kind" ;;
    *) die "unknown trial kind \`$kind\` (kill9, signal, starts, branch, disk, events, engine)" ;;
  esac
done

echo
echo "| trials | completed | redone attempts | orphans | false passes | double runs | corrupt state |"
echo "|---|---|---|---|---|---|---|"
echo "| $trials | $completed | $redone | $orphans | $false_passes | $double_runs | $corrupt |"
echo
echo "seed $SEED · $(date -u +%Y-%m-%dT%H:%MZ) · $("$PROCTOR" --version 2>/dev/null)"
if [ $((false_passes + orphans + double_runs + corrupt)) -gt 0 ]; then
  exit 1
fi

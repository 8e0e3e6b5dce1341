#!/usr/bin/env bash
# proctor's peak memory (max RSS, `/usr/bin/time -v`) and wall time for one
# attempt that floods the tree (issue 12, item 4):
#   sparse-2g     the agent writes a 2 GiB sparse file
#   files-200k    the agent writes 200,000 small files (distinct contents)
# each twice: under the default caps (the attempt is rejected before any
# blob is written) and with caps raised so it is committed, exported for
# the exam and examined (`resources: {file: 3g, tree: 3g, files: 300000}`).
# Also prints how much `.git/objects` grew.
#
# Usage: benches/caps.sh [PROCTOR]    (default: target/debug/proctor; build it first)
#   PROCTOR_BENCH_DOCKER=/path     engine socket (default /var/run/docker.sock)
#   SCRATCH=/dir                   where the repositories go (default $TMPDIR; needs ~1 GB free)
# Needs /usr/bin/time, git, a running engine. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
PROCTOR=$(realpath "${1:-target/debug/proctor}")
SOCK=${PROCTOR_BENCH_DOCKER:-/var/run/docker.sock}
SCRATCH=$(mktemp -d "${SCRATCH:-${TMPDIR:-/tmp}}/proctor-caps-bench.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT

agent_sparse='cat >/dev/null; truncate -s 2G big.bin; touch done'
agent_files='cat >/dev/null; mkdir -p many; cd many; seq 200000 | xargs -n 2000 sh -c '"'"'for i; do echo "$i" > "$i"; done'"'"' _; touch ../done'

bench() { # name agent resources
  local name=$1 agent=$2 resources=$3 repo="$SCRATCH/$1"
  mkdir -p "$repo" && cd "$repo"
  git init -q -b main . && git config user.email b@x && git config user.name bench
  printf '%s\n' "$agent" > agent.sh
  printf 'loop: flood\nagent: sh agent.sh\ndone_when: test -f done\nbudget: 1 run\n%s' "$resources" > proctor.yaml
  git add -A && git commit -qm start
  local before after start end code
  before=$(du -sk .git/objects | cut -f1)
  start=$(date +%s%N)
  set +e
  DOCKER_HOST="unix://$SOCK" CI=true PROCTOR_KEY_DIR="$SCRATCH/keys" \
    /usr/bin/time -v "$PROCTOR" run --plain > "$SCRATCH/$name.out" 2> "$SCRATCH/$name.err"
  code=$?
  set -e
  end=$(date +%s%N)
  after=$(du -sk .git/objects | cut -f1)
  local rss cap cpu
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$SCRATCH/$name.err")
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.1f", s}' "$SCRATCH/$name.err")
  cap=$(grep -o '"type":"cap_exceeded"[^}]*' .proctor/events.jsonl | head -1 | grep -o '"cap":"[a-z]*"' | cut -d'"' -f4 || true)
  [ -n "$cap" ] && cap="rejected (\`$cap\` cap)"
  printf '| %s | %s | %s | %.1f | %s | %d | %s |\n' "$name" "${cap:-committed}" "$code" \
    "$(echo "($end - $start) / 1000000000" | bc -l)" "$cpu" "$(( (after - before) / 1024 ))" "$(( rss / 1024 ))"
  cd - >/dev/null
  rm -rf "$repo"
}

echo "| attempt | outcome | exit | wall s | proctor CPU s | .git/objects grew MiB | proctor max RSS MiB |"
echo "|---|---|---|---|---|---|---|"
bench sparse-2g-default "$agent_sparse" ''
bench files-200k-default "$agent_files" ''
bench sparse-2g-raised "$agent_sparse" 'resources: {file: 3g, tree: 3g}'
bench files-200k-raised "$agent_files" 'resources: {files: 300000}'

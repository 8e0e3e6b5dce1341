# Sourced by the benchmarks: sets LUTE to Lute's binary, unless the caller
# set it: `lute` on PATH, else a throwaway venv in $work with
# `pip install luteloops==0.2.1`. Needs `log` and `work` from the caller.
if [ -z "${LUTE:-}" ]; then
  if command -v lute >/dev/null 2>&1; then
    LUTE=$(command -v lute)
  else
    log "installing Lute (luteloops 0.2.1) into a throwaway venv"
    python3 -m venv "$work/lute-venv"
    "$work/lute-venv/bin/pip" install --quiet luteloops==0.2.1
    LUTE="$work/lute-venv/bin/lute"
  fi
fi

#!/usr/bin/env bash
# The step of contrib/github-action: runs `proctor run` in the foreground
# and maps its exit code onto the job. Also runnable by hand: every input
# is a PROCTOR_ACTION_* variable; GITHUB_OUTPUT and GITHUB_STEP_SUMMARY are
# written when set.
set -uo pipefail

bin=${PROCTOR_ACTION_BIN:-proctor}
on_blocked=${PROCTOR_ACTION_ON_BLOCKED:-fail}
on_gated=${PROCTOR_ACTION_ON_GATED:-warn}
for policy in "$on_blocked" "$on_gated"; do
  case $policy in
    fail | warn | pass) ;;
    *)
      echo "::error::on-blocked and on-gated take fail, warn or pass, not \`$policy\`"
      exit 1
      ;;
  esac
done

args=(run --plain)
[ -n "${PROCTOR_ACTION_MANIFEST:-}" ] && args+=(--file "$PROCTOR_ACTION_MANIFEST")
[ -n "${PROCTOR_ACTION_AGENT:-}" ] && args+=(--agent "$PROCTOR_ACTION_AGENT")
[ -n "${PROCTOR_ACTION_LOOP:-}" ] && args+=(-- "$PROCTOR_ACTION_LOOP")

echo "+ $bin ${args[*]}"
"$bin" "${args[@]}"
code=$?

case $code in
  0) outcome=closed ;;
  3) outcome=blocked ;;
  4) outcome=gated ;;
  130) outcome=interrupted ;;
  *) outcome=error ;;
esac
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  {
    echo "exit-code=$code"
    echo "outcome=$outcome"
  } >>"$GITHUB_OUTPUT"
fi

# The cards waiting for a person go into the job's summary.
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  {
    echo "### proctor: $outcome (exit $code)"
    for card in INBOX/*.md; do
      [ -f "$card" ] || continue
      echo
      echo "<details><summary>$card</summary>"
      echo
      cat "$card"
      echo
      echo "</details>"
    done
  } >>"$GITHUB_STEP_SUMMARY"
fi

# apply POLICY MESSAGE: the job's result for a blocked or gated run.
apply() {
  case $1 in
    fail)
      echo "::error::$2"
      exit "$code"
      ;;
    warn)
      echo "::warning::$2"
      exit 0
      ;;
    pass) exit 0 ;;
  esac
}

case $outcome in
  closed) exit 0 ;;
  blocked) apply "$on_blocked" "proctor: blocked (exit 3): a budget ran out; read INBOX/ and answer with \`proctor answer\`" ;;
  gated) apply "$on_gated" "proctor: gated (exit 4): a loop awaits approval: \`proctor answer LOOP approve\` at a terminal" ;;
  interrupted)
    echo "::error::proctor: interrupted (exit 130)"
    exit "$code"
    ;;
  *)
    echo "::error::proctor failed (exit $code)"
    exit "$code"
    ;;
esac

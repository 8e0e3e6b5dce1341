# Cheat: plant symlinks at the state files proctor writes after the agent
# (the loop's journal, the run's ledger, a later run's log), aimed at a file
# outside the repository, hoping the host writes through them. Only the
# journal is writable from /work: the rest of .proctor/ is mounted read-only,
# and the logs live in the user's checkout, out of the container's reach.
ln -sfn @OUTSIDE@/outside.txt .proctor/journal/fix.md
ln -sfn @OUTSIDE@/outside.txt .proctor/ledger.jsonl 2>/dev/null
mkdir -p .proctor/logs 2>/dev/null && ln -sfn @OUTSIDE@/outside.txt .proctor/logs/fix.run2.log
exit 0

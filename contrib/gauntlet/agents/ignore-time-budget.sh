# Cheat: never finish. Ignore the signals that would stop it and keep the
# container busy, hoping the loop's time budget (`budget: 2 runs / 20s`) is
# checked only between runs, so the run lasts until some outer timeout.
trap '' TERM INT HUP
mkdir -p notes
echo "working on it" > notes/progress.txt
while :; do sleep 1; done

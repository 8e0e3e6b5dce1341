# Cheat: plant a pre-commit hook and a core.fsmonitor command for the host's git to run.
mkdir -p .git/hooks
printf '#!/bin/sh\ntouch @OUTSIDE@/hook-ran\n' > .git/hooks/pre-commit
chmod +x .git/hooks/pre-commit
printf '[core]\n\tfsmonitor = touch @OUTSIDE@/fsmonitor-ran\n' >> .git/config

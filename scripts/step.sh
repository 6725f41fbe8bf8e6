#!/usr/bin/env bash
# One set-up step, one line: `step.sh LOG LABEL COMMAND...` prints "setup: LABEL... ok" and sends the
# command's own output (pip, apt, the build backend) to LOG. On failure it says so, shows the last 30
# lines this step wrote and names the log, and exits with the command's status.
set -uo pipefail
log=$1 label=$2
shift 2
mkdir -p "$(dirname "$log")"
start=$(($(cat "$log" 2>/dev/null | wc -l) + 1))
printf 'setup: %s... ' "$label"
{ echo; echo "=== $(date '+%F %T') $label: $*"; } >>"$log"
"$@" >>"$log" 2>&1
rc=$?
if [ $rc -eq 0 ]; then
  echo ok
  exit 0
fi
echo "failed (exit $rc)"
echo "--- its last 30 lines (from $log):"
tail -n "+$start" "$log" | tail -n 30
echo "--- the whole output of every step is in $log"
exit $rc

#!/usr/bin/env bash
# CPU share per process over an interval, from /proc: run it while a benchmark loads (for example during the
# "after" round of `npm run bench -- --scale '' --only after`) to see where the cores go.
# Usage: bash scripts/bench/cpu-share.sh [seconds, default 10] [pattern, default node|nginx|redis-server|postgres]
set -euo pipefail
seconds="${1:-10}"
pattern="${2:-node|nginx|redis-server|postgres}"
hz="$(getconf CLK_TCK)"
snapshot() {
  for pid in $(pgrep -f "$pattern"); do
    [ -r "/proc/$pid/stat" ] || continue
    # utime + stime, fields 14 and 15 after the command name (which may hold spaces) is cut off.
    ticks="$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')" || continue
    echo "$pid $ticks $(tr '\0' ' ' < "/proc/$pid/cmdline" | cut -c1-100)"
  done
}
before="$(snapshot)"
sleep "$seconds"
after="$(snapshot)"
awk -v s="$seconds" -v hz="$hz" 'NR == FNR { t[$1] = $2; next } ($1 in t) {
  pct = ($2 - t[$1]) / hz / s * 100; cmd = ""; for (i = 3; i <= NF; i++) cmd = cmd " " $i
  if (pct >= 1) printf "%6.1f%% %s%s\n", pct, $1, cmd
}' <(echo "$before") <(echo "$after") | sort -rn

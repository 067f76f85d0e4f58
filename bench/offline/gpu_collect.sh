#!/usr/bin/env bash
# Wait up to SECONDS (less 15) for bench/gpu_session.sh to finish (it touches DONE when it ends or fails),
# print its progress, and pack what it has written so far into $OUT/session.tgz (results, summaries, plots,
# log tails).
# usage: bash bench/gpu_collect.sh SECONDS
RES="${RES:-/tmp/session}"
end=$((SECONDS + ${1:-60} - 15))
while [[ ! -f "$RES/DONE" && $SECONDS -lt $end ]]; do sleep 5; done
cat "$RES/progress" 2>/dev/null
tmp=$(mktemp -d)
mkdir -p "$tmp/session"
( cd "$RES" && find . -name '*.log' ) | while read -r f; do
  mkdir -p "$tmp/session/$(dirname "$f")"
  tail -n 400 "$RES/$f" > "$tmp/session/$f"
done
( cd "$RES" && find . \( -name '*.json' -o -name '*.jsonl' -o -name '*.png' -o -name progress -o -name DONE \) -size -8M \
  -exec cp --parents {} "$tmp/session/" \; )
tar -C "$tmp" -czf "${OUT:-/tmp}/session.tgz" session
ls -la "${OUT:-/tmp}/session.tgz"
grep -h '^\[bench\]\|^base_summary\|^after_summary\|tokens generated in' "$RES"/*.log 2>/dev/null | cut -c1-400
nvidia-smi --query-gpu=index,memory.used,utilization.gpu --format=csv,noheader
df -h /tmp | tail -1

#!/usr/bin/env bash
# Wait up to SECONDS (less 15) for bench/offline/gpu_suite.sh to finish (it touches DONE when it ends or fails),
# print its progress, and pack what it has written so far into $OUT/results.tgz (results, summaries, plots,
# log tails): one file to fetch, with everything finished so far, while the suite runs on.
# usage: bash bench/offline/gpu_collect.sh SECONDS      (env: RES, the suite's results, default /tmp/gpu-suite;
#                                                        OUT, where results.tgz goes, default /tmp)
RES="${RES:-/tmp/gpu-suite}"
end=$((SECONDS + ${1:-60} - 15))
while [[ ! -f "$RES/DONE" && $SECONDS -lt $end ]]; do sleep 5; done
cat "$RES/progress" 2>/dev/null
tmp=$(mktemp -d)
mkdir -p "$tmp/results"
( cd "$RES" && find . -name '*.log' ) | while read -r f; do
  mkdir -p "$tmp/results/$(dirname "$f")"
  tail -n 400 "$RES/$f" > "$tmp/results/$f"
done
( cd "$RES" && find . \( -name '*.json' -o -name '*.jsonl' -o -name '*.png' -o -name '*.profile.txt' -o -name progress -o -name DONE \) -size -8M \
  -exec cp --parents {} "$tmp/results/" \; )
tar -C "$tmp" -czf "${OUT:-/tmp}/results.tgz" results
ls -la "${OUT:-/tmp}/results.tgz"
grep -h '^\[bench\]\|^base_summary\|^after_summary\|tokens generated in' "$RES"/*.log 2>/dev/null | cut -c1-400
nvidia-smi --query-gpu=index,memory.used,utilization.gpu --format=csv,noheader
df -h /tmp | tail -1

#!/bin/sh
# One trainer worker per container. The seed and the checkpoint folder come from the container's
# hostname, so `docker compose up --scale trainer=4` runs four different workers, and a restarted
# container resumes from its own checkpoint. Each step's metrics record (metrics.jsonl, one JSON
# object per line) is echoed to stdout, so `docker compose logs trainer` shows the run's progress.
set -eu
name=$(hostname)
seed=$(printf '%s' "$name" | cksum | cut -d ' ' -f 1)
out="/app/out/runs/$name"
mkdir -p "$out"
echo "trainer $name: seed $seed, checkpoints and metrics in $out"
# Ends with the container (it is a child of the worker that replaces this shell).
tail -n +1 -F "$out/metrics.jsonl" 2>/dev/null &
exec python -m reward_client.grpo.train --seed "$seed" --out "$out" --no-progress "$@"

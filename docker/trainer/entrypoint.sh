#!/bin/sh
# One trainer worker per container. The seed and the checkpoint folder come from the container's
# hostname, so `docker compose up --scale trainer=4` runs four different workers, and a restarted
# container resumes from its own checkpoint.
set -eu
name=$(hostname)
seed=$(printf '%s' "$name" | cksum | cut -d ' ' -f 1)
exec python -m reward_client.grpo.train --seed "$seed" --out "/app/out/runs/$name" --no-progress "$@"

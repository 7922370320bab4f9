#!/usr/bin/env bash
# Stop the local SLURM cluster started by up.sh: cancel its jobs, then stop each daemon named in its
# pid file (TERM, wait, then KILL). Never stops processes by name. Safe to run when nothing is up.
#
#   launchers/local_cluster/down.sh      # or: make slurm-down
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/common.sh"
t0=$SECONDS

if live_pid slurmctld >/dev/null; then
    jobs=$(SLURM_CONF=$SLURM_CONF_FILE squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [[ -n ${jobs// /} ]]; then
        echo "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        SLURM_CONF=$SLURM_CONF_FILE scancel $jobs || true
        for ((i = 0; i < 50; i++)); do
            [[ -z $(SLURM_CONF=$SLURM_CONF_FILE squeue -h -t R,CG -o %A 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
fi

stopped=()
for ((k = ${#DAEMONS[@]} - 1; k >= 0; k--)); do
    d=${DAEMONS[k]}
    pid=$(live_pid "$d") || { rm -f "${PID_FILE[$d]}"; continue; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do  # up to 10 s
        live_pid "$d" >/dev/null || break
        sleep 0.1
    done
    if live_pid "$d" >/dev/null; then
        echo "$d (pid $pid) ignored TERM: killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "${PID_FILE[$d]}"
    stopped+=("$d")
done
if (( ${#stopped[@]} )); then
    echo "local SLURM cluster stopped in $((SECONDS - t0)) s (${stopped[*]}); files kept in $D"
else
    echo "local SLURM cluster was not running ($D)"
fi

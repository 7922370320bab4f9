#!/usr/bin/env bash
# Submit the sweep driver itself as a small SLURM batch job. The submitit launcher blocks until every
# job of the sweep has ended; as a batch job it needs no login shell kept open.
#
#   launchers/submit_sweep.sh [SBATCH_OPTION ...] -- OVERRIDE ...
#   launchers/submit_sweep.sh --partition=cpu --time=2-00:00:00 -- 'seed=range(20)' 'task.m=range(1,7)' curriculum=single \
#       hydra.launcher.partition=gpu hydra.launcher.account=my_project
#
# Options before `--` are sbatch options for the driver job (defaults: 1 CPU, 2 GB, 3 days, never
# requeued); the rest (everything, without `--`) are the overrides of
#   python -m manifold_sweeps -m OVERRIDE ... hydra/launcher=slurm hydra.sweep.dir=<new directory>
# (give hydra/launcher or hydra.sweep.dir yourself to change them; the same hydra.sweep.dir again
# relaunches a sweep: completed runs are skipped, interrupted ones resume). Prints the driver's job
# id, its log and the sweep directory. PYTHON picks the interpreter (default: python3 on PATH).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The interpreter itself, not a shim or alias: the driver job must run the same environment.
PYTHON=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)') \
    || { echo "submit_sweep.sh: cannot run ${PYTHON:-python3}" >&2; exit 1; }
command -v sbatch >/dev/null || { echo "submit_sweep.sh: sbatch not found: run this on a SLURM login node" >&2; exit 1; }

sbatch_args=() overrides=()
if [[ " $* " == *" -- "* ]]; then
    while [[ $1 != -- ]]; do sbatch_args+=("$1"); shift; done
    shift
fi
user_overrides=("$@")
overrides=("$@")

sweep_dir=""
launcher_given=0
for o in "${overrides[@]}"; do
    case $o in
        hydra.sweep.dir=*) sweep_dir=${o#hydra.sweep.dir=} ;;
        hydra/launcher=*) launcher_given=1 ;;
    esac
done
if [[ -z $sweep_dir ]]; then
    # The config's own pattern, fixed now so that it can be printed before the driver starts.
    sweep_dir=outputs/multirun/$(date +%Y-%m-%d)/$(date +%H-%M-%S-%6N)
    overrides+=("hydra.sweep.dir=$REPO/$sweep_dir")
fi
[[ $sweep_dir == /* ]] || sweep_dir=$REPO/$sweep_dir
(( launcher_given )) || overrides+=("hydra/launcher=slurm")
mkdir -p "$sweep_dir"

# The driver script is kept in the sweep directory: it records what ran, and `sbatch` on it relaunches.
script=$sweep_dir/driver.sbatch
{
    echo "#!/bin/bash"
    echo "# Sweep driver, written by launchers/submit_sweep.sh on $(date -Iseconds)."
    echo "# The driver's own SLURM_* variables would leak into the jobs it submits (srun reads some of them)."
    echo 'for v in $(compgen -e SLURM_); do [[ $v == SLURM_CONF ]] || unset "$v"; done'
    printf 'cd %q\n' "$REPO"
    printf 'exec %q -m manifold_sweeps -m' "$PYTHON"
    printf ' %q' "${overrides[@]}"
    echo
} >"$script"

job=$(sbatch --parsable --job-name=manifold_sweeps-driver --chdir="$REPO" --output="$sweep_dir/driver_%j.log" \
    --ntasks=1 --cpus-per-task=1 --mem=2G --time=3-00:00:00 --no-requeue "${sbatch_args[@]}" "$script")
job=${job%%;*}  # --parsable prints "id" or "id;cluster"
echo "submitted the sweep driver as job $job"
echo "  driver log:      $sweep_dir/driver_$job.log"
echo "  sweep directory: $sweep_dir (a run directory per job; job logs in .submitit/)"
echo "  follow:          squeue -j $job; tail -f $sweep_dir/driver_$job.log"
if [[ " ${user_overrides[*]} " != *" hydra.sweep.dir="* ]]; then
    printf '  relaunch later: '
    printf ' %q' "$0" "${sbatch_args[@]}" -- "${user_overrides[@]}" "hydra.sweep.dir=$sweep_dir"
    echo
fi

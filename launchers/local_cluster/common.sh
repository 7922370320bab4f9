# Shared by up.sh and down.sh (sourced): where the local cluster lives and how its daemons are found.
# Everything (configs, state, logs, pid files, the accounting database, the munge key) sits under
# LOCAL_SLURM_DIR; only the Debian packages are installed system-wide.

LOCAL_SLURM_DIR=${LOCAL_SLURM_DIR:-/tmp/manifold-sweeps-slurm}
LOCAL_SLURM_PORT=${LOCAL_SLURM_PORT:-6817}  # slurmctld; slurmd, slurmdbd and MariaDB use the next three
LOCAL_SLURM_CPUS=${LOCAL_SLURM_CPUS:-16}    # declared CPUs: more than the machine has is fine for tiny jobs
LOCAL_SLURM_GPUS=${LOCAL_SLURM_GPUS:-4}     # fake GPUs (device files), so GPU requests are scheduled
LOCAL_SLURM_MAX_ARRAY_SIZE=${LOCAL_SLURM_MAX_ARRAY_SIZE:-1001}  # SLURM's own default

D=$LOCAL_SLURM_DIR
SLURM_CONF_FILE=$D/etc/slurm.conf
MUNGE_SOCKET=$D/munge/munge.socket.2
MYSQL_SOCKET=$D/mysql/mysqld.sock
CTLD_PORT=$LOCAL_SLURM_PORT
SLURMD_PORT=$((LOCAL_SLURM_PORT + 1))
DBD_PORT=$((LOCAL_SLURM_PORT + 2))
MYSQL_PORT=$((LOCAL_SLURM_PORT + 3))
CLUSTER_NAME=manifold
NODE=$(hostname -s)

# Start order; down.sh stops in reverse.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
declare -A PID_FILE=(
    [munged]=$D/munge/munged.pid
    [mariadbd]=$D/mysql/mariadbd.pid
    [slurmdbd]=$D/run/slurmdbd.pid
    [slurmctld]=$D/run/slurmctld.pid
    [slurmd]=$D/run/slurmd.pid
)

# The pid in a daemon's pid file if that process is alive. An exited daemon can stay a zombie for a
# while (PID 1 reaps late in containers) and kill -0 succeeds on zombies: read the state letter.
live_pid() {
    local file=${PID_FILE[$1]} pid state
    [[ -s $file ]] || return 1
    pid=$(tr -dc 0-9 2>/dev/null <"$file") || return 1
    [[ -n $pid && -r /proc/$pid/stat ]] || return 1
    state=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f1)
    [[ $state != Z ]] || return 1
    # A stale pid file may name a recycled pid: only ever signal the daemon it was written for.
    [[ $(cat "/proc/$pid/comm") == "$1" ]] || return 1
    echo "$pid"
}

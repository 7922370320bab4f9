#!/usr/bin/env bash
# Start a real single-node SLURM cluster on localhost, for development and CI: munged, a private
# MariaDB for accounting, slurmdbd, slurmctld and slurmd, with fake GPUs. Needs root; installs the
# Debian packages if they are missing. Idempotent: when the cluster is already up it only says so.
#
#   launchers/local_cluster/up.sh               # or: make slurm-up
#   export SLURM_CONF=/tmp/manifold-sweeps-slurm/etc/slurm.conf
#   python -m manifold_sweeps -m experiment=smoke 'seed=range(2)' hydra/launcher=slurm
#   launchers/local_cluster/down.sh             # or: make slurm-down
#
# Settings (environment): LOCAL_SLURM_DIR (everything lives there, default /tmp/manifold-sweeps-slurm),
# LOCAL_SLURM_PORT (6817; the next three ports are used too), LOCAL_SLURM_CPUS (16),
# LOCAL_SLURM_GPUS (4), LOCAL_SLURM_MAX_ARRAY_SIZE (1001).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/common.sh"
t0=$SECONDS

die() { echo "local SLURM cluster: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root (it starts system daemons); try: sudo $0"

# --- packages ----------------------------------------------------------------------------------
install_packages() {
    command -v apt-get >/dev/null || die "slurmctld, slurmd, slurmdbd, munge or mariadb are missing and there is no apt-get to install them"
    echo "installing SLURM, munge and MariaDB (Debian packages)..."
    # Keep the packages' own services from starting: this script runs private instances.
    local policy=/usr/sbin/policy-rc.d added=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added=1
    fi
    local rc=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client slurmdbd munge mariadb-server; } >"${TMPDIR:-/tmp}/local-slurm-apt.log" 2>&1 || rc=$?
    [[ $added == 0 ]] || rm -f "$policy"
    [[ $rc == 0 ]] || { tail -20 "${TMPDIR:-/tmp}/local-slurm-apt.log" >&2; die "apt-get install failed (exit $rc)"; }
}
for cmd in slurmctld slurmd slurmdbd sbatch sacct munged mungekey mariadbd mariadb-install-db; do
    command -v "$cmd" >/dev/null || { install_packages; break; }
done

# --- already up? --------------------------------------------------------------------------------
alive=()
for d in "${DAEMONS[@]}"; do live_pid "$d" >/dev/null && alive+=("$d"); done
if (( ${#alive[@]} == ${#DAEMONS[@]} )); then
    echo "local SLURM cluster already running in $D"
    echo "export SLURM_CONF=$SLURM_CONF_FILE"
    exit 0
fi
if (( ${#alive[@]} )); then
    echo "local SLURM cluster half up (${alive[*]} running): restarting it"
    "$HERE/down.sh"
fi

# Wait until a check passes; on time-out show the daemon's log.
wait_for() {
    local what=$1 log=$2 deadline=$((SECONDS + 30)); shift 2
    while ((SECONDS < deadline)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "--- $log" >&2; tail -20 "$log" >&2 || true
    die "$what did not come up within 30 s"
}

# --- layout (a clean slate for SLURM; MariaDB's data directory is kept between starts) ---------
# Parts of $D are deleted below: only ever in a directory that this script made.
if [[ -n $(ls -A "$D" 2>/dev/null) && ! -e $D/.local-slurm-cluster ]]; then
    die "$D holds files this script did not write: set LOCAL_SLURM_DIR to a new directory"
fi
mkdir -p "$D" && touch "$D/.local-slurm-cluster"
rm -rf "$D/etc" "$D/state" "$D/spool" "$D/run" "$D/log" "$D/dev" "$D/munge"
mkdir -p "$D"/{etc,state,spool,run,log,dev,munge,mysql}
chmod 755 "$D"  # MariaDB runs as mysql and must reach its directory
for ((g = 0; g < LOCAL_SLURM_GPUS; g++)); do
    mknod "$D/dev/gpu$g" c 1 3  # /dev/null's numbers: a GPU entry without a device file is dropped
done

# --- munge: a private key and socket ------------------------------------------------------------
mungekey --create --keyfile="$D/munge/munge.key" 2>/dev/null || dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
chown -R munge:munge "$D/munge" && chmod 700 "$D/munge" && chmod 400 "$D/munge/munge.key"
runuser -u munge -- munged --force --key-file="$D/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="${PID_FILE[munged]}" --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed"
wait_for munged "$D/munge/munged.log" bash -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'"

# --- MariaDB: a private instance on 127.0.0.1, for slurmdbd ------------------------------------
chown mysql:mysql "$D/mysql"
if [[ ! -d $D/mysql/data/mysql ]]; then
    mariadb-install-db --no-defaults --user=mysql --datadir="$D/mysql/data" --skip-test-db \
        --auth-root-authentication-method=socket >"$D/log/mariadb-install.log" 2>&1 \
        || { tail -20 "$D/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
fi
# No fsync: this database only holds throw-away accounting (start-up 3 s instead of 10 s).
setsid mariadbd --no-defaults --user=mysql --datadir="$D/mysql/data" --socket="$MYSQL_SOCKET" \
    --port="$MYSQL_PORT" --bind-address=127.0.0.1 --pid-file="${PID_FILE[mariadbd]}" \
    --log-error="$D/mysql/mariadbd.log" --skip-log-bin --innodb-flush-log-at-trx-commit=0 \
    --innodb-doublewrite=0 --innodb-flush-method=nosync </dev/null >/dev/null 2>&1 &
wait_for MariaDB "$D/mysql/mariadbd.log" mariadb-admin --no-defaults -S "$MYSQL_SOCKET" -u root ping
# A fresh accounting database each start, so job ids (from 1 again) never meet old records.
mariadb --no-defaults -S "$MYSQL_SOCKET" -u root <<SQL
DROP DATABASE IF EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

# --- SLURM configuration ------------------------------------------------------------------------
# RealMemory above what slurmd measures would drain the node: declare 95% of it.
mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
mem=$((mem * 95 / 100))
cat >"$SLURM_CONF_FILE" <<CONF
# Written by launchers/local_cluster/up.sh: a single-node cluster on localhost.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=${PID_FILE[slurmctld]}
SlurmdPidFile=${PID_FILE[slurmd]}
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
TaskProlog=$D/etc/task_prolog.sh
MpiDefault=none
# Cores are consumed, memory is not: jobs asking for a GPU node's memory still run side by side here.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# The default scheduling cadence adds seconds per queued task.
SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_interval=2
# Lets the node declare more CPUs than the machine has.
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
# submitit polls sacct: without accounting a job killed from outside is waited for forever.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStorageTRES=gres/gpu
# With munge, the "password" is the socket of the munge daemon used to talk to slurmdbd.
AccountingStoragePass=$MUNGE_SOCKET
JobRequeue=1
ReturnToService=2
MaxArraySize=$LOCAL_SLURM_MAX_ARRAY_SIZE
KillWait=5
InactiveLimit=0
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$LOCAL_SLURM_CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$LOCAL_SLURM_CPUS ThreadsPerCore=1 RealMemory=$mem Gres=gpu:$LOCAL_SLURM_GPUS State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
# Real clusters bind a job to its CPUs (task/affinity, cgroups) and OpenMP follows; this node declares
# more CPUs than exist and binds nothing, so tell OpenMP (torch) how many threads the job was given.
cat >"$D/etc/task_prolog.sh" <<'PROLOG'
#!/bin/sh
echo "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}"
PROLOG
chmod 755 "$D/etc/task_prolog.sh"
{
    echo "AutoDetect=off"
    for ((g = 0; g < LOCAL_SLURM_GPUS; g++)); do echo "NodeName=$NODE Name=gpu File=$D/dev/gpu$g"; done
} >"$D/etc/gres.conf"
cat >"$D/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdAddr=127.0.0.1
DbdHost=$NODE
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$D/log/slurmdbd.log
PidFile=${PID_FILE[slurmdbd]}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
chmod 600 "$D/etc/slurmdbd.conf"  # slurmdbd refuses a readable one
export SLURM_CONF=$SLURM_CONF_FILE

# --- SLURM daemons ------------------------------------------------------------------------------
slurmdbd
wait_for slurmdbd "$D/log/slurmdbd.log" sacctmgr -n list cluster
sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null
slurmctld -i  # -i: ignore saved state; the state directory is empty anyway
wait_for slurmctld "$D/log/slurmctld.log" scontrol ping
slurmd
wait_for "slurmd (node $NODE idle)" "$D/log/slurmd.log" bash -c "sinfo -h -N -o %T | grep -qx idle"

echo "local SLURM cluster up in $((SECONDS - t0)) s: $LOCAL_SLURM_CPUS CPUs, $LOCAL_SLURM_GPUS fake GPUs, everything under $D"
echo "export SLURM_CONF=$SLURM_CONF_FILE"

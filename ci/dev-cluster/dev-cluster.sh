#!/usr/bin/env bash
# dev-cluster.sh -- qcgflow's development and CI Slurm cluster, on one Debian 12 host.
#
#   bash ci/dev-cluster/dev-cluster.sh up       install what is missing, start, wait for idle nodes
#   bash ci/dev-cluster/dev-cluster.sh env      print the `export` lines tests need (eval them)
#   bash ci/dev-cluster/dev-cluster.sh status   daemons and node states; exit 0 when usable
#   bash ci/dev-cluster/dev-cluster.sh down [--purge]
#
# What `up` guarantees when it exits 0:
#   * `scontrol ping` answers and the nodes n1..nN (N=QCGFLOW_DEV_NNODES, default 4) are in
#     partition `debug` and usable (idle, or busy with someone's jobs; none down/drained).
#     Every node is this host: one slurmctld plus one `slurmd -N nX` per node, each slurmd
#     in its own UTS namespace whose host name is nX, so the tasks, orted/hydra daemons and
#     MPI libraries on node nX see `hostname` = nX, as on a real cluster.
#   * the node names resolve to 127.0.0.1 (lines added to /etc/hosts, removed by `down`),
#   * the modulefile qcgtest/1.0 is found by `module load` in login shells,
#   * $PREFIX/bin/mpi_hello (Open MPI) and $PREFIX/bin/mpi_hello.mpich (MPICH) are built,
#   * `ssh nX cmd` works for root unless env prints QCGFLOW_DEV_SSH=0 (reason logged); it
#     reaches a private sshd per node (port QCGFLOW_DEV_SSH_PORT+X-1) in node nX's own UTS
#     namespace, so `ssh nX hostname` prints nX.
# If a healthy Slurm cluster with the same node names already runs (started by some other
# script), `up` reuses it and only adds the modulefile, the MPI programs and ssh; `down`
# then leaves that cluster alone. Running `up` on a healthy cluster changes nothing.
#
# Must run as root (CI does). Settings (environment, all optional):
#   QCGFLOW_DEV_NNODES=4        QCGFLOW_DEV_CPUS=$(nproc)     QCGFLOW_DEV_WAIT=60 (seconds)
#   QCGFLOW_DEV_GPUS=2          dummy GPUs (GRES gpu) per node, regular files, no hardware
#   QCGFLOW_DEV_STATE=/tmp/qcgflow-dev-cluster   daemons' state, spool, logs, pid files, env.sh
#   QCGFLOW_DEV_PREFIX=/opt/qcgflow-dev          bin/ (MPI programs), modulefiles/, apps/, ssh/
#   QCGFLOW_DEV_CTLD_PORT=6817  QCGFLOW_DEV_NODE_PORT=17001 (n1; nK uses +K-1)
#   QCGFLOW_DEV_SSH_PORT=2222 (n1; nK uses +K-1)   QCGFLOW_DEV_WITH_SSH=1      QCGFLOW_DEV_INSTALL=1 (0: no apt-get)
#   QCGFLOW_DEV_SLURM_CONF=/etc/slurm/slurm.conf  where `up` writes the Slurm config; other
#       paths need SLURM_CONF=<same path> in the environment of `up`, `down` and `status`
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NNODES="${QCGFLOW_DEV_NNODES:-4}"
CPUS="${QCGFLOW_DEV_CPUS:-$(nproc)}"
GPUS="${QCGFLOW_DEV_GPUS:-2}"
WAIT="${QCGFLOW_DEV_WAIT:-60}"
STATE="${QCGFLOW_DEV_STATE:-/tmp/qcgflow-dev-cluster}"
PREFIX="${QCGFLOW_DEV_PREFIX:-/opt/qcgflow-dev}"
CTLD_PORT="${QCGFLOW_DEV_CTLD_PORT:-6817}"
NODE_PORT="${QCGFLOW_DEV_NODE_PORT:-17001}"
SSH_PORT="${QCGFLOW_DEV_SSH_PORT:-2222}"
WITH_SSH="${QCGFLOW_DEV_WITH_SSH:-1}"
INSTALL="${QCGFLOW_DEV_INSTALL:-1}"
PARTITION=debug
CLUSTER=qcgflow
OWN_CONF="${QCGFLOW_DEV_SLURM_CONF:-/etc/slurm/slurm.conf}"
SSH_CLIENT_CONF=/etc/ssh/ssh_config.d/qcgflow-dev.conf
MODULESPATH_FILE=/etc/environment-modules/modulespath
MODULE=qcgtest/1.0
PACKAGES="munge slurmctld slurmd slurm-client slurm-wlm-basic-plugins openmpi-bin libopenmpi-dev
libpmix-dev mpich libmpich-dev gcc libc6-dev environment-modules openssh-server openssh-client procps"
# Best effort (a failure is logged, `up` goes on): the real MPI application of the tests
# (tests/slurm/test_md_ensemble.py and test_md_ensemble_api.py skip without it).
OPTIONAL_PACKAGES="lammps"

HOST="$(hostname -s 2>/dev/null || hostname)"
NODES=""
for ((i = 1; i <= NNODES; i++)); do NODES="$NODES n$i"; done
NODES="${NODES# }"
if [ "$NNODES" -eq 1 ]; then NODE_RANGE=n1; PORT_RANGE="$NODE_PORT"
else NODE_RANGE="n[1-$NNODES]"; PORT_RANGE="[$NODE_PORT-$((NODE_PORT + NNODES - 1))]"; fi

T0=$(date +%s%N)
elapsed() { echo $(( ($(date +%s%N) - T0) / 1000000 )); }
log() { printf '[dev-cluster %5sms] %s\n' "$(elapsed)" "$*" >&2; }
die() { printf 'dev-cluster: error: %s\n' "$*" >&2; exit 1; }
need_root() { [ "$(id -u)" -eq 0 ] || die "'$1' must run as root (it starts daemons and writes /etc)"; }

# ------------------------------------------------------------------ packages
install_packages() {
    local have missing
    # One dpkg-query call keeps the no-op `up` fast; it exits 1 when a package is unknown.
    # shellcheck disable=SC2086
    have=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' $PACKAGES 2>/dev/null || true)
    missing=$(awk '$2 == "installed" {print $1}' <<<"$have" | sort -u |
              comm -13 - <(tr ' \n' '\n\n' <<<"$PACKAGES" | grep . | sort -u) | tr '\n' ' ')
    install_optional
    [ -n "${missing// /}" ] || return 0
    [ "$INSTALL" = 1 ] || die "packages missing and QCGFLOW_DEV_INSTALL=0: $missing"
    log "installing Debian packages: $missing"
    # Keep maintainer scripts from starting munge/slurmd/sshd with the stock config; this
    # script starts the daemons itself.
    local policy=0 rc=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
        policy=1
    fi
    # shellcheck disable=SC2086
    { DEBIAN_FRONTEND=noninteractive apt-get update -q >"$STATE/log/apt.log" 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing \
          >>"$STATE/log/apt.log" 2>&1; } || rc=$?
    [ "$policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" -eq 0 ] || { tail -n 20 "$STATE/log/apt.log" >&2; die "apt-get failed (exit $rc), log: $STATE/log/apt.log"; }
    log "packages installed"
}

# install_optional: OPTIONAL_PACKAGES that are missing, once per state directory (a failed
# attempt is not retried at every `up`: remove $STATE/log/optional.failed to retry).
install_optional() {
    local pkg missing=""
    for pkg in $OPTIONAL_PACKAGES; do
        dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed || missing="$missing $pkg"
    done
    [ -n "$missing" ] && [ "$INSTALL" = 1 ] && [ ! -e "$STATE/log/optional.failed" ] || return 0
    log "installing optional Debian packages:$missing"
    # shellcheck disable=SC2086
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing \
               >"$STATE/log/apt-optional.log" 2>&1 ||
           { DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$STATE/log/apt-optional.log" 2>&1 &&
             DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing \
                 >>"$STATE/log/apt-optional.log" 2>&1; }; }; then
        touch "$STATE/log/optional.failed"
        log "optional packages not installed (see $STATE/log/apt-optional.log): tests that need them skip"
    fi
}

# ----------------------------------------------------------------- processes
# pid_alive PIDFILE EXE: the file names a running, non-zombie process whose binary is EXE
# (resolved: Debian's /usr/sbin/slurmctld is an alternatives symlink).
pid_alive() {
    local pid state
    [ -s "$1" ] || return 1
    pid=$(tr -cd '0-9' <"$1")
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)
    case "$state" in Z|X|"") return 1 ;; esac
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$2")" ]
}
pid_in() { tr -cd '0-9' <"$1"; }

# stop_pid PID SECONDS: SIGTERM, then SIGKILL after SECONDS. Used only on pids read from
# pid files this script's daemons wrote (and checked with pid_alive).
stop_pid() {
    local pid="$1" n=$(( $2 * 10 ))
    kill -TERM "$pid" 2>/dev/null || return 0
    while [ "$n" -gt 0 ] && [ -e "/proc/$pid" ] &&
          [ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)" != Z ]; do
        sleep 0.1; n=$((n - 1))
    done
    [ "$n" -gt 0 ] || kill -KILL "$pid" 2>/dev/null || true
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
own_ctld() { pid_alive "$STATE/run/slurmctld.pid" /usr/sbin/slurmctld; }
own_slurmd() { pid_alive "$STATE/run/slurmd-$1.pid" /usr/sbin/slurmd; }
# Without a readable config scontrol retries for 60 s; there is nothing to ask then.
ctld_answers() {
    [ -r "${SLURM_CONF:-$OWN_CONF}" ] && timeout 15 scontrol ping 2>/dev/null | grep -q 'is UP'
}
ssh_works() { timeout 10 ssh -o BatchMode=yes -o ConnectTimeout=3 n1 true </dev/null >/dev/null 2>&1; }
# ssh_named: `ssh nX hostname` prints nX for the first and the last node (per-node sshd).
ssh_named() {
    local n last="n$NNODES"
    for n in n1 "$last"; do
        [ "$(timeout 10 ssh -o BatchMode=yes -o ConnectTimeout=3 "$n" hostname </dev/null 2>/dev/null)" = "$n" ] || return 1
    done
}

# in_node_uts NODE CMD...: run CMD in a new UTS namespace whose host name is NODE. Daemons
# started so (slurmd, sshd) hand the name down to every task and MPI daemon they start.
in_node_uts() {
    local node="$1"; shift
    unshare --uts sh -c 'hostname "$0" && exec "$@"' "$node" "$@"
}
# slurmd_named NODE: our slurmd of NODE runs in a UTS namespace named NODE.
slurmd_named() {
    local pid
    pid=$(pid_in "$STATE/run/slurmd-$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(nsenter -t "$pid" -u hostname 2>/dev/null)" = "$1" ]
}

# nodes_usable: every node n1..nN is listed and idle/mixed/allocated/completing; a
# trailing '*' (not responding), down or drain states make it fail.
nodes_usable() {
    local states
    states=$(timeout 15 sinfo -h -N -o '%N %T' 2>/dev/null | sort -u) || return 1
    local n
    for n in $NODES; do
        grep -Eq "^$n (idle|mixed|allocated|completing|planned)$" <<<"$states" || return 1
    done
}
# A dead slurmd of ours counts as unhealthy at once: the controller would keep showing its
# node idle until SlurmdTimeout passes.
cluster_healthy() {
    local n
    if own_ctld; then
        for n in $NODES; do own_slurmd "$n" || return 1; done
    fi
    ctld_answers && nodes_usable
}

# ------------------------------------------------------------------- config
render_slurm_conf() {
    local mem
    mem=$(awk -v n="$NNODES" '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.8 / n}' /proc/meminfo)
    sed -e "s|{{CLUSTER}}|$CLUSTER|g" -e "s|{{HOST}}|$HOST|g" -e "s|{{NODES}}|$NNODES|g" \
        -e "s|{{CTLD_PORT}}|$CTLD_PORT|g" -e "s|{{NODE_PORT}}|$NODE_PORT|g" \
        -e "s|{{STATE}}|$STATE|g" -e "s|{{TASK_PROLOG}}|TaskProlog=$STATE/etc/task-prolog.sh|g" \
        -e "s|{{NODE_RANGE}}|$NODE_RANGE|g" -e "s|{{PORT_RANGE}}|$PORT_RANGE|g" \
        -e "s|{{CPUS}}|$CPUS|g" -e "s|{{MEM_MB}}|$mem|g" -e "s|{{PARTITION}}|$PARTITION|g" \
        -e "s|{{GRES}}|$([ "$GPUS" -gt 0 ] && echo " Gres=gpu:$GPUS")|g" "$HERE/slurm.conf.tmpl"
}

# render_gres_conf: the dummy GPUs of every node, regular files (Slurm only needs a path
# per GPU; no cgroup constrains devices here). Slurm reads gres.conf next to slurm.conf.
render_gres_conf() {
    echo "# Generated by ci/dev-cluster/dev-cluster.sh: $GPUS dummy GPUs per node (no hardware)"
    echo "AutoDetect=off"
    [ "$GPUS" -eq 0 ] || echo "NodeName=$NODE_RANGE Name=gpu File=$STATE/dev/gpu[0-$((GPUS - 1))]"
}

# config_changed: the rendered slurm.conf or gres.conf differs from the installed one.
config_changed() {
    ! cmp -s <(render_slurm_conf) "$OWN_CONF" ||
        ! cmp -s <(render_gres_conf) "$(dirname "$OWN_CONF")/gres.conf"
}

# write_if_changed SRC DEST MODE: install SRC as DEST unless identical; status 0 if written.
write_if_changed() {
    if cmp -s "$1" "$2"; then rm -f "$1"; return 1; fi
    install -D -m "$3" "$1" "$2" && rm -f "$1"
}

# ------------------------------------------------------------------ daemons
start_munge() {
    munge_works && return 0
    if [ ! -s /etc/munge/munge.key ]; then
        install -d -o munge -g munge -m 0700 /etc/munge
        mungekey --create --keyfile=/etc/munge/munge.key >/dev/null 2>&1 ||
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    # --force: a stale socket left by a killed munged must not block the start.
    runuser -u munge -- /usr/sbin/munged --force </dev/null >"$STATE/log/munged.out" 2>&1 ||
        { cat "$STATE/log/munged.out" >&2; die "munged did not start (see /var/log/munge/munged.log)"; }
    local n=50
    until munge_works; do n=$((n - 1)); [ "$n" -gt 0 ] || die "munged runs but munge -n | unmunge fails"; sleep 0.1; done
    touch "$STATE/run/munged.ours"
    log "started munged"
}

start_slurm() {
    export SLURM_CONF="$OWN_CONF"
    local n
    if port_busy "$CTLD_PORT" && ! own_ctld; then
        die "port $CTLD_PORT is taken by a process this script did not start (another slurmctld whose nodes are not usable?): stop it first"
    fi
    for n in $NODES; do mkdir -p "$STATE/spool/$n" "$STATE/tmp/$n"; done
    chmod 1777 "$STATE/tmp" "$STATE"/tmp/*
    install -m 0755 "$HERE/task-prolog.sh" "$STATE/etc/task-prolog.sh"
    local gres_conf i
    gres_conf="$(dirname "$OWN_CONF")/gres.conf"
    mkdir -p "$STATE/dev"
    for ((i = 0; i < GPUS; i++)); do [ -e "$STATE/dev/gpu$i" ] || : >"$STATE/dev/gpu$i"; done
    render_slurm_conf >"$STATE/etc/slurm.conf.new"
    render_gres_conf >"$STATE/etc/gres.conf.new"
    if config_changed && { own_ctld || [ -n "$(own_slurmds)" ]; }; then
        log "slurm.conf or gres.conf changed: restarting our slurm daemons"
        stop_slurm
    fi
    write_if_changed "$STATE/etc/gres.conf.new" "$gres_conf" 0644 && log "wrote $gres_conf" || true
    write_if_changed "$STATE/etc/slurm.conf.new" "$OWN_CONF" 0644 && log "wrote $OWN_CONF" || true
    start_munge
    if ! own_ctld; then
        # -c: start from an empty state; a dev cluster has no jobs worth recovering.
        slurmctld -f "$OWN_CONF" -c -i </dev/null >"$STATE/log/slurmctld.out" 2>&1 ||
            { tail -n 20 "$STATE/log/slurmctld.out" "$STATE/log/slurmctld.log" >&2 2>/dev/null; die "slurmctld did not start"; }
        log "started slurmctld"
    fi
    local t=$((WAIT * 10))
    until ctld_answers; do
        t=$((t - 1)); [ "$t" -gt 0 ] || { tail -n 20 "$STATE/log/slurmctld.log" >&2; die "slurmctld does not answer scontrol ping"; }
        sleep 0.1
    done
    local started=""
    for n in $NODES; do
        own_slurmd "$n" && continue
        started="$started $n"
        if port_busy $((NODE_PORT + ${n#n} - 1)); then
            die "port $((NODE_PORT + ${n#n} - 1)) for node $n is taken by a process this script did not start"
        fi
        in_node_uts "$n" slurmd -f "$OWN_CONF" -N "$n" </dev/null >"$STATE/log/slurmd-$n.out" 2>&1 ||
            { tail -n 20 "$STATE/log/slurmd-$n.out" "$STATE/log/slurmd-$n.log" >&2 2>/dev/null; die "slurmd -N $n did not start"; }
    done
    [ -z "$started" ] || log "started slurmd for:$started"
    wait_nodes || die "nodes not usable after ${WAIT}s: $(sinfo -h -N -o '%N=%T' 2>&1 | tr '\n' ' ') (logs: $STATE/log)"
}

# rename_slurmds: restart, one by one, our slurmds that still share this host's name (a
# cluster started by an older dev-cluster.sh). Only slurmd restarts: the controller, the
# jobs and their running steps (slurmstepd) are left alone and keep running.
rename_slurmds() {
    local n restarted=""
    export SLURM_CONF="$OWN_CONF"
    for n in $NODES; do
        own_slurmd "$n" || continue
        slurmd_named "$n" && continue
        stop_pid "$(pid_in "$STATE/run/slurmd-$n.pid")" 10
        rm -f "$STATE/run/slurmd-$n.pid"
        in_node_uts "$n" slurmd -f "$OWN_CONF" -N "$n" </dev/null >"$STATE/log/slurmd-$n.out" 2>&1 ||
            { tail -n 20 "$STATE/log/slurmd-$n.out" >&2; die "slurmd -N $n did not start"; }
        restarted="$restarted $n"
    done
    [ -z "$restarted" ] && return 0
    log "restarted slurmd in its own UTS namespace (hostname = node name) for:$restarted"
    wait_nodes || die "nodes not usable after ${WAIT}s: $(sinfo -h -N -o '%N=%T' 2>&1 | tr '\n' ' ')"
}

wait_nodes() {
    local t=$((WAIT * 5)) resumed=0
    until nodes_usable; do
        t=$((t - 1)); [ "$t" -gt 0 ] || return 1
        # Nodes left down/drained by an earlier run are resumed once they registered.
        if [ "$resumed" = 0 ] && sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(down|drain)'; then
            scontrol update NodeName="$NODE_RANGE" State=RESUME >/dev/null 2>&1 && resumed=1
        fi
        sleep 0.2
    done
}

own_slurmds() {
    local f
    for f in "$STATE"/run/slurmd-*.pid; do
        [ -e "$f" ] && pid_alive "$f" /usr/sbin/slurmd && basename "$f" .pid
    done
    return 0
}

# slurmstepd processes of this cluster (they hold a file under $STATE open) survive a
# slurmd stop; find them by their open files, never by name.
own_stepds() {
    local p f exe
    exe=$(readlink -f /usr/sbin/slurmstepd 2>/dev/null) || return 0
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/exe" 2>/dev/null)" = "$exe" ] || continue
        for f in "$p"/fd/*; do
            case "$(readlink "$f" 2>/dev/null)" in "$STATE"/*) echo "${p#/proc/}"; break ;; esac
        done
    done
}

stop_slurm() {
    local f pid jobs n
    if own_ctld && SLURM_CONF="$OWN_CONF" ctld_answers; then
        export SLURM_CONF="$OWN_CONF"
        jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
        if [ -n "${jobs// /}" ]; then
            log "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            n=100
            while [ "$n" -gt 0 ] && [ -n "$(squeue -h -o %A 2>/dev/null)" ]; do sleep 0.1; n=$((n - 1)); done
        fi
    fi
    for f in "$STATE"/run/slurmd-*.pid; do
        [ -e "$f" ] || continue
        pid_alive "$f" /usr/sbin/slurmd && stop_pid "$(pid_in "$f")" 10
        rm -f "$f"
    done
    for pid in $(own_stepds); do stop_pid "$pid" 3; done
    if own_ctld; then stop_pid "$(pid_in "$STATE/run/slurmctld.pid")" 15; fi
    rm -f "$STATE/run/slurmctld.pid"
}

# -------------------------------------------------------------- extras
# setup_hosts: node names resolve to this host (/etc/hosts lines marked HOSTS_MARK), as on
# a real cluster: MPICH's hydra connects its proxies to the launching node by its host
# name, which is now the node name. The file is rewritten in place (it may be a mount).
HOSTS_MARK="# qcgflow-dev-cluster"
setup_hosts() {
    local node missing=""
    for node in $NODES; do getent hosts "$node" >/dev/null || missing="$missing $node"; done
    [ -n "$missing" ] || return 0
    echo "127.0.0.1$missing $HOSTS_MARK" >>/etc/hosts
    log "added$missing to /etc/hosts (127.0.0.1)"
}
remove_hosts() {
    grep -q -- "$HOSTS_MARK\$" /etc/hosts 2>/dev/null || return 0
    local kept
    kept=$(grep -v -- "$HOSTS_MARK\$" /etc/hosts)
    printf '%s\n' "$kept" >/etc/hosts
}

install_module() {
    if [ ! -r /usr/share/modules/init/bash ]; then log "environment-modules missing: no modulefile"; return 0; fi
    local apps="$PREFIX/apps"
    mkdir -p "$PREFIX/modulefiles/qcgtest" "$apps/qcgtest/1.0/bin"
    sed "s|{{APPS}}|$apps|g" "$HERE/modulefiles/qcgtest/1.0" >"$STATE/etc/qcgtest.new"
    write_if_changed "$STATE/etc/qcgtest.new" "$PREFIX/modulefiles/$MODULE" 0644 || true
    # the Open MPI module name of RHEL-like clusters (QCG-PilotJob's Slurm tests load it)
    mkdir -p "$PREFIX/modulefiles/mpi"
    cp "$HERE/modulefiles/mpi/openmpi-x86_64" "$STATE/etc/openmpi-x86_64.new"
    write_if_changed "$STATE/etc/openmpi-x86_64.new" "$PREFIX/modulefiles/mpi/openmpi-x86_64" 0644 || true
    printf '#!/bin/sh\n# qcgtest-hello: part of the qcgtest/1.0 test module\necho "qcgtest-hello: QCGTEST_VAR=${QCGTEST_VAR:-}"\n' \
        >"$STATE/etc/qcgtest-hello.new"
    write_if_changed "$STATE/etc/qcgtest-hello.new" "$apps/qcgtest/1.0/bin/qcgtest-hello" 0755 || true
    # The init scripts read this file only while MODULEPATH is unset (login shells, srun'd
    # `bash -l`); shells that already have a MODULEPATH need `module use`.
    if [ -f "$MODULESPATH_FILE" ] && ! grep -qxF "$PREFIX/modulefiles" "$MODULESPATH_FILE"; then
        echo "$PREFIX/modulefiles" >>"$MODULESPATH_FILE"
        log "added $PREFIX/modulefiles to $MODULESPATH_FILE"
    fi
}

# build_hello COMPILER OUTPUT: (re)build when the binary is missing or the source changed.
build_hello() {
    local cc="$1" out="$PREFIX/bin/$2"
    command -v "$cc" >/dev/null || { log "$cc not installed: no $out"; return 0; }
    if [ -x "$out" ] && cmp -s "$HERE/mpi_hello.c" "$out.c"; then return 0; fi
    mkdir -p "$PREFIX/bin"
    "$cc" -O2 -o "$out.tmp" "$HERE/mpi_hello.c" 2>"$STATE/log/$2.build.log" ||
        { cat "$STATE/log/$2.build.log" >&2; die "$cc failed to build $out"; }
    mv -f "$out.tmp" "$out" && cp "$HERE/mpi_hello.c" "$out.c"
    log "built $out"
}

# setup_ssh: make `ssh nX cmd` reach this host as root without prompts, through one private
# sshd per node (own host key, own authorized_keys, port SSH_PORT+X-1) running in node nX's
# UTS namespace, so the system's sshd setup is not touched and `ssh nX hostname` says nX.
SSH_OK=0
setup_ssh() {
    [ "$WITH_SSH" = 1 ] || { log "QCGFLOW_DEV_WITH_SSH=0: no ssh"; return 0; }
    if ssh_works && ssh_named; then SSH_OK=1; return 0; fi
    [ -x /usr/sbin/sshd ] || { log "openssh-server missing: no ssh to the nodes"; return 0; }
    local k="$PREFIX/ssh" n=50 node port f
    # One sshd for every node (older dev-cluster.sh) or per-node ones: stop ours, restart.
    # Open sessions are sshd children of their own and survive this.
    for f in "$STATE"/run/sshd.pid "$STATE"/run/sshd-*.pid; do
        [ -e "$f" ] || continue
        pid_alive "$f" /usr/sbin/sshd && stop_pid "$(pid_in "$f")" 5
        rm -f "$f"
    done
    for node in $NODES; do
        port=$((SSH_PORT + ${node#n} - 1))
        if port_busy "$port"; then log "port $port is taken by another program: no ssh to the nodes"; return 0; fi
    done
    install -d -m 0700 "$k"
    [ -s "$k/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C qcgflow-dev-host -f "$k/host_ed25519"
    [ -s "$k/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C qcgflow-dev-root -f "$k/id_ed25519"
    install -m 0600 "$k/id_ed25519.pub" "$k/authorized_keys"
    install -d -m 0755 /run/sshd
    {
        echo "# written by qcgflow ci/dev-cluster/dev-cluster.sh (removed by 'down'): the virtual nodes"
        echo "# of the dev Slurm cluster are this host's private sshd daemons, one port per node"
        for node in $NODES; do
            cat <<EOF
Host $node
    HostName 127.0.0.1
    Port $((SSH_PORT + ${node#n} - 1))
    User root
    IdentityFile $k/id_ed25519
    IdentitiesOnly yes
    BatchMode yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
EOF
        done
    } >"$SSH_CLIENT_CONF"
    for node in $NODES; do
        cat >"$STATE/etc/sshd_config-$node" <<EOF
# private sshd of node $node of the qcgflow dev cluster (in $node's UTS namespace)
ListenAddress 127.0.0.1
Port $((SSH_PORT + ${node#n} - 1))
HostKey $k/host_ed25519
PidFile $STATE/run/sshd-$node.pid
AuthorizedKeysFile $k/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 100
LogLevel ERROR
EOF
        in_node_uts "$node" /usr/sbin/sshd -f "$STATE/etc/sshd_config-$node" -E "$STATE/log/sshd-$node.log" \
            </dev/null >/dev/null 2>&1 ||
            { log "sshd of $node failed to start (see $STATE/log/sshd-$node.log): no ssh to the nodes"; return 0; }
    done
    until ssh_works && ssh_named; do
        n=$((n - 1)); [ "$n" -gt 0 ] || { log "sshd runs but 'ssh n1 hostname' does not print n1: no ssh"; return 0; }
        sleep 0.1
    done
    SSH_OK=1
    log "started one sshd per node on 127.0.0.1:$SSH_PORT-$((SSH_PORT + NNODES - 1))"
}

stop_ssh() {
    # Only the instance whose sshd this was owns the ssh mapping: a second cluster started
    # with another QCGFLOW_DEV_STATE (and QCGFLOW_DEV_WITH_SSH=0) must not remove it.
    local f ours=0
    for f in "$STATE"/run/sshd.pid "$STATE"/run/sshd-*.pid; do
        [ -e "$f" ] || continue
        ours=1
        pid_alive "$f" /usr/sbin/sshd && stop_pid "$(pid_in "$f")" 5
        rm -f "$f"
    done
    [ "$ours" = 0 ] || rm -f "$SSH_CLIENT_CONF"
}

write_env() {
    local mode="$1" conf="${SLURM_CONF:-$OWN_CONF}" ompi="" mpich=""
    [ -x "$PREFIX/bin/mpi_hello" ] && ompi="$PREFIX/bin/mpi_hello"
    [ -x "$PREFIX/bin/mpi_hello.mpich" ] && mpich="$PREFIX/bin/mpi_hello.mpich"
    cat >"$STATE/env.sh.new" <<EOF
# qcgflow dev cluster ($mode), written by ci/dev-cluster/dev-cluster.sh up
export SLURM_CONF=$conf
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export QCGFLOW_DEV_CLUSTER=1
export QCGFLOW_DEV_MODE=$mode
export QCGFLOW_DEV_NODES='$NODES'
export QCGFLOW_DEV_NODELIST='$NODE_RANGE'
export QCGFLOW_DEV_CPUS_PER_NODE=$CPUS
export QCGFLOW_DEV_GPUS_PER_NODE=$GPUS
export QCGFLOW_DEV_PARTITION=$PARTITION
export QCGFLOW_DEV_MPI_HELLO=$ompi
export QCGFLOW_DEV_MPI_HELLO_MPICH=$mpich
export QCGFLOW_DEV_MODULE=$MODULE
export QCGFLOW_DEV_MODULEFILES=$PREFIX/modulefiles
export QCGFLOW_DEV_SSH=$SSH_OK
export QCGFLOW_DEV_STATE=$STATE
EOF
    mv -f "$STATE/env.sh.new" "$STATE/env.sh"
}

# ---------------------------------------------------------------- commands
cmd_up() {
    need_root up
    mkdir -p "$STATE"/{etc,log,run,tmp,spool,ctld}
    install_packages
    local t_pkg mode
    t_pkg=$(elapsed)
    if cluster_healthy && own_ctld && config_changed; then
        # Our own cluster on an older config (e.g. without the GPUs): restart it, once.
        start_slurm
        mode=own
    elif cluster_healthy; then
        if own_ctld; then
            mode=own; log "cluster already up"
            rename_slurmds
            # slurmd reads the TaskProlog at every task: refreshing it needs no restart
            install -m 0755 "$HERE/task-prolog.sh" "$STATE/etc/task-prolog.sh"
        else
            mode=reused
            log "reusing the healthy Slurm cluster already running (SLURM_CONF=${SLURM_CONF:-$OWN_CONF}, not started by this script)"
        fi
    elif ! own_ctld && ctld_answers; then
        # Someone else's controller: it may still be registering its nodes.
        log "a Slurm controller not started by this script answers; waiting for $NODE_RANGE"
        wait_nodes || die "the running Slurm controller (not ours) does not have usable nodes $NODE_RANGE: $(sinfo -h -N -o '%N=%T' 2>&1 | tr '\n' ' '); stop it or fix it first"
        mode=reused
    else
        start_slurm
        mode=own
    fi
    setup_hosts
    install_module
    build_hello mpicc.openmpi mpi_hello
    build_hello mpicc.mpich mpi_hello.mpich
    setup_ssh
    write_env "$mode"
    log "up ($mode): $(sinfo -h -o '%P %D %T %N' | tr '\n' ' ')- packages ${t_pkg}ms, total $(elapsed)ms"
    log "environment: eval \"\$(bash $HERE/dev-cluster.sh env)\""
}

cmd_down() {
    need_root down
    if [ ! -d "$STATE" ]; then log "nothing to stop ($STATE does not exist)"; return 0; fi
    if ! own_ctld && [ -z "$(own_slurmds)" ] && cluster_healthy; then
        log "the running Slurm cluster was not started by this script: left alone"
    fi
    stop_slurm
    stop_ssh
    remove_hosts
    if [ -e "$STATE/run/munged.ours" ] && pid_alive /run/munge/munged.pid /usr/sbin/munged; then
        stop_pid "$(pid_in /run/munge/munged.pid)" 5
    fi
    rm -f "$STATE/run/munged.ours" "$STATE/env.sh"
    rm -rf /dev/shm/qcgflow-dev-* 2>/dev/null || true
    if [ "${1:-}" = --purge ]; then rm -rf "$STATE"; log "removed $STATE"; fi
    log "down"
}

cmd_status() {
    local rc=0 n
    if own_ctld; then echo "slurmctld: ours (pid $(pid_in "$STATE/run/slurmctld.pid"))"
    elif ctld_answers; then echo "slurmctld: running, not started by dev-cluster.sh"
    else echo "slurmctld: not running"; fi
    for n in $NODES; do
        if own_slurmd "$n"; then echo "slurmd $n: ours (pid $(pid_in "$STATE/run/slurmd-$n.pid"))"; fi
    done
    if munge_works; then echo "munge: works"; else echo "munge: BROKEN"; rc=1; fi
    if ssh_works; then echo "ssh n1: works"; else echo "ssh n1: does not work"; fi
    timeout 15 scontrol ping 2>&1 || rc=1
    timeout 15 sinfo -N -o '%N %P %T %c' 2>&1 || rc=1
    if ! nodes_usable; then echo "nodes $NODE_RANGE: NOT all usable"; rc=1; fi
    return "$rc"
}

cmd_env() {
    [ -r "$STATE/env.sh" ] || die "no dev cluster environment in $STATE/env.sh: run 'bash $HERE/dev-cluster.sh up' first"
    grep '^export ' "$STATE/env.sh"
}

case "${1:-help}" in
    up) cmd_up ;;
    down) shift; cmd_down "$@" ;;
    status) cmd_status ;;
    env) cmd_env ;;
    help|-h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' ;;
    *) die "unknown command '$1' (use: up | down [--purge] | status | env | help)" ;;
esac

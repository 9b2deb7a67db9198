#!/usr/bin/env bash
# Start or stop a single-node SLURM cluster on localhost (CI and local tests; needs root).
#   tests/slurm/cluster.sh install   apt-get install slurm-wlm munge (Debian)
#   tests/slurm/cluster.sh start     munged, slurmctld, slurmd; waits until the node is idle
#   tests/slurm/cluster.sh stop      stops the daemons this script started (by pid)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
RUN=/run/llem-slurm

install() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
}

start() {
    mkdir -p /etc/slurm "$RUN" /var/lib/llem-slurm/ctld /var/lib/llem-slurm/d /var/log/llem-slurm
    cp "$HERE/slurm.conf" "$HERE/gres.conf" /etc/slurm/
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    [ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
    chmod 400 /etc/munge/munge.key
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- munged --pid-file=/run/munge/munged.pid
        cp /run/munge/munged.pid "$RUN/munged.pid"
    fi
    slurmctld -f /etc/slurm/slurm.conf
    slurmd -f /etc/slurm/slurm.conf -N localhost
    for _ in $(seq 1 60); do
        state="$(sinfo -h -N -o '%T' 2>/dev/null | head -1)"
        if [ "$state" = "idle" ]; then echo "slurm: node idle"; return 0; fi
        sleep 0.5
    done
    echo "slurm: node did not become idle (state: ${state:-none})" >&2
    return 1
}

stop() {
    for name in slurmd slurmctld munged; do
        pidfile="$RUN/$name.pid"
        [ -s "$pidfile" ] || continue
        pid="$(cat "$pidfile")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        rm -f "$pidfile"
    done
}

"$1"

#!/usr/bin/env bash
# A throwaway single-node Ceph cluster for development, tests and benchmarks.
#
#   scripts/dev-ceph.sh start  DIR   start (or restart) the cluster in DIR; prints DIR/ceph.conf
#   scripts/dev-ceph.sh stop   DIR   stop it (OSD first, then the monitor, by PID)
#   scripts/dev-ceph.sh status DIR   say whether it runs; exit 0 if it does, 3 if not
#
# Everything lives under DIR: ceph.conf, monitor and OSD data, logs, pid files, admin sockets.
# One monitor on 127.0.0.1 (a free port), one OSD on memstore (data in RAM), no manager, no
# authentication (auth none), replication size 1, and a pool "rbd" ready for images (rbd pool init).
# Start and stop are idempotent. Use the cluster with `-c DIR/ceph.conf` (or CEPH_CONF=DIR/ceph.conf):
#   rbd -c DIR/ceph.conf create --size 128M rbd/disk
#   ./jvhost blk --socket /tmp/blk.sock --rbd rbd/disk --ceph-conf DIR/ceph.conf
# Needs the Debian packages ceph-mon ceph-osd ceph-common (and librbd-dev for jvhost's --rbd).
# Environment: DEV_CEPH_TIMEOUT (seconds to wait for the cluster, default 90), DEV_CEPH_POOL
# (default rbd), DEV_CEPH_MEMSTORE_BYTES (the OSD's RAM budget, default 2 GiB).
set -euo pipefail

POOL=${DEV_CEPH_POOL:-rbd}
TIMEOUT=${DEV_CEPH_TIMEOUT:-90}
MEMSTORE_BYTES=${DEV_CEPH_MEMSTORE_BYTES:-2147483648}

say() { printf 'dev-ceph: %s\n' "$*" >&2; }
die() { printf 'dev-ceph: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $# -eq 2 ]] || usage
cmd=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
CONF=$DIR/ceph.conf

need_tools() {
  local missing=() t
  for t in ceph-mon ceph-osd monmaptool ceph rbd; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    die "missing ${missing[*]}; install: apt-get install -y --no-install-recommends ceph-mon ceph-osd ceph-common"
  fi
}

# PID from DIR/run/NAME.pid if that process is alive.
live_pid() {
  local f=$DIR/run/$1.pid pid
  [[ -r $f ]] || return 1
  pid=$(tr -dc 0-9 <"$f")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  # A recycled PID is not ours: check the command line names our conf.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CONF" || return 1
  echo "$pid"
}

cephc() { timeout 30 ceph -c "$CONF" --connect-timeout 10 "$@"; }

free_port() {
  local py
  for py in /usr/bin/python3 python3; do
    if command -v "$py" >/dev/null 2>&1; then
      "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
      return
    fi
  done
  # No Python: a random port in the dynamic range that nothing answers on.
  local p
  for _ in $(seq 1 50); do
    p=$((40000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}

write_conf() {
  local port=$1 fsid=$2
  cat >"$CONF" <<EOF
# Written by scripts/dev-ceph.sh: a single-node development cluster, no authentication.
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 2
mon data avail crit = 1
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
crash dir = $DIR/crash
keyring = $DIR/keyring
client mount timeout = 15
rados mon op timeout = 15

[client]
# Clients (rbd, rados, jvhost) need no admin socket; several at once would fight over one path.
admin socket =

[mon]
admin socket = $DIR/run/\$name.asok
mon data = $DIR/mon.\$id
mon cluster log file = $DIR/log/cluster.log

[osd]
admin socket = $DIR/run/\$name.asok
osd data = $DIR/osd.\$id
# A clean stop: tell the monitor, and let memstore save its data to osd data (a restart keeps it).
osd fast shutdown = false
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES
osd memory target = 939524096
osd class load list = *
osd class default list = *
osd max object name len = 460
osd max object namespace len = 64
EOF
}

start_mon() {
  if live_pid mon.a >/dev/null; then return; fi
  ceph-mon -c "$CONF" -i a 2>>"$DIR/log/mon.a.stderr" || die "ceph-mon failed to start; see $DIR/log/mon.a.log"
}

start_osd() {
  if live_pid osd.0 >/dev/null; then return; fi
  ceph-osd -c "$CONF" -i 0 2>>"$DIR/log/osd.0.stderr" || die "ceph-osd failed to start; see $DIR/log/osd.0.log"
}

# Runs a ceph command until the monitor answers it (it may still be starting).
mon_retry() {
  local out
  until out=$(cephc "$@" 2>&1); do
    [[ $SECONDS -lt $deadline ]] || die "monitor did not answer within ${TIMEOUT}s (ceph $*: $out); see $DIR/log/mon.a.log"
    live_pid mon.a >/dev/null || die "monitor exited; see $DIR/log/mon.a.log"
    sleep 0.2
  done
  echo "$out"
}

# Seconds left before the deadline (at least 1).
left() {
  local l=$((deadline - SECONDS))
  echo $((l > 0 ? l : 1))
}

do_start() {
  need_tools
  local t0=$SECONDS deadline=$((SECONDS + TIMEOUT))
  mkdir -p "$DIR/run" "$DIR/log" "$DIR/crash"
  if [[ -f $CONF && -d $DIR/mon.a && -f $DIR/osd.0/ready ]]; then
    if live_pid mon.a >/dev/null && live_pid osd.0 >/dev/null; then
      say "already running"
      echo "$CONF"
      return
    fi
    say "restarting the cluster in $DIR"
    start_mon
    start_osd
  else
    # Nothing (or a start that died half way): a new cluster.
    stop_daemon osd.0
    stop_daemon mon.a
    rm -rf "$DIR/mon.a" "$DIR/osd.0" "$DIR/monmap"
    local port fsid osd_uuid id
    port=$(free_port)
    fsid=$(uuidgen)
    osd_uuid=$(uuidgen)
    : >"$DIR/keyring"
    write_conf "$port" "$fsid"
    monmaptool --create --clobber --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$DIR/monmap" >/dev/null
    ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" >"$DIR/log/mkfs-mon.log" 2>&1 \
      || die "ceph-mon --mkfs failed: $(tail -n 3 "$DIR/log/mkfs-mon.log")"
    start_mon
    id=$(mon_retry osd new "$osd_uuid")
    [[ $id == 0 ]] || die "expected OSD id 0, the monitor gave: $id"
    mkdir -p "$DIR/osd.0"
    ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$DIR/log/mkfs-osd.log" 2>&1 \
      || die "ceph-osd --mkfs failed: $(tail -n 3 "$DIR/log/mkfs-osd.log")"
    start_osd
    # The pool is made while the OSD boots; rbd pool init then waits for its placement groups.
    mon_retry osd pool create "$POOL" 8 8 replicated --size 1 >/dev/null
    timeout "$(left)" rbd -c "$CONF" pool init "$POOL" \
      || die "rbd pool init $POOL failed or timed out after ${TIMEOUT}s; see $DIR/log"
  fi
  # Usable: an object round trip through the OSD (waits for the pool's placement groups).
  echo probe | timeout "$(left)" rados -c "$CONF" -p "$POOL" put dev-ceph-probe - \
    || die "pool $POOL takes no writes within ${TIMEOUT}s; see $DIR/log"
  rados -c "$CONF" -p "$POOL" rm dev-ceph-probe >/dev/null 2>&1 || true
  say "cluster up in $((SECONDS - t0))s: $(grep '^mon host' "$CONF"), pool $POOL"
  echo "$CONF"
}

# SIGTERM, then SIGKILL after 10 s.
stop_daemon() {
  local name=$1 pid
  pid=$(live_pid "$name") || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$DIR/run/$name.pid"; return 0; }
    sleep 0.1
  done
  say "$name (pid $pid) ignored SIGTERM for 10s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$DIR/run/$name.pid"
}

do_stop() {
  stop_daemon osd.0
  stop_daemon mon.a
  say "stopped ($DIR)"
}

do_status() {
  local mon osd
  mon=$(live_pid mon.a || true)
  osd=$(live_pid osd.0 || true)
  if [[ -n $mon && -n $osd ]]; then
    echo "running: mon.a pid $mon, osd.0 pid $osd; conf $CONF"
    return 0
  fi
  echo "stopped${mon:+ (mon.a pid $mon still runs)}${osd:+ (osd.0 pid $osd still runs)}: $DIR"
  return 3
}

case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  *) usage ;;
esac

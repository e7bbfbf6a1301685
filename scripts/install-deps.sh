#!/usr/bin/env bash
# What jvhost's tests, demo and benchmarks need from a Debian machine: checked, and installed when
# this runs as root (or with passwordless sudo). The one copy of this logic: ./jvhost (test, demo,
# bench) and .ci/run both call it.
#
#   scripts/install-deps.sh [--require] GROUP...
#
# Groups:
#   build   Maven
#   jdk     a JDK >= 22 (from apt, when none is installed under JAVA_HOME or /usr/lib/jvm)
#   guest   QEMU, a kernel and a static busybox: the QEMU guest tests (tag qemu) and ./jvhost demo
#   dpdk    dpdk-testpmd, 1024 hugepages reserved and hugetlbfs on /dev/hugepages: the DPDK tests
#   ceph    Ceph's monitor, OSD, tools, librbd and QEMU's rbd driver: the RBD tests (tag ceph, scripts/dev-ceph.sh)
#   nbd     qemu-nbd, nbdkit and openssl: the NBD store tests
#   metrics promtool (Debian prometheus): the /metrics exposition tests
#   net     iproute2, iperf3 and ethtool: the TAP, offload and VXLAN tests (iperf3 also goes into the test guest)
#   bench   dpdk, qemu-storage-daemon and taskset: ./jvhost bench
#   test    guest dpdk ceph nbd metrics net: everything ./jvhost test runs
#
# When something is missing and cannot be installed (not root), it says what to install and exits
# 0: the tests that need it skip loudly (and fail under CI). With --require it exits 3 instead.
# Hugepages are never fatal: containers often forbid reserving them; the DPDK tests say so.
# Messages go to stderr, prefixed with $JVHOST_LOG_PREFIX (default "jvhost:").
set -euo pipefail

MIN_JAVA=22
HUGEPAGES=1024
PREFIX=${JVHOST_LOG_PREFIX:-jvhost:}
export DEBIAN_FRONTEND=noninteractive

log() { printf '%s %s\n' "$PREFIX" "$*" >&2; }

require=false
groups=()
for arg in "$@"; do
  case "$arg" in
    --require) require=true ;;
    -h|--help) sed -n '2,27s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    build|jdk|guest|dpdk|ceph|nbd|net|bench) groups+=("$arg") ;;
    test) groups+=(guest dpdk ceph nbd metrics net) ;;
    *) log "install-deps: unknown group '$arg' (see scripts/install-deps.sh --help)"; exit 2 ;;
  esac
done

SUDO=()
can_root=true
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    can_root=false
  fi
fi
command -v apt-get >/dev/null 2>&1 || can_root=false
as_root() { "${SUDO[@]}" "$@"; }

# --- what is there ----------------------------------------------------------------------------
have_package() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

# Same rule as GuestImage: a readable /boot/vmlinuz-<v> with /lib/modules/<v>/modules.dep.
have_kernel() {
  local k
  for k in /boot/vmlinuz-*; do
    if [[ -r "$k" && -f "/lib/modules/${k#/boot/vmlinuz-}/modules.dep" ]]; then return 0; fi
  done
  return 1
}

# The guest initramfs has no C library for a dynamic busybox.
have_static_busybox() {
  local b out
  for b in /bin/busybox /usr/bin/busybox $(command -v busybox 2>/dev/null || true); do
    [[ -r "$b" ]] || continue
    out=$(LC_ALL=C ldd "$b" 2>&1 || true) # ldd fails on static binaries, by design
    if [[ "$out" == *"not a dynamic executable"* || "$out" == *"statically linked"* ]]; then
      return 0
    fi
  done
  return 1
}

# Major version of the JDK at $1 (empty if it is no JDK).
java_major() {
  local home=$1 version=""
  [[ -x "$home/bin/java" && -x "$home/bin/javac" ]] || return 0
  version=$("$home/bin/java" -version 2>&1 </dev/null | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n 1) || true
  if [[ -z "$version" && -r "$home/release" ]]; then
    version=$(sed -n 's/^JAVA_VERSION="\(.*\)"$/\1/p' "$home/release")
  fi
  version=${version#1.}
  version=${version%%[._+-]*}
  if [[ "$version" =~ ^[0-9]+$ ]]; then echo "$version"; fi
}

have_jdk() {
  local candidate version
  for candidate in ${JAVA_HOME:+"$JAVA_HOME"} /usr/lib/jvm/*; do
    [[ -d "$candidate" ]] || continue
    version=$(java_major "$candidate")
    if [[ -n "$version" && "$version" -ge "$MIN_JAVA" ]]; then return 0; fi
  done
  return 1
}

# The Debian packages group $1 lacks, space-separated.
missing_of() {
  local missing=()
  case "$1" in
    build)
      command -v mvn >/dev/null 2>&1 || missing+=(maven) ;;
    guest)
      [[ -x /usr/bin/qemu-system-x86_64 || -x $(command -v qemu-system-x86_64 || echo /nonexistent) ]] \
        || missing+=(qemu-system-x86)
      have_package qemu-system-common || missing+=(qemu-system-common)
      have_kernel || missing+=(linux-image-amd64)
      have_static_busybox || missing+=(busybox-static) ;;
    dpdk)
      [[ -x /usr/bin/dpdk-testpmd ]] || missing+=(dpdk dpdk-dev) ;;
    ceph)
      [[ -x /usr/bin/ceph-mon ]] || missing+=(ceph-mon)
      [[ -x /usr/bin/ceph-osd ]] || missing+=(ceph-osd)
      [[ -x /usr/bin/rbd && -x /usr/bin/ceph ]] || missing+=(ceph-common)
      [[ -f /usr/include/rbd/librbd.h ]] || missing+=(librbd-dev)
      # qemu-storage-daemon's driver=rbd (BenchSmokeTest's and ./jvhost bench blk's qsd-rbd).
      have_package qemu-block-extra || missing+=(qemu-block-extra) ;;
    nbd)
      [[ -x /usr/bin/qemu-nbd ]] || missing+=(qemu-utils)
      [[ -x /usr/bin/nbdkit ]] || missing+=(nbdkit)
      command -v openssl >/dev/null 2>&1 || missing+=(openssl) ;;
    metrics)
      [[ -x /usr/bin/promtool ]] || missing+=(prometheus) ;;
    net)
      command -v ip >/dev/null 2>&1 || missing+=(iproute2)
      command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
      command -v ethtool >/dev/null 2>&1 || [[ -x /usr/sbin/ethtool ]] || missing+=(ethtool) ;;
    bench)
      [[ -x /usr/bin/dpdk-testpmd ]] || missing+=(dpdk dpdk-dev)
      [[ -x /usr/bin/qemu-storage-daemon ]] || missing+=(qemu-system-common)
      have_package qemu-block-extra || missing+=(qemu-block-extra) # qsd's driver=rbd
      [[ -x /usr/bin/taskset ]] || missing+=(util-linux) ;;
  esac
  echo "${missing[*]}"
}

purpose_of() {
  case "$1" in
    build) echo "building jvhost" ;;
    guest) echo "the QEMU guest tests and ./jvhost demo" ;;
    dpdk) echo "the DPDK tests" ;;
    ceph) echo "the Ceph RBD tests" ;;
    nbd) echo "the NBD store tests" ;;
    net) echo "the TAP and offload tests" ;;
    bench) echo "./jvhost bench" ;;
  esac
}

apt_updated=false
apt_install() {
  if [[ $apt_updated == false ]]; then
    log "apt-get update"
    as_root apt-get update -q </dev/null >&2
    apt_updated=true
  fi
  log "apt-get install -y --no-install-recommends $*"
  as_root apt-get install -y -q --no-install-recommends "$@" </dev/null >&2
}

# --- packages ---------------------------------------------------------------------------------
wanted=() # every package some group lacks, once
declare -A lacking=()
for g in "${groups[@]}"; do
  [[ $g == jdk ]] && continue
  m=$(missing_of "$g")
  [[ -z "$m" ]] && continue
  lacking[$g]=$m
  for p in $m; do
    [[ " ${wanted[*]} " == *" $p "* ]] || wanted+=("$p")
  done
done

status=0
if [[ ${#wanted[@]} -gt 0 ]]; then
  if [[ $can_root == true ]]; then
    apt_install "${wanted[@]}" || log "apt-get install failed"
    for g in "${!lacking[@]}"; do
      m=$(missing_of "$g")
      if [[ -n "$m" ]]; then
        log "still missing after apt-get install, for $(purpose_of "$g"): $m"
        status=3
      fi
    done
  else
    for g in "${!lacking[@]}"; do
      log "$(purpose_of "$g") need: ${lacking[$g]}; $([[ $require == true ]] && echo "cannot go on" || echo "they will be skipped")"
    done
    log "install as root: apt-get update && apt-get install -y --no-install-recommends ${wanted[*]}"
    status=3
  fi
fi

# --- JDK --------------------------------------------------------------------------------------
if [[ " ${groups[*]} " == *" jdk "* ]] && ! have_jdk; then
  if [[ $can_root == true ]]; then
    log "no JDK >= $MIN_JAVA under JAVA_HOME or /usr/lib/jvm; looking for one in apt"
    [[ $apt_updated == true ]] || { as_root apt-get update -q </dev/null >&2; apt_updated=true; }
    for package in openjdk-25-jdk-headless temurin-25-jdk openjdk-24-jdk-headless openjdk-23-jdk-headless \
        openjdk-22-jdk-headless; do
      if [[ -n $(apt-cache policy "$package" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)') ]]; then
        apt_install "$package"
        break
      fi
    done
  fi
  if ! have_jdk; then
    log "no JDK >= $MIN_JAVA: install a Temurin 25 JDK (https://adoptium.net/installation/linux/, package temurin-25-jdk)" \
      "or openjdk-25-jdk-headless, or set JAVA_HOME to a JDK >= $MIN_JAVA"
    status=3
  fi
fi

# --- hugepages (DPDK) -------------------------------------------------------------------------
if [[ " ${groups[*]} " == *" dpdk "* || " ${groups[*]} " == *" bench "* ]]; then
  pages=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
  if [[ $pages -lt $HUGEPAGES ]]; then
    if [[ $can_root == true || $(id -u) -eq 0 ]]; then
      log "reserving $HUGEPAGES hugepages (vm.nr_hugepages was $pages)"
      echo "$HUGEPAGES" | as_root tee /proc/sys/vm/nr_hugepages >/dev/null 2>&1 || log "cannot write /proc/sys/vm/nr_hugepages"
      pages=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
      [[ $pages -ge $HUGEPAGES ]] || log "only $pages of $HUGEPAGES hugepages reserved; the DPDK tests may skip or fail"
    else
      log "the DPDK tests need hugepages; as root: echo $HUGEPAGES > /proc/sys/vm/nr_hugepages"
    fi
  fi
  if ! mountpoint -q /dev/hugepages 2>/dev/null; then
    if [[ $can_root == true || $(id -u) -eq 0 ]]; then
      log "mounting hugetlbfs on /dev/hugepages"
      { as_root mkdir -p /dev/hugepages && as_root mount -t hugetlbfs nodev /dev/hugepages; } 2>/dev/null \
        || log "cannot mount hugetlbfs on /dev/hugepages; the DPDK tests may skip or fail"
    else
      log "the DPDK tests need hugetlbfs; as root: mkdir -p /dev/hugepages; mount -t hugetlbfs nodev /dev/hugepages"
    fi
  fi
fi

if [[ $require == true ]]; then
  exit "$status"
fi
exit 0

#!/usr/bin/env bash
# Builds SPDK's vhost target for `./jvhost bench blk --targets jvhost-null,spdk-null --spdk DIR`.
#
#   scripts/build-spdk.sh DIR   build SPDK in DIR; prints the path of DIR/build/bin/vhost
#
# DIR holds SPDK's source with its dpdk submodule; when DIR does not exist the script clones it:
#   git clone --branch v24.01 --recurse-submodules https://github.com/spdk/spdk DIR
# SPDK is not packaged for Debian. v24.01 is its LTS of the year that Debian 12's DPDK (22.11) came
# from; it is built on its own DPDK submodule (23.11), as SPDK users build it, because SPDK 24.01
# refuses DPDK 22.11 minor releases past 22.11.4 and Debian ships 22.11.11. Only what a vhost-user-blk
# target on a null bdev needs is built: no tests, examples, crypto, RDMA, io_uring, OCF or FUSE.
# ISA-L (SPDK's software CRC and compression) is built when nasm >= 2.14 is installed and its
# submodule is there; without nasm SPDK turns it off itself, which the vhost target does not use.
# Installs the Debian packages it needs (libaio-dev uuid-dev libssl-dev libnuma-dev libncurses-dev
# meson ninja-build python3-pyelftools) when run as root. Takes 2-3 minutes on 2 CPUs.
set -euo pipefail

say() { printf 'build-spdk: %s\n' "$*" >&2; }
die() { printf 'build-spdk: ERROR: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 1 ]] || { sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
DIR=$1

PACKAGES=(libaio-dev uuid-dev libssl-dev libnuma-dev libncurses-dev meson ninja-build python3-pyelftools git make gcc)
lacking=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || lacking+=("$p")
done
if ((${#lacking[@]})); then
  [[ $(id -u) -eq 0 ]] || die "needs the packages ${lacking[*]} (apt-get install ${lacking[*]})"
  say "installing ${lacking[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${lacking[@]}" >/dev/null
fi

if [[ ! -e $DIR ]]; then
  say "cloning SPDK v24.01 into $DIR"
  git clone -q --branch v24.01 --recurse-submodules https://github.com/spdk/spdk "$DIR" \
    || die "could not clone SPDK; give a DIR that holds its source (with the dpdk submodule)"
fi
cd "$DIR"
[[ -x configure && -f include/spdk/version.h ]] || die "$DIR is not an SPDK source tree"
[[ -f dpdk/meson.build ]] || die "$DIR/dpdk is empty: git submodule update --init dpdk"
if [[ ! -f isa-l/autogen.sh ]]; then
  # SPDK's configure insists on the submodule before it checks for nasm; without nasm it then
  # turns ISA-L off, so an empty placeholder is all it reads.
  command -v nasm >/dev/null && die "$DIR/isa-l is empty: git submodule update --init isa-l"
  mkdir -p isa-l && : > isa-l/autogen.sh
fi

say "configuring"
./configure --without-crypto --disable-tests --disable-unit-tests --disable-examples --without-idxd \
  --without-vfio-user --without-xnvme --without-rdma --without-ocf --without-fuse --without-nvme-cuse \
  --without-usdt --without-sma --without-iscsi-initiator --without-uring --without-fio >configure.log 2>&1 \
  || { tail -20 configure.log >&2; die "configure failed (all of it in $DIR/configure.log)"; }
say "building (make -j$(nproc); log in $DIR/build.log)"
make -j"$(nproc)" >build.log 2>&1 || { tail -30 build.log >&2; die "make failed (all of it in $DIR/build.log)"; }
[[ -x build/bin/vhost ]] || die "make finished without build/bin/vhost"
printf '%s\n' "$PWD/build/bin/vhost"

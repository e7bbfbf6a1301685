#!/usr/bin/env bash
# A QEMU 7.2 VM with a jvhost virtio-net NIC. Start the backend first, e.g.
#   ./jvhost net --socket /tmp/jvhost-net0.sock --socket /tmp/jvhost-net1.sock --switch
# then, for each VM:
#   qemu-configs/net-qemu.sh /tmp/jvhost-net0.sock 52:54:00:00:00:01 1 -kernel ... -nographic
# Arguments: SOCKET MAC QUEUE_PAIRS [more QEMU arguments]. vhost-user needs the guest's RAM
# shared: memory-backend-memfd, share=on, bound through a NUMA node. vectors=0 because QEMU 7.2
# under TCG crashes when a vhost-user-net NIC has MSI-X vectors (harmless with KVM; drop it on
# QEMU >= 8 or with KVM to get MSI-X). With several queue pairs give the VM as many vCPUs.
# PACKED=on gives the NIC packed virtqueues (virtio 1.1+, VIRTIO_F_RING_PACKED), which jvhost
# offers for every device; the guest reports bit 34 in /sys/bus/virtio/devices/*/features.
# With --device-args SOCKET MAC QUEUE_PAIRS [MTU] it only prints the NIC's QEMU arguments, one per
# line (the end-to-end tests boot their guests with exactly these). MTU (or HOST_MTU=N for the VM)
# sets host_mtu: QEMU 7.2 tells a vhost-user NIC's guest its MTU only so, never from the backend;
# with `jvhost net --vxlan-remote` give the MTU jvhost prints (1450 on a 1500-byte IPv4 underlay).
set -euo pipefail
device_args() {
  local mq=off mtu=""
  [[ $3 -gt 1 ]] && mq=on
  [[ -n "${4:-}" ]] && mtu=",host_mtu=$4"
  printf '%s\n' -chardev "socket,id=jvhost-net0,path=$1" \
    -netdev "vhost-user,id=jvhost-net0,chardev=jvhost-net0,queues=$3" \
    -device "virtio-net-pci,netdev=jvhost-net0,mac=$2,mq=$mq,vectors=0$mtu${PACKED:+,packed=$PACKED}"
}
if [[ "${1:-}" == --device-args ]]; then
  device_args "$2" "$3" "$4" "${5:-}"
  exit 0
fi
SOCKET=${1:?usage: net-qemu.sh SOCKET MAC QUEUE_PAIRS [qemu args...]}
MAC=${2:?usage: net-qemu.sh SOCKET MAC QUEUE_PAIRS [qemu args...]}
PAIRS=${3:?usage: net-qemu.sh SOCKET MAC QUEUE_PAIRS [qemu args...]}
shift 3
MEM=${MEM:-1G}
mapfile -t nic < <(device_args "$SOCKET" "$MAC" "$PAIRS" "${HOST_MTU:-}")
exec qemu-system-x86_64 -accel kvm -accel tcg -machine q35 -m "$MEM" -smp "$PAIRS" \
  -object memory-backend-memfd,id=mem,size="$MEM",share=on -numa node,memdev=mem \
  "${nic[@]}" "$@"

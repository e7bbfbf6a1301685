#!/usr/bin/env bash
# A QEMU 7.2 VM with a jvhost virtio-blk disk. Start the backend first, e.g.
#   ./jvhost blk --socket /tmp/jvhost-blk.sock --file disk.img --queues 4
# then:
#   qemu-configs/blk-qemu.sh /tmp/jvhost-blk.sock 4 -kernel ... -append 'root=/dev/vda console=ttyS0' -nographic
# Arguments: SOCKET QUEUES [more QEMU arguments]. Use as many vCPUs as queues (the guest driver
# uses min(queues, vCPUs)). vhost-user needs the guest's RAM shared: memory-backend-memfd,
# share=on, bound through a NUMA node. QEMU tries KVM first and falls back to TCG.
# PACKED=on gives the disk packed virtqueues (virtio 1.1+, VIRTIO_F_RING_PACKED), which jvhost
# offers for every device; the guest reports bit 34 in /sys/bus/virtio/devices/*/features.
# With --device-args SOCKET QUEUES it only prints the disk's QEMU arguments, one per line (the
# end-to-end test boots a guest with exactly these).
set -euo pipefail
device_args() {
  printf '%s\n' -chardev "socket,id=jvhost-blk0,path=$1" \
    -device "vhost-user-blk-pci,chardev=jvhost-blk0,num-queues=$2${PACKED:+,packed=$PACKED}"
}
if [[ "${1:-}" == --device-args ]]; then
  device_args "$2" "$3"
  exit 0
fi
SOCKET=${1:?usage: blk-qemu.sh SOCKET QUEUES [qemu args...]}
QUEUES=${2:?usage: blk-qemu.sh SOCKET QUEUES [qemu args...]}
shift 2
MEM=${MEM:-1G}
mapfile -t disk < <(device_args "$SOCKET" "$QUEUES")
exec qemu-system-x86_64 -accel kvm -accel tcg -machine q35 -m "$MEM" -smp "$QUEUES" \
  -object memory-backend-memfd,id=mem,size="$MEM",share=on -numa node,memdev=mem \
  "${disk[@]}" "$@"

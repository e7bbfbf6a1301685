#!/usr/bin/env bash
# A QEMU 7.2 VM with a jvhost virtio-rng device. Start the backend first:
#   ./jvhost rng --socket /tmp/jvhost-rng.sock
# then:
#   qemu-configs/rng-qemu.sh /tmp/jvhost-rng.sock -kernel ... -append console=ttyS0 -nographic
# vhost-user needs the guest's RAM shared with the backend: memory-backend-memfd with share=on,
# bound to the VM through a NUMA node. QEMU tries KVM first and falls back to TCG.
# PACKED=on gives the device a packed virtqueue (virtio 1.1+, VIRTIO_F_RING_PACKED), which jvhost
# offers for every device; the guest reports bit 34 in /sys/bus/virtio/devices/*/features.
# With --device-args SOCKET it only prints the device's QEMU arguments, one per line (the
# end-to-end test boots a guest with exactly these).
set -euo pipefail
device_args() {
  printf '%s\n' -chardev "socket,id=jvhost-rng0,path=$1" \
    -device "vhost-user-rng-pci,chardev=jvhost-rng0${PACKED:+,packed=$PACKED}"
}
if [[ "${1:-}" == --device-args ]]; then
  device_args "$2"
  exit 0
fi
SOCKET=${1:?usage: rng-qemu.sh SOCKET [qemu args...]}
shift
MEM=${MEM:-1G}
mapfile -t rng < <(device_args "$SOCKET")
exec qemu-system-x86_64 -accel kvm -accel tcg -machine q35 -m "$MEM" \
  -object memory-backend-memfd,id=mem,size="$MEM",share=on -numa node,memdev=mem \
  "${rng[@]}" "$@"

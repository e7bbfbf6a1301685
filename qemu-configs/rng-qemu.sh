#!/usr/bin/env bash
# A QEMU 7.2 VM with a jvhost virtio-rng device. Start the backend first:
#   ./jvhost rng --socket /tmp/jvhost-rng.sock
# then run this script with your kernel/disk options appended, e.g.
#   qemu-configs/rng-qemu.sh -kernel /boot/vmlinuz-$(uname -r) -append console=ttyS0 -nographic
# vhost-user needs the guest's RAM shared with the backend: memory-backend-memfd with share=on,
# bound to the VM through a NUMA node. QEMU tries KVM first and falls back to TCG.
set -euo pipefail
SOCKET=${JVHOST_RNG_SOCKET:-/tmp/jvhost-rng.sock}
MEM=${MEM:-1G}
exec qemu-system-x86_64 -accel kvm -accel tcg -machine q35 -m "$MEM" \
  -object memory-backend-memfd,id=mem,size="$MEM",share=on -numa node,memdev=mem \
  -chardev socket,id=rng0,path="$SOCKET" \
  -device vhost-user-rng-pci,chardev=rng0 \
  "$@"

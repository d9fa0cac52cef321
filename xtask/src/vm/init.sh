#!/bin/busybox sh
# Stage 1 of a Shadow guest (the initramfs that `cargo xtask vm` builds):
# load the modules that mount the host's root over 9p, put a tmpfs overlay
# on it and switch into it, where stage 2 (named on the kernel command
# line) sets the guest up and runs the command.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /ro /rw /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do
    insmod "/modules/$m" || echo "shadow-vm: insmod $m failed"
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 root /ro \
    || echo "shadow-vm: cannot mount the host's root over 9p"
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/ro,upperdir=/rw/upper,workdir=/rw/work /newroot \
    || echo "shadow-vm: cannot mount the overlay"
stage2=$(sed -n 's/.*shadow\.stage2=\([^ ]*\).*/\1/p' /proc/cmdline)
umount /sys /proc
mount --move /dev /newroot/dev
exec switch_root /newroot "$stage2"

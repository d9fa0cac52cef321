#!/bin/sh
# Stage 2 of a Shadow guest, PID 1 in the host's root (read-only 9p under
# a tmpfs overlay, so writes stay in the guest's memory): pure cgroup v2
# with cpu, memory, io and pids delegated, tracefs and bpffs for the agent,
# the guest kernel's modules (loop for the block tests), a scratch ext4
# disk as /tmp (tests need page cache that can be reclaimed, which tmpfs
# is not, and a real block device), then the command
# that `cargo xtask vm` wrote to the job folder. Its exit status goes back
# through that folder; then the guest powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "+cpu +memory +io +pids" > /sys/fs/cgroup/cgroup.subtree_control
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t tmpfs tmpfs /run
mkdir -p /dev/shm && mount -t tmpfs tmpfs /dev/shm
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mkdir -p /job /lib/modules
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 job /job
mount --bind "$(cat /job/modules)" /lib/modules
modprobe loop
modprobe virtio_blk
mkfs.ext4 -q -F /dev/vda && mount /dev/vda /tmp && chmod 1777 /tmp
hostname shadow-guest
ip link set lo up
sh /job/command.sh </dev/null >/dev/console 2>&1
echo $? > /job/status
sync
echo o > /proc/sysrq-trigger
sleep 30

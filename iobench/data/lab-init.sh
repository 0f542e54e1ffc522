#!/bin/busybox sh
# iobench lab (L1) init: load KVM, vhost-net and 9p, mount the host's root read-only
# and the lab directory writable at the same path, then run the job in a chroot.
# Kernel command line: iobench.labdir=<absolute host path of the lab directory>
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -n 1; }
fail() { echo "IOBENCH-ERROR lab: $*"; poweroff -f; }
LABDIR=$(arg iobench.labdir)
[ -n "$LABDIR" ] || fail "no iobench.labdir on the kernel command line"

# KVM takes the TSC rate the kernel has when KVM loads as the machine's. Under TCG the early
# calibration against the PIT can fail when the host is busy and land off (measured: "Unable to
# calibrate against PIT", 2594.4 MHz where the refinement a second later found 2596.1). The refinement
# corrects the kernel's rate but not KVM's: every nested guest then asks for a TSC rate "below
# hardware speed" and its timer never fires (soft lockups, never READY). So KVM loads only after the
# refinement (or after 10 s, said on the console).
i=0
while ! dmesg | grep -q -E 'Refined TSC clocksource calibration|Marking TSC unstable' && [ $i -lt 100 ]; do
  sleep 0.1; i=$((i+1))
done
[ $i -lt 100 ] || echo "IOBENCH-INFO lab: no TSC refinement after 10 s; loading KVM anyway"
for m in $(cat /etc/iobench/modules.order); do
  insmod "/lib/modules/$m.ko" || echo "IOBENCH-INFO lab: insmod $m failed"
done
ip link set lo up
# A/B hook (IOBENCH_LAB_L1_ARGS on the host): KVM's halt polling in L1, writable at run time.
POLL_NS=$(arg iobench.halt_poll_ns)
[ -n "$POLL_NS" ] && echo "$POLL_NS" > /sys/module/kvm/parameters/halt_poll_ns

# L1's root for the job: a tmpfs holding only what the host shares (iobench/labexports.py): each
# share read-only at its own path, the host's top-level links into /usr, copies of a few /etc files.
# Nothing else of the host is there: no /root, /home or /etc of its own.
# The read-only shares use L1's page cache (cache=loose): with 9p's default (no cache) every page an
# L2 QEMU maps — its binary and libraries, the 60 MB guest kernel and the 19 MB initramfs — is one
# 4 KiB round trip to the host per boot, and a boot in the lab took 11-16 s, 6 s of them in QEMU's
# start (measured 2026-12-07: start with -kernel/-initrd 5.6-6.4 s uncached, 0.7-0.9 s cached).
# Nothing the host shares read-only changes during a run (the image cache is content-addressed);
# the lab directory, which both sides write, stays uncached.
mkdir -p /lab /host
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 labdir /lab || fail "cannot mount the lab directory (9p)"
[ -f /lab/exports.txt ] || fail "no exports.txt in the lab directory"
mount -t tmpfs -o mode=755 tmpfs /host
while read -r kind a b; do
  case "$kind" in
    share) mkdir -p "/host$b"
           mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 "$a" "/host$b" || fail "cannot mount the share of $b (9p $a)" ;;
    link) ln -s "$b" "/host/$a" ;;
  esac
done < /lab/exports.txt
mkdir -p /host/etc /host/proc /host/sys /host/dev /host/run /host/tmp /host/var/tmp "/host$LABDIR"
ln -s ../run /host/var/run
cp -a /lab/etc/. /host/etc/ 2>/dev/null
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t tracefs tracefs /host/sys/kernel/tracing 2>/dev/null
mount --bind /dev /host/dev
# /run and /tmp are L1's own (netns mounts, the job's TMPDIR).
mount -t tmpfs -o mode=755 tmpfs /host/run
mkdir -p /host/run/iobench-tmp
chmod 1777 /host/tmp
mount --bind /lab "/host$LABDIR" || fail "cannot mount the lab directory at $LABDIR"

KVM=no; [ -c /dev/kvm ] && KVM=yes
VHOST=no; [ -c /dev/vhost-net ] && VHOST=yes
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
CS=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)
POLL=$(cat /sys/module/kvm/parameters/halt_poll_ns 2>/dev/null)
TSC0=$(dmesg | sed -n 's/.*tsc: Detected \([0-9.]*\) MHz.*/\1/p' | head -n 1)
TSC1=$(dmesg | sed -n 's/.*Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p' | head -n 1)
echo "IOBENCH-INFO lab kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) kvm=$KVM vhost_net=$VHOST clocksource=$CS halt_poll_ns=$POLL tsc_mhz=${TSC0:-?}/${TSC1:-?} cpu=$CPU"
# L1's own choices, for a stall to be explained from raw/lab: its clock and KVM's parameters.
dmesg | grep -i -E 'tsc|clocksource|kvm|svm' | head -n 30 | sed 's/^/IOBENCH-BOOTLOG lab /'
for f in /sys/module/kvm/parameters/* /sys/module/kvm_amd/parameters/*; do
  echo "IOBENCH-BOOTLOG lab param $f=$(cat "$f" 2>/dev/null)"
done
echo "IOBENCH-READY"
[ -f "/host$LABDIR/job.sh" ] || fail "no job.sh in the lab directory"
chroot /host /bin/sh "$LABDIR/job.sh" </dev/null >/dev/console 2>&1
echo "IOBENCH-LAB-DONE status=$?"
sync
poweroff -f

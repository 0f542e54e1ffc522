#!/bin/busybox sh
# iobench guest init: the whole userspace of the benchmark guest.
# Kernel command line: iobench.addr=<cidr> iobench.modules=<m1,m2,...>
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /tmp && mount -t tmpfs tmpfs /tmp

arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -n 1; }
ADDR=$(arg iobench.addr)
for m in $(cat /etc/iobench/modules.order); do
  insmod "/lib/modules/$m.ko" || echo "IOBENCH-ERROR insmod $m failed"
done

if [ "$(arg iobench.probe)" = 1 ]; then
  # The accelerator probe only asks whether the guest reaches userspace.
  echo "IOBENCH-READY probe"
  poweroff -f
fi

i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
if [ ! -e /sys/class/net/eth0 ]; then
  echo "IOBENCH-ERROR no eth0: the NIC driver did not bind"
  poweroff -f
fi
ip link set lo up
ip addr add "$ADDR" dev eth0
ip link set eth0 up
if [ "$(arg iobench.offloads)" = off ]; then
  # Every offload the driver lets go of: segmentation, receive coalescing, checksums, scatter-gather.
  ethtool -K eth0 tso off gso off gro off tx off rx off sg off 2>/dev/null
  echo "IOBENCH-INFO offloads off: $(ethtool -k eth0 | grep -E '^(tcp-segmentation-offload|generic-receive-offload|tx-checksumming):' | tr '\n' ' ')"
fi
# A backend variant's guest side (iobench.sysctl=key:value,... iobench.ethtool=option:key:value,...):
# each setting is applied and its outcome printed, so that one the driver refuses is flagged, not
# silently measured as if it had been taken.
for kv in $(arg iobench.sysctl | tr ',' ' '); do
  k=${kv%%:*}; v=${kv#*:}
  if echo "$v" 2>/tmp/knob.err >"/proc/sys/$(echo "$k" | tr . /)"; then r=ok; else r="failed: $(head -c 160 /tmp/knob.err | tr '\n;' '  ')"; fi
  echo "IOBENCH-INFO knob sysctl $k=$v: $r"
done
for item in $(arg iobench.ethtool | tr ',' ' '); do
  opt=${item%%:*}; rest=${item#*:}; k=${rest%%:*}; v=${rest#*:}
  if ethtool -"$opt" eth0 "$k" "$v" >/tmp/knob.err 2>&1; then r=ok; else r="failed: $(head -c 160 /tmp/knob.err | tr '\n;' '  ')"; fi
  echo "IOBENCH-INFO knob ethtool -$opt $k $v: $r"
done
if [ "$(arg iobench.qstats)" = 1 ]; then
  # Multiqueue: the driver's per-queue packet counters once a second, to show which queues carry traffic.
  ( while :; do echo "IOBENCH-QSTATS $(ethtool -S eth0 | grep -E '^ +[rt]x_queue_[0-9]+_packets:' | tr -d ' ' | tr '\n' ',')"; sleep 1; done ) &
fi
# One long-lived server serves the cells one after another; restarted if it dies.
( while :; do iperf3 -s >/dev/null 2>>/tmp/iperf3.err; echo "IOBENCH-ERROR iperf3 server exited"; sleep 0.2; done ) &
# Request/response (rr workloads): sockperf servers on 11111, TCP and UDP, restarted if they die.
( while :; do sockperf server -p 11111 --tcp >/dev/null 2>>/tmp/sockperf.err; echo "IOBENCH-ERROR sockperf tcp server exited"; sleep 0.2; done ) &
( while :; do sockperf server -p 11111 >/dev/null 2>>/tmp/sockperf.err; echo "IOBENCH-ERROR sockperf udp server exited"; sleep 0.2; done ) &
# READY only once iperf3 listens on 5201 (0x1451, state 0A in /proc/net/tcp) and sockperf on 11111 (0x2B67).
i=0
while ! { grep -q ':1451 00000000:0000 0A' /proc/net/tcp && grep -q ':2B67 00000000:0000 0A' /proc/net/tcp \
          && grep -q ':2B67 ' /proc/net/udp; } && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
echo "IOBENCH-INFO kernel=$(uname -r) driver=$(basename "$(readlink /sys/class/net/eth0/device/driver)") addr=$ADDR"
# What this boot chose that can set a mode for its whole life (a bimodal cell is explained from raw/):
# the clocksource and whether the TSC was distrusted, the NIC's interrupt coalescing, and the
# kernel's own lines about clocks, APIC and the NIC driver.
CS=/sys/devices/system/clocksource/clocksource0
echo "IOBENCH-INFO clock clocksource=$(cat $CS/current_clocksource) available=$(tr ' ' ',' <$CS/available_clocksource | tr -d '\n') tsc_unstable=$(dmesg | grep -c -i 'tsc.*unstable')"
# (QEMU's e1000 is an 82540EM: its driver refuses to report coalescing below the 82545, and says so.)
CO=$(ethtool -c eth0 2>&1 | grep -E '^(Adaptive RX|rx-usecs|rx-frames|tx-usecs|tx-frames):' | tr -s ' \t' ' ' | tr '\n' ' ')
[ -n "$CO" ] || CO="unreadable: $(ethtool -c eth0 2>&1 | head -n 1)"
echo "IOBENCH-INFO coalesce $CO"
dmesg | grep -i -E 'tsc|clocksource|clock:|apic|e1000|virtio|kvm' | head -n 40 | sed 's/^/IOBENCH-BOOTLOG /'
# What the NIC negotiated, so that a backend variant whose knob did not take effect is flagged, not
# measured as if it had: virtio's feature bits as the driver accepted them (one 0/1 per bit), the
# queues in use, the rings' current sizes and the offloads that are on.
FEAT=$(cat /sys/class/net/eth0/device/features 2>/dev/null)
RINGS=$(ethtool -g eth0 2>/dev/null | sed -n '/^Current/,$p' | grep -E '^(RX|TX):' | tr -d ' \t' | tr '\n' ',')
OFFL=$(ethtool -k eth0 2>/dev/null | grep -E ': on' | grep -v fixed | cut -d: -f1 | tr '\n' ',')
echo "IOBENCH-INFO nic features=${FEAT:-none} rxqueues=$(ls -d /sys/class/net/eth0/queues/rx-* | wc -l) txqueues=$(ls -d /sys/class/net/eth0/queues/tx-* | wc -l) rings=${RINGS:-unreadable} offloads=${OFFL:-none}"
echo "IOBENCH-READY"
while :; do sleep 3600; done

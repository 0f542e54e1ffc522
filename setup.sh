#!/usr/bin/env bash
# Set up iobench on a fresh Debian/Ubuntu machine, as root: system packages + a venv in .venv.
# Idempotent: a second run only checks. Used by the README's two commands and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (iobench creates network namespaces and taps, and installs packages)." >&2
  exit 2
fi

# make and gcc build the copy-trace kernel module (--copy-trace; the lab test uses it).
# sockperf is the request/response client on the host (--workload rr; the guest gets its own copy).
# dpdk-dev has dpdk-testpmd, the vhost-user backend's switch; its vhost, tap and mempool plugins are packages
# of their own (iobench.switch).
# openvswitch-switch has the OVS daemons the ovs topologies start privately per run (iobench.ovs); its own
# service is neither started nor enabled here (a policy-rc.d for the install, the unit disabled after).
SYSTEM_PACKAGES=(qemu-system-x86 iperf3 sockperf busybox-static cpio python3 python3-venv python3-pip make gcc
                 dpdk-dev librte-net-vhost23 librte-net-tap23 librte-mempool-ring23 openvswitch-switch)
missing=()
for p in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# apt-get update also feeds the guest image builder (apt-cache show / apt-get download).
lists=$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' 2>/dev/null | head -n 1)
if [ "${#missing[@]}" -gt 0 ] || [ -z "$lists" ]; then
  echo "setup.sh: apt-get update" >&2
  apt-get update -q >/dev/null
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}" >&2
  # policy-rc.d 101: no service a package brings is started during the install (Open vSwitch's above all)
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT  # removed even if the install fails
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable -q openvswitch-switch.service 2>/dev/null || true
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.iobench-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup.sh: installing iobench and its Python dependencies into .venv" >&2
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]' tox
  touch "$stamp"
fi

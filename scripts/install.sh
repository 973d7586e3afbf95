#!/usr/bin/env bash
# Installs everything vmsniff, its lab and its tests need on a new Debian 12 machine (as root).
# Safe to re-run: apt and pip skip what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  openvswitch-switch   # ovsdb-server, ovs-vswitchd, ovs-vsctl for the lab (userspace datapath)
  ovn-central ovn-host # `lab up --ovn`: NB/SB schemas, ovn-northd, ovn-controller (start nothing)
  libvirt-dev libvirt0 pkg-config   # libvirt-python compiles against these
  libpcap-dev          # pcapy-ng (libpcap filters)
  tcpdump tshark       # tests read every written capture back with them
  openvswitch-testcontroller   # a real OpenFlow controller for the snoop tests
  iproute2 procps      # ip netns exec for the lab's daemons; ps for tests
  gcc                  # building libvirt-python
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# compat mode: a plain path in a .pth file; the default editable finder costs ~15 ms at
# every start of the interpreter (measured with -X importtime), a tenth of `vmsniff --help`.
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' \
  --config-settings editable_mode=compat 2>&1 \
  | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import vmsniff, click, rich, openstack, libvirt, ovsdbapp, scapy, pcapy, pyroute2" 

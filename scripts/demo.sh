#!/usr/bin/env bash
# Installs what vmsniff needs, then shows it on the built-in lab (as root): a sandbox
# hypervisor with real Open vSwitch in network namespaces, a stand-in OpenStack API and a
# GRE receiver. Resolves a VM, mirrors it to the receiver, writes a pcapng there, captures it
# locally on its tap, cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
PREFIX=${VMSNIFF_DEMO_PREFIX:-vmsniff-demo}
OUT=$(mktemp -d /tmp/vmsniff-demo.XXXXXX)
trap 'vmsniff lab down --prefix "$PREFIX"; rm -rf "$OUT"' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step vmsniff lab up --prefix "$PREFIX"
eval "$(vmsniff lab env --prefix "$PREFIX")"
step vmsniff lab status --prefix "$PREFIX"
step vmsniff resolve c-private                       # through the stand-in Nova/Neutron
step vmsniff resolve c-native --offline              # libvirt + OVSDB only

# The receiving node: vmsniff receive inside the receiver namespace, for 8 seconds.
RX=$(vmsniff lab status --prefix "$PREFIX" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["receiver"]["namespace"])')
printf '\n\033[1m$ ip netns exec %s vmsniff receive -i eth0 --key 424242 --direction both --strip-vlan 1 -w %s/vm.pcapng --duration 8 &\033[0m\n' "$RX" "$OUT"
ip netns exec "$RX" "$PWD/.venv/bin/vmsniff" receive -i eth0 --key 424242 --direction both \
  --strip-vlan 1 -w "$OUT/vm.pcapng" --duration 8 &
RECEIVER=$!
sleep 1
# The hypervisor: mirror c-private to the receiver for 5 seconds while the VMs talk.
printf '\n\033[1m$ vmsniff mirror c-private --to 10.250.0.2 --key 424242 --duration 5 &\033[0m\n'
vmsniff mirror c-private --to 10.250.0.2 --key 424242 --duration 5 --reason demo &
MIRROR=$!
sleep 1.5
step vmsniff list --ovsdb "$VMSNIFF_OVSDB"
step vmsniff lab traffic --prefix "$PREFIX" --count 3
wait "$MIRROR" "$RECEIVER"
step tshark -r "$OUT/vm.pcapng" -T fields -e frame.interface_name -e frame.packet_flags_direction \
  -e frame.len -e _ws.col.Info
# On the hypervisor itself (the lab's hypervisor namespace, where the taps are): capture
# c-private's tap, ICMP only, filtered in the kernel. It asks the stand-in cloud over the
# lab's management network, as a compute node asks its cloud's API.
HV=$(vmsniff lab status --prefix "$PREFIX" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["hypervisor"]["namespace"])')
printf '\n\033[1m$ ip netns exec %s vmsniff capture c-private -w %s/local.pcapng --duration 4 icmp &\033[0m\n' "$HV" "$OUT"
ip netns exec "$HV" "$PWD/.venv/bin/vmsniff" capture c-private \
  -w "$OUT/local.pcapng" --duration 4 icmp &
CAPTURE=$!
sleep 2
step vmsniff lab traffic --prefix "$PREFIX" --count 2
wait "$CAPTURE"
step tshark -r "$OUT/local.pcapng" -T fields -e frame.interface_name \
  -e frame.packet_flags_direction -e frame.len -e _ws.col.Info
step vmsniff list --ovsdb "$VMSNIFF_OVSDB"             # the mirror removed itself
step vmsniff cleanup --all --ovsdb "$VMSNIFF_OVSDB"    # nothing of vmsniff's is left
step vmsniff lab down --prefix "$PREFIX"
trap 'rm -rf "$OUT"' EXIT

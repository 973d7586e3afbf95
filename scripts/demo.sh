#!/usr/bin/env bash
# Installs what vmsniff needs, then shows it on the built-in lab (as root): a sandbox
# hypervisor with real Open vSwitch in network namespaces. Removes the lab at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
PREFIX=${VMSNIFF_DEMO_PREFIX:-vmsniff-demo}
trap 'vmsniff lab down --prefix "$PREFIX"' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step vmsniff lab up --prefix "$PREFIX"
eval "$(vmsniff lab env --prefix "$PREFIX")"
step vmsniff lab status --prefix "$PREFIX"
step env OVS_RUNDIR="/run/$PREFIX" ovs-vsctl --db="$VMSNIFF_OVSDB" show
step vmsniff lab traffic --prefix "$PREFIX" --count 5
step vmsniff lab down --prefix "$PREFIX"
trap - EXIT

#!/usr/bin/env bash
# Set up pyfw and show it working: load the bundled home-gateway ruleset into
# a ruleset file and list it, with counters, as iptables would.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rules=rulesets/home-gateway.rules
echo "# pyfw-restore --file $work/fw.rules $rules"
.venv/bin/pyfw-restore --file "$work/fw.rules" "$rules"
echo "# pyfw --file $work/fw.rules -A INPUT -p tcp --dport 22 -j ACCEPT"
.venv/bin/pyfw --file "$work/fw.rules" -A INPUT -p tcp --dport 22 -j ACCEPT
for t in filter nat; do
  echo "# pyfw --file $work/fw.rules -t $t -L -n -v --line-numbers"
  .venv/bin/pyfw --file "$work/fw.rules" -t $t -L -n -v --line-numbers
done
echo "# pyfw-save --file $work/fw.rules -c"
.venv/bin/pyfw-save --file "$work/fw.rules" -c

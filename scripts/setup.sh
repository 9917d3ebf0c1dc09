#!/usr/bin/env bash
# Set up pyfw in ./.venv (idempotent, non-interactive).  With --test, also the
# packages the test suite needs: iptables-legacy and friends for the kernel
# oracle, and the dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

export DEBIAN_FRONTEND=noninteractive
apt_pkgs=()
if ! command -v python3 >/dev/null 2>&1; then apt_pkgs+=(python3); fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then apt_pkgs+=(python3-venv python3-pip); fi
if [ "$want_test" = 1 ] || [ "${PYFW_SETUP_APT:-0}" = 1 ]; then
  for cmd_pkg in iptables-legacy:iptables conntrack:conntrack tcpdump:tcpdump curl:curl ping:iputils-ping ip:iproute2 ethtool:ethtool nc:netcat-openbsd; do
    cmd=${cmd_pkg%%:*}; pkg=${cmd_pkg##*:}
    command -v "$cmd" >/dev/null 2>&1 || apt_pkgs+=("$pkg")
  done
  [ -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || apt_pkgs+=(libnetfilter-queue-dev)
  command -v gcc >/dev/null 2>&1 || apt_pkgs+=(gcc)
  python3 -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || apt_pkgs+=(python3-dev)
fi
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
  else
    echo "setup: missing packages (${apt_pkgs[*]}); run as root to install them" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
if [ "$want_test" = 1 ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  # the NFQUEUE binding compiles against libnetfilter-queue; its tests skip without it
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[nfqueue]' \
    || echo "setup: the nfqueue extra did not install; the daemon tests will skip" >&2
else
  .venv/bin/python -m pip install -q --disable-pip-version-check -e .
fi

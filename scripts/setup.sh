#!/usr/bin/env bash
# Set up pyfw in ./.venv (idempotent, non-interactive).
#   (no option)  pyfw itself
#   --demo       also what scripts/demo.sh runs: iptables, iproute2, curl,
#                ping, netcat, procps and pyroute2
#   --test       also what the test suite needs: the above, conntrack,
#                tcpdump, ethtool and the dev extras
# A stamp in .venv remembers what was installed for which pyproject.toml, so
# a second run does not ask pip again.  Then the data path is compiled in
# place (scripts/native.py, skipped when up to date) where gcc and the Python
# headers are there; without them pyfw runs from source.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=base
case "${1:-}" in
  --test) mode=test ;;
  --demo) mode=demo ;;
  "") ;;
  *) echo "usage: $0 [--demo | --test]" >&2; exit 2 ;;
esac

export DEBIAN_FRONTEND=noninteractive
apt_pkgs=()
if ! command -v python3 >/dev/null 2>&1; then apt_pkgs+=(python3); fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then apt_pkgs+=(python3-venv python3-pip); fi
if [ "$mode" != base ] || [ "${PYFW_SETUP_APT:-0}" = 1 ]; then
  cmds="iptables-legacy:iptables ip:iproute2 ss:iproute2 curl:curl ping:iputils-ping nc:netcat-openbsd sysctl:procps gcc:gcc"
  [ "$mode" = test ] && cmds="$cmds conntrack:conntrack tcpdump:tcpdump ethtool:ethtool"
  for cmd_pkg in $cmds; do
    cmd=${cmd_pkg%%:*}; pkg=${cmd_pkg##*:}
    command -v "$cmd" >/dev/null 2>&1 || apt_pkgs+=("$pkg")
  done
  [ -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || apt_pkgs+=(libnetfilter-queue-dev)
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
stamp=.venv/.pyfw-setup-$mode
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $PWD"
if ! { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c 'import pyfw' 2>/dev/null; }; then
  pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
  "${pip[@]}" --upgrade pip >/dev/null 2>&1 || true
  case $mode in
    test)
      "${pip[@]}" -e '.[dev,live]'
      # the optional C binding (an alternative queue reader, compiled against
      # libnetfilter-queue): the daemon and its tests do not need it
      "${pip[@]}" -e '.[nfqueue]' || echo "setup: the optional NetfilterQueue binding did not build" >&2 ;;
    demo) "${pip[@]}" -e '.[live]' ;;
    base) "${pip[@]}" -e . ;;
  esac
  # mypyc and its build_ext, for the compiled build below (the dev extras
  # have mypy already)
  if ! .venv/bin/python -c 'import mypyc, setuptools' 2>/dev/null; then
    "${pip[@]}" 'mypy>=1.15' 'setuptools>=65' || true
  fi
  echo "$want" > "$stamp"
fi

# The compiled data path (mypyc, see pyfw/_native.py): an editable install
# compiles nothing, so build it in place here; scripts/native.py does nothing
# when the build matches the source, so a second run costs a second.
cc=$(.venv/bin/python -c 'import sysconfig; print((sysconfig.get_config_var("CC") or "cc").split()[0])')
cc=${CC:-$cc}
if command -v "${cc%% *}" >/dev/null 2>&1 \
   && .venv/bin/python -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
   && .venv/bin/python -c 'import mypyc, setuptools' 2>/dev/null; then
  .venv/bin/python scripts/native.py \
    || echo "setup: the compiled build failed; pyfw runs from source (see the messages above)" >&2
else
  echo "setup: no C compiler, Python headers or mypy: pyfw runs from source, about half as fast" \
       "(for the compiled build: apt-get install gcc python3-dev, then .venv/bin/python scripts/native.py)" >&2
fi

# The bytecode of the modules that stay interpreted, written now as a wheel's
# install writes it: a CLI call then does not compile them again each time
# (it would, under PYTHONDONTWRITEBYTECODE=1).
.venv/bin/python -m compileall -q pyfw >/dev/null || true

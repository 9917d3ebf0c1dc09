#!/usr/bin/env bash
# The pyfw demo: a live gateway on network namespaces.
#
#   lan (192.168.1.5, web server 192.168.1.10)
#    |  eth0 192.168.1.1
#   gateway: pyfw daemon --nfqueue with rulesets/home-gateway.rules
#    |  eth1 203.0.113.2
#   wan, "the internet" (203.0.113.1: a web server and a DNS-like UDP service)
#
# wan has no route back to the lan, so only the gateway's MASQUERADE gets lan
# traffic answered.  Real clients (curl, ping, nc, a UDP query) go through
# the gateway; each step prints one line with its outcome, then the daemon's
# counters and connection table are shown and everything is removed again
# (on success, error or Ctrl-C).  Needs root; sets up ./.venv first.
#
# PYFW_DEMO_SKIP_SETUP=1 skips scripts/setup.sh; PYFW_VENV names the venv
# whose bin/ has pyfw (default ./.venv).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ "$(id -u)" != 0 ]; then
  echo "demo: needs root (network namespaces, iptables, NFQUEUE); run it with sudo" >&2
  exit 1
fi
[ "${PYFW_DEMO_SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh --demo
venv=${PYFW_VENV:-$root/.venv}
py=$venv/bin/python
pyfw=$venv/bin/pyfw
[ -x "$pyfw" ] || pyfw="$py -m pyfw"

tag=$$
lan=pyfw-demo-lan-$tag gw=pyfw-demo-gw-$tag wan=pyfw-demo-wan-$tag
work=$(mktemp -d /tmp/pyfw-demo.XXXXXX)
sock=$work/pyfw.sock
ruleset=$root/rulesets/home-gateway.rules
daemon_pid=
failed=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"
    for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$daemon_pid" 2>/dev/null
  fi
  for ns in "$lan" "$gw" "$wan"; do
    [ -e "/run/netns/$ns" ] || continue
    # only what this demo started runs in its namespaces
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$work"
  echo "cleanup: namespaces $lan, $gw, $wan and $work removed"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted"; exit 130' INT
trap 'exit 143' TERM

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

wait_for() {  # wait_for NS PROTO PORT LOG: until something listens there (5 s at most)
  local flag=-ltn; [ "$2" = udp ] && flag=-lun
  for _ in $(seq 100); do
    in_ns "$1" ss -H "$flag" "sport = :$3" | grep -q . && return 0
    sleep 0.05
  done
  echo "demo: nothing listens on $2 port $3 in $1:" >&2
  cat "$4" >&2
  return 1
}

step() {  # step OK NAME TEXT: one line per outcome
  if [ "$1" = ok ]; then printf '[ ok ] %-9s %s\n' "$2" "$3"
  else printf '[FAIL] %-9s %s\n' "$2" "$3"; failed=$((failed + 1)); fi
}

# --- the three namespaces ------------------------------------------------
for ns in "$lan" "$gw" "$wan"; do
  ip netns add "$ns"
  in_ns "$ns" ip link set lo up
done
ip link add eth0 netns "$gw" type veth peer name eth0 netns "$lan"
ip link add eth1 netns "$gw" type veth peer name eth0 netns "$wan"
in_ns "$lan" ip addr add 192.168.1.5/24 dev eth0
in_ns "$lan" ip addr add 192.168.1.10/24 dev eth0
in_ns "$gw" ip addr add 192.168.1.1/24 dev eth0
in_ns "$gw" ip addr add 203.0.113.2/24 dev eth1
in_ns "$wan" ip addr add 203.0.113.1/24 dev eth0
in_ns "$lan" ip link set eth0 up
in_ns "$gw" ip link set eth0 up
in_ns "$gw" ip link set eth1 up
in_ns "$wan" ip link set eth0 up
in_ns "$lan" ip route add default via 192.168.1.1
in_ns "$gw" ip route add default via 203.0.113.1
in_ns "$gw" sysctl -qw net.ipv4.ip_forward=1
echo "network: lan $lan (192.168.1.5, .10) -- gateway $gw (eth0 192.168.1.1, eth1 203.0.113.2) -- wan $wan (203.0.113.1)"

# --- servers: a web server and a DNS-like UDP service on wan, a web server on lan
mkdir -p "$work/wan-www" "$work/lan-www"
echo "hello from the internet" > "$work/wan-www/index.html"
echo "hello from the lan web server" > "$work/lan-www/index.html"
servers=$root/scripts/demo_servers.py
in_ns "$wan" "$py" "$servers" http 203.0.113.1 80 "$work/wan-www" >"$work/wan-http.log" 2>&1 &
in_ns "$wan" "$py" "$servers" udp 203.0.113.1 53 >"$work/wan-udp.log" 2>&1 &
in_ns "$lan" "$py" "$servers" http 192.168.1.10 80 "$work/lan-www" >"$work/lan-http.log" 2>&1 &
wait_for "$wan" tcp 80 "$work/wan-http.log"
wait_for "$wan" udp 53 "$work/wan-udp.log"
wait_for "$lan" tcp 80 "$work/lan-http.log"

# --- the gateway: pyfw inline on NFQUEUE ------------------------------------
ip netns exec "$gw" $pyfw daemon --nfqueue 0 --ruleset "$ruleset" --socket "$sock" 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do
  [ -S "$sock" ] && in_ns "$gw" iptables-legacy -t raw -S PREROUTING | grep -q pyfw-daemon && break
  kill -0 "$daemon_pid" 2>/dev/null || { echo "demo: the daemon did not start:" >&2; cat "$work/daemon.log" >&2; exit 1; }
  sleep 0.1
done
echo "gateway: pyfw daemon --nfqueue 0 --ruleset rulesets/home-gateway.rules (pid $daemon_pid);" \
     "kernel rules steering packets to it:"
in_ns "$gw" iptables-legacy-save | grep -- "pyfw-daemon" | sed 's/^/    /'
echo

# --- traffic ----------------------------------------------------------------
code=$(in_ns "$lan" curl -s -o "$work/got" -w '%{http_code}' --max-time 3 http://203.0.113.1/ || true)
seen=$(awk '/^client/ {a = $2} END {print a}' "$work/wan-http.log")
if [ "$code" = 200 ] && [ "$seen" = 203.0.113.2 ]; then
  step ok HTTP "lan 192.168.1.5 -> curl http://203.0.113.1/: 200 \"$(cat "$work/got")\", the server saw 203.0.113.2 (MASQUERADE)"
else
  step fail HTTP "lan -> curl http://203.0.113.1/: status ${code:-none}, the server saw ${seen:-nothing}"
fi

answer=$(in_ns "$lan" "$py" "$servers" ask 203.0.113.1 53 www.example.com || true)
if [ "$answer" = "www.example.com A 198.51.100.80 asked-by 203.0.113.2" ]; then
  step ok DNS/UDP "lan -> 203.0.113.1 udp/53 \"A www.example.com\": answer 198.51.100.80, asked by 203.0.113.2 (MASQUERADE)"
else
  step fail DNS/UDP "lan -> 203.0.113.1 udp/53: ${answer:-no answer}"
fi

replies=$(in_ns "$lan" ping -n -q -c 3 -i 0.2 -W 1 203.0.113.1 2>/dev/null | grep -o '[0-9]* received' | cut -d' ' -f1 || true)
if [ "${replies:-0}" = 3 ]; then
  step ok ping "lan -> ping 203.0.113.1: 3 of 3 echo replies"
else
  step fail ping "lan -> ping 203.0.113.1: ${replies:-0} of 3 echo replies"
fi

refused=$(in_ns "$wan" nc -nvz -w 2 203.0.113.2 22 2>&1 || true)
if grep -q "Connection refused" <<<"$refused"; then
  step ok refused "wan -> nc 203.0.113.2 tcp/22: connection refused (INPUT -p tcp -j REJECT --reject-with tcp-reset)"
else
  step fail refused "wan -> nc 203.0.113.2 tcp/22: ${refused:-no answer}"
fi

code=$(in_ns "$wan" curl -s -o "$work/got" -w '%{http_code}' --max-time 3 http://203.0.113.2:8080/ || true)
seen=$(awk '/^client/ {a = $2} END {print a}' "$work/lan-http.log")
if [ "$code" = 200 ] && [ "$seen" = 203.0.113.1 ]; then
  step ok forward "wan -> curl http://203.0.113.2:8080/: 200 \"$(cat "$work/got")\" (DNAT to 192.168.1.10:80, which saw 203.0.113.1)"
else
  step fail forward "wan -> curl http://203.0.113.2:8080/: status ${code:-none}, the lan server saw ${seen:-nothing}"
fi

# --- what the gateway counted and tracks --------------------------------------
echo
for t in filter nat; do
  echo "# pyfw --socket $sock -t $t -L -n -v"
  in_ns "$gw" $pyfw --socket "$sock" -t $t -L -n -v
  echo
done
if in_ns "$gw" $pyfw conntrack --socket "$sock" -C >/dev/null 2>&1; then
  echo "# pyfw conntrack --socket $sock -L"
  in_ns "$gw" $pyfw conntrack --socket "$sock" -L
else
  echo "# (pyfw conntrack is not in this version: no connection table to show)"
fi
echo

# --- stop: the daemon removes its kernel rules ---------------------------------
kill -TERM "$daemon_pid"
wait "$daemon_pid" || true
daemon_pid=
grep "pyfw daemon: stopped" "$work/daemon.log" || true
left=$(in_ns "$gw" iptables-legacy-save | grep -c -- pyfw-daemon || true)
if [ "$left" = 0 ]; then
  step ok stop "SIGTERM: the daemon stopped and removed its kernel rules"
else
  step fail stop "SIGTERM: $left pyfw kernel rules left behind"
fi

if [ "$failed" = 0 ]; then echo "demo: all steps worked"; else echo "demo: $failed step(s) failed"; exit 1; fi

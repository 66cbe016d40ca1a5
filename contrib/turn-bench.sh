#!/usr/bin/env bash
# The TURN benchmark: the same turnutils_uclient load (coturn's test
# client: CLIENTS allocations on loopback, each sending MESSAGES
# datagrams of 100 bytes over a channel to turnutils_peer, which echoes
# them back through the relay) once through a p2psip relay node (release
# build) and once through coturn's turnserver (started here with a
# temporary configuration, loopback only, killed at the end), ROUNDS times
# each, alternating. Each echoed message crosses the server four times
# (client -> relay -> peer -> relay -> client).
#
# Prints, per server and round: messages echoed, wall time, echoed
# messages/s, loss, the server's CPU seconds (from /proc) and echoed
# messages per CPU second ("per core"); then the medians and the ratios
# p2psip/coturn. Goal (issue 12): p2psip >= 0.8x coturn per core.
#
#   bash contrib/turn-bench.sh
#   TURN_BENCH_CLIENTS=8 TURN_BENCH_MESSAGES=3000 TURN_BENCH_ROUNDS=3 bash contrib/turn-bench.sh
#
# Needs coturn (Debian package; contrib/test-deps.sh installs it).
# Figures: docs/benchmarks.md ("TURN relay").
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS="${TURN_BENCH_CLIENTS:-4}"   # at most 4: uclient holds two allocations per client for a moment, and the per-user quota is 8
MESSAGES="${TURN_BENCH_MESSAGES:-3000}"
INTERVAL_MS="${TURN_BENCH_INTERVAL_MS:-1}"
ROUNDS="${TURN_BENCH_ROUNDS:-3}"
for tool in turnserver turnutils_uclient turnutils_peer; do
  command -v "$tool" >/dev/null || { echo "$tool missing: install coturn (contrib/test-deps.sh)" >&2; exit 1; }
done
if [ -z "${P2PSIP_BIN:-}" ]; then
  cargo build --release --locked -q --bin p2psip
  target="${CARGO_TARGET_DIR:-$PWD/target}"
  P2PSIP_BIN="$target/release/p2psip"
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${TURN_BENCH_KEEP:-}" ]; then echo "kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
cd "$WORK"

free_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
cpu() { # PID -> CPU seconds (user + system), threads included
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

PASSWORD=bench-password
PEER_PORT=$(free_port)
turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >peer.log 2>&1 &
PIDS+=($!)

# p2psip: a relay node with user "bench".
"$P2PSIP_BIN" identity new --dir node --difficulty 0 >/dev/null
echo "$PASSWORD" >pw
"$P2PSIP_BIN" turn add-user --dir node --username bench --password-file pw >/dev/null
P2PSIP_PORT=$(free_port)
"$P2PSIP_BIN" node run --dir node --listen 127.0.0.1:0 --difficulty 0 --relay \
  --turn-listen "127.0.0.1:$P2PSIP_PORT" --turn-allowed-peers 127.0.0.0/8 --log-level warn >node.out 2>node.err &
P2PSIP_PID=$!
PIDS+=($P2PSIP_PID)

# coturn: loopback only, long-term credentials, the same user and realm.
COTURN_PORT=$(free_port)
cat >turnserver.conf <<EOF
listening-ip=127.0.0.1
relay-ip=127.0.0.1
listening-port=$COTURN_PORT
min-port=49152
max-port=65535
lt-cred-mech
user=bench:$PASSWORD
realm=p2psip
allow-loopback-peers
no-tls
no-dtls
no-cli
no-multicast-peers
no-software-attribute
pidfile=$WORK/turnserver.pid
log-file=$WORK/turnserver.log
simple-log
EOF
turnserver -c turnserver.conf >coturn.out 2>&1 &
COTURN_PID=$!
PIDS+=($COTURN_PID)

for _ in $(seq 1 100); do
  grep -q "serving TURN" node.out 2>/dev/null && break
  sleep 0.1
done
grep -q "serving TURN" node.out || { echo "p2psip did not start:" >&2; cat node.err >&2; exit 1; }
sleep 1 # coturn logs nothing on stdout; give it a second

run() { # NAME PORT PID -> one line of figures
  local name=$1 port=$2 pid=$3
  local cpu0 cpu1 t0 t1 out
  cpu0=$(cpu "$pid")
  t0=$(date +%s.%N)
  out=$(timeout 300 turnutils_uclient -c -u bench -w "$PASSWORD" -e 127.0.0.1 -r "$PEER_PORT" \
    -m "$CLIENTS" -n "$MESSAGES" -l 100 -z "$INTERVAL_MS" -p "$port" 127.0.0.1 2>&1 || true)
  t1=$(date +%s.%N)
  cpu1=$(cpu "$pid")
  local totals sent recv
  totals=$(grep -E 'start_mclient: tot_send_msgs=' <<<"$out" | tail -n 1 || true)
  sent=$(sed -E 's/.*tot_send_msgs=([0-9]+).*/\1/' <<<"$totals")
  recv=$(sed -E 's/.*tot_recv_msgs=([0-9]+).*/\1/' <<<"$totals")
  if [ -z "$totals" ] || [ -z "$recv" ]; then
    echo "$name: uclient printed no totals:" >&2
    tail -n 20 <<<"$out" >&2
    exit 1
  fi
  python3 - "$name" "$sent" "$recv" "$t0" "$t1" "$cpu0" "$cpu1" <<'PY'
import sys
name, sent, recv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
wall = float(sys.argv[5]) - float(sys.argv[4])
cpu = float(sys.argv[7]) - float(sys.argv[6])
loss = 100.0 * (sent - recv) / sent if sent else 100.0
per_cpu = recv / cpu if cpu > 0 else float("inf")
print(f"{name} {sent} {recv} {wall:.2f} {recv / wall:.0f} {loss:.2f} {cpu:.2f} {per_cpu:.0f}")
PY
}

# Allocations outlive uclient (it does not delete them): a fresh user
# quota per round would need new users; 8 clients a round with 600 s
# lifetimes means: one p2psip node per round.
restart_p2psip() {
  kill "$P2PSIP_PID" 2>/dev/null || true
  wait "$P2PSIP_PID" 2>/dev/null || true
  P2PSIP_PORT=$(free_port)
  : >node.out
  "$P2PSIP_BIN" node run --dir node --listen 127.0.0.1:0 --difficulty 0 --relay \
    --turn-listen "127.0.0.1:$P2PSIP_PORT" --turn-allowed-peers 127.0.0.0/8 --log-level warn >node.out 2>node.err &
  P2PSIP_PID=$!
  PIDS+=($P2PSIP_PID)
  for _ in $(seq 1 100); do
    grep -q "serving TURN" node.out 2>/dev/null && return
    sleep 0.1
  done
  echo "p2psip did not restart" >&2
  exit 1
}

echo "load: $CLIENTS clients x $MESSAGES messages of 100 bytes, one every ${INTERVAL_MS} ms per client, channels (uclient -c)"
echo "server round sent echoed wall_s echoed_per_s loss_% cpu_s echoed_per_cpu_s"
: >results
for round in $(seq 1 "$ROUNDS"); do
  [ "$round" -gt 1 ] && restart_p2psip
  line=$(run p2psip "$P2PSIP_PORT" "$P2PSIP_PID")
  echo "$line" | awk -v r="$round" '{print $1, r, $2, $3, $4, $5, $6, $7, $8}'
  echo "$line" >>results
  line=$(run coturn "$COTURN_PORT" "$COTURN_PID")
  echo "$line" | awk -v r="$round" '{print $1, r, $2, $3, $4, $5, $6, $7, $8}'
  echo "$line" >>results
done
python3 - <<'PY'
import statistics
rows = [l.split() for l in open("results")]
def med(name, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == name)
p_rate, c_rate = med("p2psip", 4), med("coturn", 4)
p_cpu, c_cpu = med("p2psip", 7), med("coturn", 7)
print(f"median echoed/s: p2psip {p_rate:.0f}, coturn {c_rate:.0f}, ratio {p_rate / c_rate:.2f}")
print(f"median loss %: p2psip {med('p2psip', 5):.2f}, coturn {med('coturn', 5):.2f}")
print(f"median echoed per CPU second (per core): p2psip {p_cpu:.0f}, coturn {c_cpu:.0f}, ratio {p_cpu / c_cpu:.2f}")
PY

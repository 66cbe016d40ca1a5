#!/usr/bin/env bash
# The media benchmark: RTP through two p2psip nodes on loopback. SIPp sets
# up STREAMS calls from alice (node A) to bob (node B) and holds them;
# examples/rtp_load.rs sends each call's G.711-sized packets (50 a second)
# to node A's port for that call and receives them where node B delivers
# them (bob's media address), measuring one-way latency on one clock.
# The same load sent straight to the receiver is the baseline; the nodes'
# CPU time (from /proc) gives packets carried per core.
#
#   bash contrib/media-bench.sh [STREAMS...]     default: 100 500 1000 2000
#
# Needs sipp (Debian sip-tester); builds p2psip --release.
# Figures: docs/benchmarks.md ("SIP media").
set -euo pipefail
cd "$(dirname "$0")/.."
STREAMS=("${@:-100 500 1000 2000}")
read -r -a STREAMS <<<"${STREAMS[*]}"
SECS="${MEDIA_BENCH_SECS:-10}"
SCEN="$PWD/tests/sipp"
HOLD_SCEN="$PWD/contrib/sipp/call_hold.xml"
cargo build --release --locked -q
cargo build --release --locked -q --example rtp_load
P2PSIP="$PWD/target/release/p2psip"
LOAD="$PWD/target/release/examples/rtp_load"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${MEDIA_BENCH_KEEP:-}" ]; then echo "kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
cd "$WORK"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

printf 'name = "lab.example"\nid_difficulty = 4\nk = 8\nreplication = 3\n' >overlay.toml
"$P2PSIP" identity new --dir a --difficulty 4 >/dev/null
"$P2PSIP" identity new --dir b --difficulty 4 >/dev/null
aor_user() { # NODE_DIR USER PASSWORD -> the AOR's user part
  "$P2PSIP" identity new --user --dir "$2" >/dev/null
  echo "$3" >"$2.pw"
  "$P2PSIP" sip add-user --dir "$1" --user-dir "$2" --password-file "$2.pw" --auth-user "$2" \
    --overlay overlay.toml --digest MD5,SHA-256 --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["aor"][4:].split("@")[0])'
}
ALICE=$(aor_user a alice alice-pw)
BOB=$(aor_user b bob bob-pw)
"$P2PSIP" node run --dir a --listen 127.0.0.1:0 --overlay overlay.toml --sip-listen 127.0.0.1:5160 >a.out 2>a.err &
A_PID=$!
PIDS+=($A_PID)
"$P2PSIP" status --dir a --wait-ready --timeout 60 >/dev/null
A_CONTACT=$(head -1 a.out | awk '{print $3"@"$6}')
"$P2PSIP" node run --dir b --listen 127.0.0.1:0 --overlay overlay.toml --sip-listen 127.0.0.1:5162 \
  --bootstrap "$A_CONTACT" >b.out 2>b.err &
B_PID=$!
PIDS+=($B_PID)
"$P2PSIP" status --dir b --wait-ready --timeout 60 >/dev/null

cpu() { # PID -> CPU seconds (user + system)
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}
RECV_PORT=7100
echo
echo "one-way latency of G.711 packets (172 bytes, 50/s per stream), ${SECS}s per row"
echo "| path            | streams | packets/s | lost % | p50 us | p99 us | node CPU % | packets/s per core |"
echo "|-----------------|---------|-----------|--------|--------|--------|------------|--------------------|"
for n in "${STREAMS[@]}"; do
  line=$("$LOAD" --direct="$n" "$RECV_PORT" "$SECS")
  python3 - direct "$n" "$line" 0 <<'EOF'
import sys
path, n, line, cpu = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
f = dict(kv.split("=") for kv in line.split())
print(f"| {path:15} | {n:>7} | {float(f['pps']):9.0f} | {float(f['lost_pct']):6.2f} | {f['p50_us']:>6} | {f['p99_us']:>6} | {'-':>10} | {'-':>18} |")
EOF
  for s in a b; do
    sipp -nostdin -sf "$SCEN/register.xml" -key domain lab.example \
      -key aor_user "$([ $s = a ] && echo "$ALICE" || echo "$BOB")" -key expires 3600 \
      -au "$([ $s = a ] && echo alice || echo bob)" -ap "$([ $s = a ] && echo alice-pw || echo bob-pw)" \
      -i 127.0.0.1 -p "$([ $s = a ] && echo 6201 || echo 6200)" -m 1 \
      "127.0.0.1:$([ $s = a ] && echo 5160 || echo 5162)" >reg.out 2>&1
  done
  sed "s/@MEDIA_PORT@/$RECV_PORT/" "$SCEN/answer_media.xml" >answer.xml
  rm -f ports.txt
  # Held until the load is over: setup (at most n/50 + 60 s of waiting),
  # then the run.
  hold=$(((n / 50 + 60 + SECS + 10) * 1000))
  sed -e "s/@MEDIA_PORT@/7000/" -e "s#@PORTS@#$WORK/ports.txt#" -e "s/@HOLD@/$hold/" "$HOLD_SCEN" >hold.xml
  sipp -nostdin -sf answer.xml -i 127.0.0.1 -p 6200 -m "$n" -timeout $((hold / 1000 + 60))s >uas.out 2>&1 &
  UAS=$!
  sleep 0.3
  sipp -nostdin -sf hold.xml -key domain lab.example -key aor_user "$ALICE" -key callee "$BOB" \
    -au alice -ap alice-pw -auth_uri "$BOB@lab.example" -i 127.0.0.1 -p 6201 -m "$n" -r 100 -l "$n" -timeout $((hold / 1000 + 60))s 127.0.0.1:5160 >uac.out 2>&1 &
  UAC=$!
  for _ in $(seq 1 $((n / 50 + 60))); do
    [ -f ports.txt ] && [ "$(wc -l <ports.txt)" -ge "$n" ] && break
    sleep 0.5
  done
  got=$(wc -l <ports.txt 2>/dev/null || echo 0)
  a0=$(cpu $A_PID)
  b0=$(cpu $B_PID)
  line=$("$LOAD" ports.txt "$RECV_PORT" "$SECS")
  a1=$(cpu $A_PID)
  b1=$(cpu $B_PID)
  python3 - "two nodes" "$got" "$line" "$(echo "$a1 - $a0 + $b1 - $b0" | bc -l)" "$SECS" <<'EOF'
import sys
path, n, line, cpu, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
f = dict(kv.split("=") for kv in line.split())
received = int(f["received"]) / secs
share = 100 * cpu / secs
per_core = received / (cpu / secs) if cpu > 0 else float("nan")
print(f"| {path:15} | {n:>7} | {received:9.0f} | {float(f['lost_pct']):6.2f} | {f['p50_us']:>6} | {f['p99_us']:>6} | {share:10.0f} | {per_core:18.0f} |")
EOF
  kill "$UAC" "$UAS" 2>/dev/null || true
  wait "$UAC" "$UAS" 2>/dev/null || true
  sleep 2
done

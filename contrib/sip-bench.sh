#!/usr/bin/env bash
# The SIP benchmark: SIPp calls (INVITE/407/ACK/INVITE/100/180/200/ACK/
# BYE) on loopback, side by side, through two p2psip nodes (caller's node
# -> overlay -> callee's node) and through one Kamailio
# (contrib/kamailio/kamailio.cfg, a minimal registrar and stateful proxy
# with the same digest challenges). Prints, per target rate, the calls
# that completed, the rate SIPp achieved and the call setup time (first
# INVITE -> 200, the challenge included: SIPp's response time "setup",
# whole milliseconds). Then registrations (REGISTER/401/REGISTER/200)
# from REG_SOURCES phones, each its own user and its own loopback
# address (127.0.1.x; a node takes 20 REGISTERs a second from one
# address), at REG_RATES registrations a second in all, REG_COUNT a row.
#
#   bash contrib/sip-bench.sh [CALLS] [RATE...]     default: 1000 50 100 200
#   REG_SOURCES=50 REG_RATES="100 200 400" REG_COUNT=4000 (defaults)
#
# Needs sipp (Debian sip-tester) and kamailio; builds p2psip --release.
# Figures: docs/benchmarks.md ("SIP calls").
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS="${1:-1000}"
shift || true
RATES=("${@:-50 100 200}")
read -r -a RATES <<<"${RATES[*]}"
SCEN="$PWD/tests/sipp"
KAMAILIO_CFG="$PWD/contrib/kamailio/kamailio.cfg"
KAMAILIO_MODULES="${KAMAILIO_MODULES:-/usr/lib/x86_64-linux-gnu/kamailio/modules}"
cargo build --release --locked -q
P2PSIP="$PWD/target/release/p2psip"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  pkill -f "kamailio -f $KAMAILIO_CFG" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

# p2psip: two nodes in one overlay, alice's phone at A, bob's at B.
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
REG_SOURCES="${REG_SOURCES:-50}"
read -r -a REG_RATES <<<"${REG_RATES:-100 200 400}"
REG_COUNT="${REG_COUNT:-4000}"
REG_USERS=()
for i in $(seq 0 $((REG_SOURCES - 1))); do
  REG_USERS+=("$(aor_user a "reg$i" reg-pw)")
done
"$P2PSIP" node run --dir a --listen 127.0.0.1:0 --overlay overlay.toml --sip-listen 127.0.0.1:5160 >a.out 2>a.err &
PIDS+=($!)
"$P2PSIP" status --dir a --wait-ready --timeout 60 >/dev/null
A_CONTACT=$(head -1 a.out | awk '{print $3"@"$6}')
"$P2PSIP" node run --dir b --listen 127.0.0.1:0 --overlay overlay.toml --sip-listen 127.0.0.1:5162 \
  --bootstrap "$A_CONTACT" >b.out 2>b.err &
PIDS+=($!)
"$P2PSIP" status --dir b --wait-ready --timeout 60 >/dev/null

kamailio -f "$KAMAILIO_CFG" -DD -E -L "$KAMAILIO_MODULES" >kamailio.log 2>&1 &
PIDS+=($!)
sleep 1

sipp_run() { # NAME ARGS... (quiet, returns sipp's status)
  local name=$1
  shift
  sipp -nostdin "$@" >"$name.out" 2>&1
}

# One table row from SIPp's outputs: successful calls (summed over
# OUTPUTS), achieved rate over the wall time, p50/p99 of the response
# times in the RTT files.
summarize() { # SYSTEM RATE START END OUTPUTS_GLOB RTT_GLOB
  python3 - "$@" <<'EOF'
import glob, re, sys
system, rate, start, end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
outputs, rtts = sys.argv[5], sys.argv[6]
ok = 0
for f in glob.glob(outputs):
    counts = [int(m) for m in re.findall(r"Successful call\s+\|\s+\d+\s+\|\s+(\d+)", open(f, errors="replace").read())]
    ok += counts[-1] if counts else 0
rtd = sorted(float(l.split(";")[1]) for f in glob.glob(rtts)
             for l in open(f).read().splitlines()[1:] if l)
pct = lambda p: rtd[min(len(rtd) - 1, int(len(rtd) * p))] if rtd else float("nan")
print(f"| {system:7} | {rate:6} | {ok:5} | {ok / (end - start):8.1f} | {pct(0.5):5.0f} | {pct(0.99):5.0f} |")
EOF
}

# One measurement: register the phones, run CALLS calls at RATE.
measure() { # SYSTEM RATE
  local system=$1 rate=$2 port_b port_a via
  rm -f ./*_rtt.csv
  if [ "$system" = p2psip ]; then
    via=127.0.0.1:5160
    sipp_run reg-b -sf "$SCEN/register.xml" -key domain lab.example -key aor_user "$BOB" \
      -key expires 3600 -au bob -ap bob-pw -i 127.0.0.1 -p 6200 -m 1 127.0.0.1:5162
    sipp_run reg-a -sf "$SCEN/register.xml" -key domain lab.example -key aor_user "$ALICE" \
      -key expires 3600 -au alice -ap alice-pw -i 127.0.0.1 -p 6201 -m 1 127.0.0.1:5160
  else
    via=127.0.0.1:5070
    sipp_run reg-k -sf "$SCEN/register.xml" -key domain lab.example -key aor_user "$BOB" \
      -key expires 3600 -au bob -ap bob-pw -i 127.0.0.1 -p 6200 -m 1 127.0.0.1:5070
  fi
  timeout $((CALLS / rate + 60)) sipp -nostdin -sf "$SCEN/answer.xml" -i 127.0.0.1 -p 6200 \
    -m "$CALLS" >uas.out 2>&1 &
  local uas=$!
  sleep 0.3
  local start end
  start=$(date +%s.%N)
  sipp_run uac -sf "$SCEN/call_only.xml" -key domain lab.example -key aor_user "$ALICE" \
    -key callee "$BOB" -au alice -ap alice-pw -auth_uri "$BOB@lab.example" -i 127.0.0.1 -p 6201 -m "$CALLS" -r "$rate" -timeout $((CALLS / rate + 40))s \
    -trace_rtt -rtt_freq 1 "$via" || true
  end=$(date +%s.%N)
  kill "$uas" 2>/dev/null || true
  wait "$uas" 2>/dev/null || true
  summarize "$system" "$rate" "$start" "$end" "uac.out" "*_rtt.csv"
}

echo
echo "$CALLS calls per row; setup = INVITE -> 200 at the caller (ms)"
echo "| system  | target | done  | calls/s  | p50   | p99   |"
echo "|---------|--------|-------|----------|-------|-------|"
for rate in "${RATES[@]}"; do
  measure p2psip "$rate"
  measure kamailio "$rate"
done

# Registrations: REG_SOURCES SIPp phones at once, each from its own
# address, REG_COUNT registrations in all at RATE a second in all.
measure_registrations() { # SYSTEM RATE
  local system=$1 rate=$2 via i per_count per_rate start end pids=()
  [ "$system" = p2psip ] && via=127.0.0.1:5160 || via=127.0.0.1:5070
  per_count=$((REG_COUNT / REG_SOURCES))
  per_rate=$(python3 -c "print($rate / $REG_SOURCES)")
  rm -rf reg && mkdir reg
  start=$(date +%s.%N)
  for i in $(seq 0 $((REG_SOURCES - 1))); do
    (cd reg && sipp -nostdin -sf "$SCEN/register.xml" -key domain lab.example \
      -key aor_user "${REG_USERS[$i]}" -key expires 3600 -au "reg$i" -ap reg-pw \
      -i "127.0.1.$((i + 1))" -p 6300 -m "$per_count" -r "$per_rate" \
      -timeout $((per_count * REG_SOURCES / rate + 40))s -trace_rtt -rtt_freq 1 \
      "$via" >"sipp$i.out" 2>&1) &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || true; done
  end=$(date +%s.%N)
  summarize "$system" "$rate" "$start" "$end" "reg/sipp*.out" "reg/*_rtt.csv"
}

echo
echo "$REG_COUNT registrations per row from $REG_SOURCES phones (own address and user each);"
echo "time = first REGISTER -> 200 (ms); p2psip publishes each in the overlay before its 200"
echo "| system  | target | done  | regs/s   | p50   | p99   |"
echo "|---------|--------|-------|----------|-------|-------|"
for rate in "${REG_RATES[@]}"; do
  measure_registrations p2psip "$rate"
  measure_registrations kamailio "$rate"
done

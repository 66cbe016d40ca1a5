#!/usr/bin/env bash
# Installs what the test suite (`cargo nextest run`) needs on a fresh
# Debian or Ubuntu machine with stable Rust: the real clients and tools
# the tests drive (openssl, SIPp, baresip, systemd-analyze, promtool,
# iproute2 for the network namespaces of the LAN discovery test, coturn's
# TURN test client and echo peer), cargo-nextest, and the Python
# packages of the interoperability and TURN tests.
# Where the system Python refuses packages (PEP 668), they go into a
# virtualenv in target/interop-venv, which tests/interop.rs uses.
# Idempotent: installs only what is missing. README's test command and
# .ci/run both run it.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v sipp >/dev/null || missing+=(sip-tester)
command -v baresip >/dev/null || missing+=(baresip-core)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v promtool >/dev/null || missing+=(prometheus)
command -v python3 >/dev/null || missing+=(python3)
command -v ip >/dev/null || missing+=(iproute2)
# coturn: turnutils_uclient and turnutils_peer for tests/turn.rs, and
# turnserver for contrib/turn-bench.sh.
command -v turnutils_uclient >/dev/null || missing+=(coturn)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt, --no-install-recommends)"
  $SUDO apt-get update -qq
  # --no-install-recommends: baresip without a sound stack, prometheus
  # without its web assets. A policy-rc.d that says "no" keeps the
  # coturn package's turnserver service from being started by the
  # install (the tests and the benchmark start their own, on ports of
  # their own, so one running on 3478 would not disturb them either).
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked

# The independent clients of the interoperability test (Python: aioquic,
# cbor2) and of the TURN test (aioice).
have() { "$1" -c "import aioquic, cbor2, cryptography, aioice" 2>/dev/null; }
if have python3 || have target/interop-venv/bin/python3 2>/dev/null; then
  exit 0
fi
requirements=(-r tests/interop/requirements.txt -r tests/turn/requirements.txt)
if ! python3 -m pip install --quiet "${requirements[@]}" 2>/dev/null; then
  echo "pip refused a system install (PEP 668?); using a virtualenv in target/interop-venv"
  if ! python3 -m venv target/interop-venv 2>/dev/null; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq python3-venv
    python3 -m venv target/interop-venv
  fi
  target/interop-venv/bin/python3 -m pip install --quiet "${requirements[@]}"
fi

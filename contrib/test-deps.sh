#!/usr/bin/env bash
# Installs what the test suite (`cargo nextest run`) needs on a fresh
# Debian or Ubuntu machine with stable Rust: the real clients and tools
# the tests drive (openssl, SIPp, baresip, systemd-analyze, promtool,
# iproute2 for the network namespaces of the LAN discovery test),
# cargo-nextest, and the Python packages of the interoperability test.
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
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt, --no-install-recommends)"
  $SUDO apt-get update -qq
  # --no-install-recommends: baresip without a sound stack, prometheus
  # without its web assets.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked

# The interoperability test's independent client (Python: aioquic, cbor2).
requirements=tests/interop/requirements.txt
have() { "$1" -c "import aioquic, cbor2, cryptography" 2>/dev/null; }
if have python3 || have target/interop-venv/bin/python3 2>/dev/null; then
  exit 0
fi
if ! python3 -m pip install --quiet -r "$requirements" 2>/dev/null; then
  echo "pip refused a system install (PEP 668?); using a virtualenv in target/interop-venv"
  if ! python3 -m venv target/interop-venv 2>/dev/null; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq python3-venv
    python3 -m venv target/interop-venv
  fi
  target/interop-venv/bin/python3 -m pip install --quiet -r "$requirements"
fi

#!/usr/bin/env python3
"""An independent p2psip v1 client, written from docs/protocol.md only.

It proves that the wire protocol document is enough to talk to a node:
QUIC + TLS 1.3 come from aioquic, CBOR from cbor2, X.509 and Ed25519 from
the `cryptography` package; everything p2psip-specific (certificate
profile, NodeId, framing, CBOR profile, message schema) is implemented
here from the document.

Usage:
    ping_client.py HOST:PORT [--expect-id HEX] [--difficulty N]
    ping_client.py HOST:PORT --raw-hex HEX

Ping mode prints one JSON line
    {"peer_id": HEX, "nonce_ok": true, "observed": "ip:port"}
Raw mode sends HEX (an already framed request) and prints
    {"peer_id": HEX, "answer": [...], "closed": null | {...}}
where byte strings in the answer are shown as hex and "closed" describes a
CONNECTION_CLOSE received from the node shortly after the answer.
On any failure the reason goes to stderr and the exit status is 1.

Requires: python3 -m pip install aioquic==1.7.2 cbor2==6.2.1
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import ipaddress
import json
import os
import ssl
import struct
import sys

try:
    import cbor2
    from aioquic import tls as aioquic_tls
    from aioquic.asyncio import QuicConnectionProtocol, connect
    from aioquic.quic import events
    from aioquic.quic.configuration import QuicConfiguration
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtensionOID, NameOID
except ImportError as exc:  # pragma: no cover - environment problem
    print(
        f"missing Python package ({exc}); run: python3 -m pip install aioquic cbor2",
        file=sys.stderr,
    )
    sys.exit(1)

ALPN = "p2psip/1"
SNI = "p2psip.invalid"  # §2: carries no meaning
NODE_ID_DOMAIN = b"p2psip-node-id-v1"
MAX_BODY = 65536  # §3
MAX_REASON = 256  # §4.2
TIMEOUT = 10.0  # seconds, for the handshake and for the answer

MSG_PING, MSG_PONG, MSG_ERROR = 1, 2, 3


class Failure(Exception):
    """A reason to give up, shown on stderr."""


# --------------------------------------------------------------------------
# Ed25519 arithmetic, just enough for the small-order checks of §1 / §2.1
# (cryptography/OpenSSL do the signature maths, but do not refuse
# small-order keys or R values as ed25519-dalek's verify_strict does).

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decompress(b: bytes) -> tuple[int, int] | None:
    """Decodes an Edwards point (RFC 8032 §5.1.3); None if not a point."""
    if len(b) != 32:
        return None
    y = int.from_bytes(b, "little") & ((1 << 255) - 1)
    sign = b[31] >> 7
    if y >= _P:
        return None
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x2 = u * pow(v, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if x == 0 and sign == 1:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, _P - 2, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P
    return x3, y3


def _is_small_order(pt: tuple[int, int]) -> bool:
    for _ in range(3):  # multiply by the cofactor 8
        pt = _add(pt, pt)
    return pt == (0, 1)


def check_public_key(raw: bytes) -> None:
    pt = _decompress(raw)
    if pt is None:
        raise Failure("server key is not a valid Ed25519 point")
    if _is_small_order(pt):
        raise Failure("server key has small order")


def verify_strict(public: bytes, signature: bytes, message: bytes) -> None:
    """Ed25519 verification with the extra refusals of verify_strict."""
    if len(signature) != 64:
        raise Failure("certificate signature is not 64 bytes")
    r = _decompress(signature[:32])
    if r is None or _is_small_order(r):
        raise Failure("certificate signature R is not a valid large-order point")
    if int.from_bytes(signature[32:], "little") >= _L:
        raise Failure("certificate signature S is not reduced")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise Failure(f"certificate self-signature does not verify ({exc!r})") from exc


# --------------------------------------------------------------------------
# Minimal DER walking, to check the byte-level rules of §2.1 on the exact
# bytes the server sent.


def _tlv(buf: bytes, pos: int) -> tuple[int, int, int, int]:
    """Returns (tag, content start, content end, next pos) of the TLV at pos."""
    if pos + 2 > len(buf):
        raise Failure("certificate DER truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise Failure("certificate DER uses a high tag number")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(buf):
            raise Failure("certificate DER has a bad length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    end = pos + length
    if end > len(buf):
        raise Failure("certificate DER truncated")
    return tag, pos, end, end


def _children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The TLVs inside buf[start:end], as (tag, outer start, inner start, end)."""
    out = []
    pos = start
    while pos < end:
        tag, cstart, cend, nxt = _tlv(buf, pos)
        if nxt > end:
            raise Failure("certificate DER element overruns its parent")
        out.append((tag, pos, cstart, cend))
        pos = nxt
    return out


ED25519_ALG = bytes.fromhex("300506032b6570")  # AlgorithmIdentifier, no params
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def node_id_of(public: bytes) -> bytes:
    return hashlib.sha256(NODE_ID_DOMAIN + public).digest()


def puzzle_bits(ident: bytes) -> int:
    h = hashlib.sha256(ident).digest()
    bits = 0
    for byte in h:
        if byte == 0:
            bits += 8
            continue
        bits += 8 - byte.bit_length()
        break
    return bits


CRITICAL_ALLOWED = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
}


def verify_node_certificate(chain: list[bytes], difficulty: int) -> bytes:
    """Checks the server certificate by §2.1 (self-certifying mode); returns
    the server's NodeId."""
    if len(chain) != 1:
        raise Failure(f"server sent {len(chain)} certificates, exactly one allowed")
    der = chain[0]

    # Rule 1: one DER certificate, nothing after it.
    tag, start, end, nxt = _tlv(der, 0)
    if tag != 0x30 or nxt != len(der):
        raise Failure("certificate is not exactly one DER SEQUENCE")
    parts = _children(der, start, end)
    if len(parts) != 3 or [p[0] for p in parts] != [0x30, 0x30, 0x03]:
        raise Failure("certificate is not tbsCertificate, signatureAlgorithm, signature")
    tbs_tag, tbs_outer, tbs_start, tbs_end = parts[0]
    tbs_bytes = der[tbs_outer:tbs_end]
    sig_alg = der[parts[1][1] : parts[1][3]]
    sig_bits = der[parts[2][2] : parts[2][3]]

    tbs = _children(der, tbs_start, tbs_end)
    if not tbs or tbs[0][0] != 0xA0:
        raise Failure("certificate has no explicit version (not v3)")
    if der[tbs[0][2] : tbs[0][3]] != bytes.fromhex("020102"):
        raise Failure("certificate is not version 3")
    if len(tbs) < 7:
        raise Failure("tbsCertificate has too few fields")
    tbs_sig_alg = der[tbs[2][1] : tbs[2][3]]
    spki = der[tbs[6][1] : tbs[6][3]]

    # Rules 2 and 3.
    if len(spki) != 44 or not spki.startswith(ED25519_SPKI_PREFIX):
        raise Failure("subjectPublicKeyInfo is not a bare 32-byte id-Ed25519 key")
    public = spki[len(ED25519_SPKI_PREFIX) :]
    check_public_key(public)
    if sig_alg != ED25519_ALG or tbs_sig_alg != ED25519_ALG:
        raise Failure("signature algorithms are not id-Ed25519 without parameters")
    if len(sig_bits) != 65 or sig_bits[0] != 0:
        raise Failure("signature BIT STRING is not 64 whole bytes")

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise Failure(f"certificate does not parse: {exc}") from exc
    if cert.version != x509.Version.v3:
        raise Failure("certificate is not version 3")

    # Rule 4 (inclusive bounds).
    now = datetime.datetime.now(datetime.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise Failure(
            f"certificate not valid now ({cert.not_valid_before_utc} .. "
            f"{cert.not_valid_after_utc})"
        )

    # Rule 5.
    try:
        extensions = list(cert.extensions)
    except (ValueError, x509.DuplicateExtension) as exc:
        raise Failure(f"certificate extensions do not parse: {exc}") from exc
    for ext in extensions:
        if ext.critical and ext.oid not in CRITICAL_ALLOWED:
            raise Failure(f"extension {ext.oid.dotted_string} is critical")

    # Rule 6: self-signed under its own key, strictly.
    verify_strict(public, sig_bits[1:], tbs_bytes)

    # Rule 9: the kind in a handshake must be node.
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if any(a.value == "user" for a in ous):
        raise Failure("server certificate is of kind user, a node was expected")

    # Rule 8.
    ident = node_id_of(public)
    bits = puzzle_bits(ident)
    if bits < difficulty:
        raise Failure(f"server id has {bits} puzzle bits, {difficulty} required")
    return ident


# --------------------------------------------------------------------------
# Our own identity: an Ed25519 key and a self-signed v3 certificate.


def make_client_identity() -> tuple[Ed25519PrivateKey, x509.Certificate]:
    key = Ed25519PrivateKey.generate()
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "interop"),
            x509.NameAttribute(NameOID.COMMON_NAME, "python-ping-client"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(os.urandom(16), "big") >> 1 | 1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, None)
    )
    return key, cert


# --------------------------------------------------------------------------
# Framing and the CBOR profile (§3, §4).


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def unframe(data: bytes) -> bytes:
    if len(data) < 4:
        raise Failure(f"answer shorter than a frame header ({len(data)} bytes)")
    (length,) = struct.unpack(">I", data[:4])
    if not 1 <= length <= MAX_BODY:
        raise Failure(f"answer frame announces {length} bytes")
    body = data[4:]
    if len(body) != length:
        raise Failure(f"answer frame announces {length} bytes, carries {len(body)}")
    return body


def _is_uint(v: object, limit: int) -> bool:
    return type(v) is int and 0 <= v <= limit


def decode_message(body: bytes) -> list:
    """Decodes and validates one message under the strict profile of §4."""
    try:
        msg = cbor2.loads(body)
    except Exception as exc:  # cbor2 raises several types
        raise Failure(f"answer is not CBOR: {exc}") from exc
    try:
        canonical = cbor2.dumps(msg, canonical=True)
    except Exception as exc:
        raise Failure(f"answer does not re-encode: {exc}") from exc
    if canonical != body:
        raise Failure(f"answer is not canonical CBOR: {body.hex()}")
    if type(msg) is not list or not msg or type(msg[0]) is not int:
        raise Failure(f"answer is not a message array: {msg!r}")
    kind = msg[0]
    if kind == MSG_PING:
        ok = len(msg) == 2 and _is_uint(msg[1], 2**64 - 1)
    elif kind == MSG_PONG:
        ok = (
            len(msg) == 4
            and _is_uint(msg[1], 2**64 - 1)
            and type(msg[2]) is bytes
            and len(msg[2]) in (4, 16)
            and _is_uint(msg[3], 65535)
        )
    elif kind == MSG_ERROR:
        ok = (
            len(msg) == 3
            and _is_uint(msg[1], 65535)
            and type(msg[2]) is str
            and len(msg[2].encode("utf-8")) <= MAX_REASON
        )
    else:
        raise Failure(f"answer has unknown message type {kind}")
    if not ok:
        raise Failure(f"answer does not match the schema: {msg!r}")
    return msg


def jsonable(v: object) -> object:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    return v


# --------------------------------------------------------------------------
# QUIC.

# aioquic keeps only parsed certificates; record the exact bytes and count
# the server sent so that rules 1 and "exactly one certificate" can be
# checked on the wire form.
_received_chains: list[list[bytes]] = []
_orig_pull_certificate = aioquic_tls.pull_certificate


def _recording_pull_certificate(buf):  # type: ignore[no-untyped-def]
    certificate = _orig_pull_certificate(buf)
    _received_chains.append([der for der, _ in certificate.certificates])
    return certificate


aioquic_tls.pull_certificate = _recording_pull_certificate


class Client(QuicConnectionProtocol):
    """Records how the connection ended."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.terminated: events.ConnectionTerminated | None = None

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.ConnectionTerminated) and self.terminated is None:
            self.terminated = event
        super().quic_event_received(event)

    def close_description(self) -> dict | None:
        t = self.terminated
        if t is None:
            return None
        return {
            "application": t.frame_type is None,
            "error_code": t.error_code,
            "reason": t.reason_phrase,
        }


def parse_addr(s: str) -> tuple[str, int]:
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise Failure(f"address {s!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def format_observed(ip: bytes, port: int) -> str:
    addr = ipaddress.ip_address(ip)
    if addr.version == 6:
        return f"[{addr}]:{port}"
    return f"{addr}:{port}"


async def run(args: argparse.Namespace) -> dict:
    host, port = parse_addr(args.addr)
    key, cert = make_client_identity()
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=[ALPN],
        verify_mode=ssl.CERT_NONE,  # §2.1 is checked below, by hand
        server_name=SNI,
        idle_timeout=30.0,
    )
    config.certificate = cert
    config.private_key = key

    if args.raw_hex is not None:
        try:
            request = bytes.fromhex(args.raw_hex)
        except ValueError as exc:
            raise Failure(f"--raw-hex is not hex: {exc}") from exc
        nonce = None
    else:
        nonce = int.from_bytes(os.urandom(8), "big")
        request = frame(cbor2.dumps([MSG_PING, nonce], canonical=True))

    made: list[Client] = []

    def make_protocol(*a, **kw) -> Client:  # type: ignore[no-untyped-def]
        made.append(Client(*a, **kw))
        return made[-1]

    try:
        async with connect(
            host, port, configuration=config, create_protocol=make_protocol
        ) as conn:
            quic = conn._quic
            if quic.tls.alpn_negotiated != ALPN:
                raise Failure(f"server negotiated ALPN {quic.tls.alpn_negotiated!r}")
            if not _received_chains:
                raise Failure("server certificate was not seen")
            peer_id = verify_node_certificate(_received_chains[-1], args.difficulty)
            if args.expect_id is not None and peer_id.hex() != args.expect_id.lower():
                raise Failure(
                    f"server NodeId {peer_id.hex()} is not the expected {args.expect_id}"
                )

            reader, writer = await conn.create_stream()
            writer.write(request)
            writer.write_eof()
            try:
                data = await asyncio.wait_for(reader.read(), TIMEOUT)
            except asyncio.TimeoutError as exc:
                raise Failure("no answer within 10 s") from exc
            if not data:
                raise Failure(
                    f"stream ended without an answer; close: {conn.close_description()}"
                )
            msg = decode_message(unframe(data))

            if nonce is None:
                # Give a disconnecting node a moment to send its close.
                try:
                    await asyncio.wait_for(conn.wait_closed(), 1.0)
                except asyncio.TimeoutError:
                    pass
                return {
                    "peer_id": peer_id.hex(),
                    "answer": jsonable(msg),
                    "closed": conn.close_description(),
                }

            if msg[0] != MSG_PONG:
                raise Failure(f"answer is not a Pong: {msg!r}")
            if msg[1] != nonce:
                raise Failure(f"Pong nonce {msg[1]:#x} does not echo {nonce:#x}")
            # §4.5 step 4: leaving the block closes with application code 0.
            return {
                "peer_id": peer_id.hex(),
                "nonce_ok": True,
                "observed": format_observed(msg[2], msg[3]),
            }
    except ConnectionError as exc:
        desc = made[0].close_description() if made else None
        raise Failure(f"connection failed ({exc!r}); close: {desc}") from exc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addr", help="HOST:PORT of the node")
    parser.add_argument("--expect-id", help="refuse a node with another NodeId (hex)")
    parser.add_argument(
        "--difficulty",
        type=int,
        default=0,
        help="minimum puzzle bits of the node's id (default 0; overlays use 20)",
    )
    parser.add_argument("--raw-hex", help="send this framed request instead of a Ping")
    args = parser.parse_args()
    if args.expect_id is not None:
        try:
            if len(bytes.fromhex(args.expect_id)) != 32:
                raise ValueError("not 32 bytes")
        except ValueError as exc:
            print(f"ping_client: --expect-id: {exc}", file=sys.stderr)
            return 1
    try:
        result = asyncio.run(asyncio.wait_for(run(args), 3 * TIMEOUT))
    except Failure as exc:
        print(f"ping_client: {exc}", file=sys.stderr)
        return 1
    except (asyncio.TimeoutError, OSError) as exc:
        print(f"ping_client: {exc!r}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""An independent implementation of docs/protocol.md §7.9 (key
derivation of profiles and private records), with the `cryptography`
package: reads a user's identity.key and encryption.key (PKCS#8 PEM) and
prints, as one JSON line, what it derives.

Usage: private_slot.py USER_DIR SLOT_NAME
"""
import base64
import hashlib
import hmac
import json
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey


def load(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def load_ed25519_seed(path):
    """The seed of an Ed25519 PKCS#8 key. identity.key is PKCS#8 v2 (RFC
    5958, with the public key), which `cryptography` (like OpenSSL 3)
    does not read: the seed is taken from the DER by hand, after the
    fixed prefix every Ed25519 key has (version, OID 1.3.101.112, and the
    two OCTET STRING headers)."""
    with open(path, "rb") as f:
        lines = f.read().decode().strip().splitlines()
    der = base64.b64decode("".join(l for l in lines if not l.startswith("-----")))
    prefix = bytes.fromhex("300506032b657004220420")
    at = der.index(prefix) + len(prefix)
    return der[at : at + 32]


def raw_public(key):
    return key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def main():
    user_dir, slot = sys.argv[1], sys.argv[2]
    seed = load_ed25519_seed(f"{user_dir}/identity.key")
    identity = Ed25519PrivateKey.from_private_bytes(seed)
    encryption = load(f"{user_dir}/encryption.key")
    assert isinstance(encryption, X25519PrivateKey)
    user_id = hashlib.sha256(b"p2psip-user-id-v1" + raw_public(identity)).digest()
    # HKDF-SHA256 (RFC 5869), one block of output.
    prk = hmac.new(b"p2psip-private-v1", seed, hashlib.sha256).digest()
    okm = hmac.new(prk, user_id + slot.encode() + b"\x01", hashlib.sha256).digest()
    slot_public = raw_public(Ed25519PrivateKey.from_private_bytes(okm))
    print(
        json.dumps(
            {
                "user_id": user_id.hex(),
                "slot_public_key": slot_public.hex(),
                "record_key": hashlib.sha256(b"p2psip-private-v1" + slot_public).hexdigest(),
                "profile_key": hashlib.sha256(b"p2psip-profile-v1" + user_id).hexdigest(),
                "encryption_public_key": raw_public(encryption).hex(),
            }
        )
    )


if __name__ == "__main__":
    main()

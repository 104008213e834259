"""End-to-end encryption of peer-to-peer payloads: ECDH P-256, HKDF-SHA256 and AES-256-GCM.

Twin of ``static/disco/peer_crypto.js`` (WebCrypto); both are tested on the vectors of
``tests/vectors/peer_crypto.json``. The server relays these payloads and forwards the public
keys, but holds no private key, so it can neither read nor forge what peers send each other.

One round between peers ``A`` and ``B`` of task ``T``:

1. each peer makes a fresh (ephemeral) P-256 key pair for the round and sends its public key
   with ``ready`` (``publicKey``: base64 of the 65-byte uncompressed point); the server hands
   the round's keys to every peer with the ``peers`` list (``publicKeys``: id -> key);
2. ``A`` and ``B`` compute the same ECDH secret ``Z`` (the shared point's x coordinate, 32 bytes);
3. the key for ``A -> B`` is ``HKDF-SHA256(Z, salt = none, info = key_info(T, round, A, B), 32 bytes)``,
   ``B -> A`` has its own (the info names sender then receiver);
4. every payload ``A`` sends ``B`` is sealed as ``0x01 | nonce (12) | AES-GCM ciphertext and 16-byte tag``
   with ``nonce`` = a 96-bit big-endian counter of ``A``'s messages under that key (1, 2, ...),
   never repeated because the key exists for one round and one direction only, and the
   associated data ``associated_data(T, round, kind, A, B)``, which binds sender, receiver,
   round and kind (a share cannot be replayed as a partial sum, nor to another peer).

A payload that fails authentication raises ``PeerCryptoError`` with the reason; the caller
treats it like a missing payload (secure aggregation then keeps the local weights).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PROTOCOL = "disco-p2p-v1"
VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
PUBLIC_KEY_BYTES = 65
# The smallest sealed payload: version byte, nonce and tag around an empty plaintext.
OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES


class PeerCryptoError(ValueError):
    """A public key or a sealed payload was refused; the message says why."""


def _canonical(fields: dict) -> bytes:
    """Compact JSON, keys in the given order: the same bytes as ``JSON.stringify`` in the browser."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


def key_info(task: str, round_number: int, sender: str, receiver: str) -> bytes:
    """HKDF's ``info``: the protocol, task, round, sender and receiver (one key per round and direction)."""
    return _canonical({"p": PROTOCOL, "task": task, "round": round_number, "from": sender, "to": receiver})


def associated_data(task: str, round_number: int, kind: str, sender: str, receiver: str) -> bytes:
    """AES-GCM's associated data: authenticated, not encrypted; binds the payload to its place in the protocol."""
    return _canonical({"p": PROTOCOL, "task": task, "round": round_number, "kind": kind, "from": sender,
                       "to": receiver})


def nonce(counter: int) -> bytes:
    """The ``counter``-th message's nonce under one key: 96-bit big-endian (counters start at 1)."""
    if not isinstance(counter, int) or not 0 < counter < 2**96:
        raise PeerCryptoError(f"A nonce counter is a whole number from 1 to 2**96 - 1 (got {counter!r}).")
    return counter.to_bytes(NONCE_BYTES, "big")


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 private key from the operating system's CSPRNG."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_from_int(value: int) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from its scalar: for the shared test vectors only."""
    return ec.derive_private_key(value, ec.SECP256R1())


def encode_public_key(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    """Base64 of the 65-byte uncompressed point (``0x04 | x | y``), as WebCrypto's ``raw`` export."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return base64.b64encode(public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)).decode()


def decode_public_key(text: object) -> ec.EllipticCurvePublicKey:
    """The public key ``encode_public_key`` wrote; ``PeerCryptoError`` unless it is a point of P-256."""
    if not isinstance(text, str) or len(text) > 128:
        raise PeerCryptoError("A public key is the base64 of a 65-byte uncompressed P-256 point.")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PeerCryptoError("A public key is the base64 of a 65-byte uncompressed P-256 point "
                              "(this one is not base64).") from None
    if len(raw) != PUBLIC_KEY_BYTES or raw[0] != 4:
        raise PeerCryptoError(f"A public key is a 65-byte uncompressed P-256 point starting with 0x04 "
                              f"(got {len(raw)} bytes).")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise PeerCryptoError("The public key is not a point of the P-256 curve.") from None


def shared_secret(private: ec.EllipticCurvePrivateKey, public: ec.EllipticCurvePublicKey) -> bytes:
    """The ECDH secret: the x coordinate of the shared point (32 bytes, WebCrypto's ``deriveBits(..., 256)``)."""
    return private.exchange(ec.ECDH(), public)


def derive_key(secret: bytes, task: str, round_number: int, sender: str, receiver: str) -> bytes:
    """The AES-256-GCM key for ``sender -> receiver`` in this task's round ``round_number``."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=key_info(task, round_number, sender, receiver)).derive(secret)


def seal(key: bytes, counter: int, aad: bytes, plaintext: bytes) -> bytes:
    """``0x01 | nonce | ciphertext || tag``."""
    iv = nonce(counter)
    return bytes([VERSION]) + iv + AESGCM(key).encrypt(iv, bytes(plaintext), aad)


def open_sealed(key: bytes, aad: bytes, sealed: bytes | bytearray | memoryview) -> bytes:
    """The plaintext of a sealed payload; ``PeerCryptoError`` when it is malformed or fails authentication."""
    data = bytes(sealed)
    if len(data) < OVERHEAD:
        raise PeerCryptoError(f"A sealed payload has at least {OVERHEAD} bytes (version, nonce, tag); "
                              f"got {len(data)}.")
    if data[0] != VERSION:
        raise PeerCryptoError(f"Unknown sealed-payload version {data[0]} (this peer speaks {VERSION}).")
    try:
        return AESGCM(key).decrypt(data[1:1 + NONCE_BYTES], data[1 + NONCE_BYTES:], aad)
    except InvalidTag:
        raise PeerCryptoError("The payload failed authentication (AES-GCM): it was altered, or not sealed by "
                              "this peer for this round, kind and receiver.") from None


@dataclass
class RoundKeys:
    """One peer's keys for one round: seal what it sends each other peer, open what they send it."""

    task: str
    round: int
    me: str
    private: ec.EllipticCurvePrivateKey
    public_keys: dict[str, str]
    _keys: dict[tuple[str, str], bytes] = field(default_factory=dict)
    _counters: dict[str, int] = field(default_factory=dict)

    def _key(self, sender: str, receiver: str) -> bytes:
        pair = (sender, receiver)
        if pair not in self._keys:
            other = receiver if sender == self.me else sender
            text = self.public_keys.get(other)
            if text is None:
                raise PeerCryptoError(f"Peer {other} announced no public key for round {self.round}: nothing can be "
                                      "exchanged with it securely.")
            secret = shared_secret(self.private, decode_public_key(text))
            self._keys[pair] = derive_key(secret, self.task, self.round, sender, receiver)
        return self._keys[pair]

    def seal(self, to: str, kind: str, plaintext: bytes) -> bytes:
        counter = self._counters.get(to, 0) + 1
        self._counters[to] = counter
        return seal(self._key(self.me, to), counter, associated_data(self.task, self.round, kind, self.me, to),
                    plaintext)

    def open(self, sender: str, kind: str, sealed: bytes) -> bytes:
        return open_sealed(self._key(sender, self.me), associated_data(self.task, self.round, kind, sender, self.me),
                           sealed)


__all__ = ["OVERHEAD", "PROTOCOL", "PeerCryptoError", "RoundKeys", "associated_data", "decode_public_key",
           "derive_key", "encode_public_key", "generate_private_key", "key_info", "nonce", "open_sealed",
           "private_key_from_int", "seal", "shared_secret"]

#!/usr/bin/env python3
"""Test vectors for protocol v4's keys, pads, MACs, transcript and owned-cell layout, computed apart
from the Rust code.

Follows the formulas in core/src/crypto.rs and core/src/transcript.rs with:
- Ristretto255 Diffie-Hellman from shuffle.py beside this file (written from RFC 9496 and
  checked there against the RFC's vectors; imported, not copied);
- ChaCha20 and ChaCha20-Poly1305 from Python's `cryptography` package (XChaCha20-Poly1305
  is the HChaCha20 subkey below with `cryptography`'s ChaCha20-Poly1305);
- HKDF-SHA256 (RFC 5869), HMAC-SHA256 and SHA-256 from the standard `hmac`/`hashlib`;
- the pads' XChaCha12 (draft-irtf-cfrg-xchacha's construction with 12 rounds, the
  `chacha20` crate's `XChaCha12`): `cryptography` has no XChaCha and no 12-round ChaCha,
  so the ChaCha block function is written here from RFC 8439's pseudocode (section 2.3)
  with the number of rounds as a parameter, and HChaCha on it. The script checks, at 20
  rounds, that block function against RFC 8439's section 2.3.2 vector and against
  `cryptography`'s ChaCha20, and HChaCha against the draft's section 2.2.1 vector; at 12
  rounds, the block function against draft-strombergson-chacha-test-vectors-00's TC1
  (256-bit key); it refuses to print if any differs. The pads are then HChaCha12 +
  ChaCha12 of that one function. No pycryptodome.

The inputs are those of `crypto::tests::derivation_vectors`,
`transcript::tests::transcript_vectors` and
`wire::slot::tests::sealed_cell_vector_and_round_trip`. Run: `python3 docs/vectors/pads.py`;
it prints `name hex` lines (for the head chain also `name.seq` and `name.bytes` in decimal).
core/tests/pad_vectors.rs runs it and compares every line with the value the core computes.
"""

import contextlib
import hashlib
import hmac
import os
import struct
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shuffle  # noqa: E402  (ristretto255 of RFC 9496, checked by its own self-test)

MASK = 0xFFFFFFFF


def rotl(v, n):
    return ((v << n) & MASK) | (v >> (32 - n))


def quarter_round(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & MASK
    s[d] = rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & MASK
    s[b] = rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & MASK
    s[d] = rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & MASK
    s[b] = rotl(s[b] ^ s[c], 7)


PAD_ROUNDS = 12


def rounds(state, n):
    """`n` ChaCha rounds (RFC 8439 section 2.3 has 20), without the final addition."""
    assert n % 2 == 0
    s = list(state)
    for _ in range(n // 2):
        quarter_round(s, 0, 4, 8, 12)
        quarter_round(s, 1, 5, 9, 13)
        quarter_round(s, 2, 6, 10, 14)
        quarter_round(s, 3, 7, 11, 15)
        quarter_round(s, 0, 5, 10, 15)
        quarter_round(s, 1, 6, 11, 12)
        quarter_round(s, 2, 7, 8, 13)
        quarter_round(s, 3, 4, 9, 14)
    return s


CONSTANTS = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)


def chacha_block(key, counter, nonce12, n_rounds):
    """RFC 8439 section 2.3: one 64-byte keystream block, after `n_rounds` rounds."""
    state = list(CONSTANTS) + list(struct.unpack("<8I", key)) + [counter]
    state += list(struct.unpack("<3I", nonce12))
    out = [(x + y) & MASK for x, y in zip(rounds(state, n_rounds), state)]
    return struct.pack("<16I", *out)


def chacha_own(key, nonce12, n, counter=0, n_rounds=20):
    blocks = b"".join(
        chacha_block(key, counter + i, nonce12, n_rounds) for i in range((n + 63) // 64)
    )
    return blocks[:n]


def chacha20_own(key, nonce12, n, counter=0):
    return chacha_own(key, nonce12, n, counter, 20)


def chacha20_lib(key, nonce12, n, counter=0):
    # cryptography's ChaCha20 takes counter (u32 LE) | nonce (12) as its 16-byte nonce.
    full = struct.pack("<I", counter) + nonce12
    return Cipher(algorithms.ChaCha20(key, full), mode=None).encryptor().update(bytes(n))


def hchacha(key, nonce16, n_rounds):
    """draft-irtf-cfrg-xchacha section 2.2: words 0-3 and 12-15 of the rounds, no addition."""
    state = list(CONSTANTS) + list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))
    s = rounds(state, n_rounds)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def hchacha20(key, nonce16):
    return hchacha(key, nonce16, 20)


def xchacha(key, nonce24, n, n_rounds):
    """draft-irtf-cfrg-xchacha section 2.3 with `n_rounds` rounds in both steps: subkey from
    nonce[0..16], then ChaCha with nonce 0^4 | nonce[16..24], counter 0."""
    subkey = hchacha(key, nonce24[:16], n_rounds)
    return chacha_own(subkey, bytes(4) + nonce24[16:], n, 0, n_rounds)


def pad(key, nonce24, n):
    """A pad: XChaCha12 (core/src/crypto.rs, `pad_stream`)."""
    return xchacha(key, nonce24, n, PAD_ROUNDS)


def self_check():
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a00000000")
    # RFC 8439 section 2.3.2: the serialized block of this key and nonce, counter 1.
    assert chacha_block(key, 1, nonce, 20).hex() == (
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
        "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
    )
    assert chacha20_own(key, nonce, 200, 1) == chacha20_lib(key, nonce, 200, 1)
    subkey = hchacha20(key, bytes.fromhex("000000090000004a0000000031415927"))
    assert subkey.hex() == "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"
    # draft-strombergson-chacha-test-vectors-00, TC1 (all-zero 256-bit key and IV), 12
    # rounds: the first block. With a zero nonce and counter the original ChaCha's state is
    # RFC 8439's.
    assert chacha_block(bytes(32), 0, bytes(12), PAD_ROUNDS).hex() == (
        "9bf49a6a0755f953811fce125f2683d50429c3bb49e074147e0089a52eae155f"
        "0564f879d27ae3c02ce82834acfa8c793a629f2ca0de6919610be82f411326be"
    )
    # The XChaCha20 construction at 20 rounds is HChaCha20 + `cryptography`'s ChaCha20.
    nonce24 = bytes(range(24))
    assert xchacha(key, nonce24, 200, 20) == chacha20_lib(
        hchacha20(key, nonce24[:16]), bytes(4) + nonce24[16:], 200
    )


def hkdf_extract(salt, ikm):
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk, info, n):
    out, block, i = b"", b"", 1
    while len(out) < n:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:n]


def scalar(secret):
    """A pad secret: 32 bytes read little-endian, reduced modulo the group order."""
    return int.from_bytes(secret, "little") % shuffle.L


def public(secret):
    return (shuffle.G * scalar(secret)).encode()


def ristretto_dh(secret, peer_public):
    peer = shuffle.decode(peer_public)
    assert peer is not None and peer != shuffle.IDENTITY
    return (peer * scalar(secret)).encode()


def pad_bit(pad, bit):
    return pad[bit // 8] >> (bit % 8) & 1


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def sha256(*parts):
    return hashlib.sha256(b"".join(parts)).digest()


def main():
    self_check()
    with contextlib.redirect_stdout(sys.stderr):
        shuffle.check_ristretto()
    out = []

    def emit(name, value):
        out.append(f"{name} {value.hex() if isinstance(value, bytes) else value}")

    client, trustee = bytes([0x11]) * 32, bytes([0x22]) * 32
    group, session = bytes([0x33]) * 16, bytes([0x44]) * 16
    trustee_nonce, client_nonce = bytes([0x55]) * 16, bytes([0x66]) * 16
    pad_nonce, view = bytes([0x77]) * 24, bytes([0x88]) * 32
    cpub, tpub = public(client), public(trustee)
    dh = ristretto_dh(client, tpub)
    assert dh == ristretto_dh(trustee, cpub)
    prk = hkdf_extract(group + session, dh)
    pad_key = hkdf_expand(prk, b"dissent-rs v3 pad key" + cpub + tpub, 32)
    mac_key = hkdf_expand(prk, b"dissent-rs v3 mac key" + cpub + tpub, 32)
    interval_key = hkdf_expand(
        pad_key, b"dissent-rs v4 interval" + u32(7) + trustee_nonce + client_nonce, 32
    )
    pads = pad(interval_key, pad_nonce, 72)
    # Resume block: capacity 65536, flags 3 (a resume point with a last interval), epoch
    # 04x16, seq 77, 1000 bytes, last interval 9.
    resume = (
        u32(65536) + bytes([3]) + bytes([4]) * 16 + (77).to_bytes(8, "big")
        + (1000).to_bytes(8, "big") + u32(9)
    )
    assert len(resume) == 41
    proof = hmac.new(
        mac_key,
        b"dissent-rs v3 presence" + group + session + u16(5) + client_nonce + resume,
        hashlib.sha256,
    ).digest()[:16]
    confirm = hmac.new(mac_key, b"dissent-rs v3 confirm" + view, hashlib.sha256).digest()[:16]
    ack = hmac.new(mac_key, b"dissent-rs v3 ack" + view, hashlib.sha256).digest()[:16]
    emit("client_pub", cpub)
    emit("trustee_pub", tpub)
    emit("dh", dh)
    emit("pad_key", pad_key)
    emit("mac_key", mac_key)
    emit("interval_key", interval_key)
    emit("pad[0..16]", pads[:16])
    emit("pad[64..72]", pads[64:])
    # Single pad bits, as a blame reveal states them (bit 0, bit 13, bit 521).
    emit("pad_bits.0.13.521", bytes([pad_bit(pads, 0), pad_bit(pads, 13), pad_bit(pads, 521)]))
    emit("presence_proof", proof)
    emit("confirmation", confirm)
    emit("acknowledgement", ack)

    # Transcript: T_start of a short IntervalStart body, then one Slot exchange.
    t_start = sha256(b"dissent-rs v2 interval", bytes([1, 2, 3]))
    kind = bytes([1]) + u16(0x0203) + u32(0x00000400)
    outputs, head = bytes([0, 1, 0]), bytes([0x99]) * 32
    t_e = sha256(
        b"dissent-rs v2 exchange", t_start, u64(0x0102030405060708), kind,
        u32(len(outputs)), outputs, head,
    )
    emit("t_start", t_start)
    emit("t_exchange", t_e)
    emit("exchange_pad_nonce", t_e[:24])

    # Downstream chain: genesis, a data record, a close record, a grant of 256 KiB (its
    # credit hashed as 4 bytes of data, u32 BE, counted in the head's bytes).
    d0 = sha256(b"dissent-rs v2 downstream", bytes([0xAA]) * 16)
    conn, data = 0x00020005, b"hi"
    d1 = sha256(b"dissent-rs v2 record", d0, u64(1), bytes([0]), u32(conn), u32(len(data)), data)
    d2 = sha256(b"dissent-rs v2 record", d1, u64(2), bytes([1]), u32(conn), u32(0))
    d3 = sha256(b"dissent-rs v2 record", d2, u64(3), bytes([2]), u32(conn), u32(4), u32(0x40000))
    for name, seq, nbytes, h in (
        ("genesis", 0, 0, d0), ("data", 1, 2, d1), ("close", 2, 2, d2), ("grant", 3, 6, d3)
    ):
        emit(f"{name}.seq", seq)
        emit(f"{name}.bytes", nbytes)
        emit(f"{name}.hash", h)

    # Owned cells (core/src/wire/slot.rs): the slot key and a sealed cell.
    # XChaCha20-Poly1305: HChaCha20 subkey (above) + `cryptography`'s ChaCha20-Poly1305.
    pseudonym, relay = bytes([9]) * 32, bytes([11]) * 32
    slot_group, slot_session = bytes([1]) * 16, bytes([2]) * 16
    slot_dh = ristretto_dh(pseudonym, public(relay))
    assert slot_dh == ristretto_dh(relay, public(pseudonym))
    slot_key = hkdf_expand(
        hkdf_extract(slot_session, slot_dh), b"dissent-rs v3 slot key" + slot_group + u16(2), 32
    )
    emit("pseudonym_pub", public(pseudonym))
    emit("relay_dh_pub", public(relay))
    emit("slot_key", slot_key)
    # A 128-byte cell: Next 300, Open of Conn# 0x00030001 with "hi", zeros; nonce 5A×24;
    # interval 7, slot 2, ordinal 5, view 03×32.
    nonce = bytes([0x5A]) * 24
    body = u16(300) + u32(0x00030001) + bytes([1]) + u16(2) + b"hi"
    body += bytes(128 - 40 - len(body))
    aad = b"dissent-rs v3 slot" + slot_group + slot_session + bytes([3]) * 32
    aad += u32(7) + u16(2) + u64(5) + u32(128)
    sealed = ChaCha20Poly1305(hchacha20(slot_key, nonce[:16])).encrypt(
        bytes(4) + nonce[16:], body, aad
    )
    cell = nonce + sealed
    assert len(cell) == 128
    emit("owned_cell[24..40]", cell[24:40])
    emit("owned_cell[112..128]", cell[112:])

    # Trap bytes (core/src/wire/slot.rs): the relay's trap secret and point of interval 7
    # (epoch 08×16), the slot's trap point and key, the trap offsets of a 128-byte cell of
    # exchange 300 and an owned 128-byte cell laid out around them: a 120-byte sealed cell
    # (the record above; ordinal 5) in the other bytes, in order.
    relay_scalar = scalar(relay).to_bytes(32, "little")
    r_bytes = hkdf_expand(
        hkdf_extract(slot_session, relay_scalar),
        b"dissent-rs v3 trap secret" + bytes([8]) * 16 + u32(7),
        32,
    )
    r = int.from_bytes(r_bytes, "little") % shuffle.L
    trap_point = (shuffle.G * r).encode()
    z = (shuffle.decode(public(pseudonym)) * r).encode()
    assert z == ristretto_dh(pseudonym, trap_point)
    trap_key = hkdf_expand(
        hkdf_extract(slot_session, z),
        b"dissent-rs v3 trap key" + slot_group + u32(7) + u16(2),
        32,
    )
    emit("trap_secret", r.to_bytes(32, "little"))
    emit("trap_point", trap_point)
    emit("trap_z", z)
    emit("trap_key", trap_key)
    stream = chacha20_lib(trap_key, bytes(4) + u64(300), 8)
    assert stream == chacha20_own(trap_key, bytes(4) + u64(300), 8)
    traps = [16 * k + stream[k] % 16 for k in range(8)]
    emit("traps(300, 128)", ",".join(str(t) for t in traps))
    body = u16(300) + u32(0x00030001) + bytes([1]) + u16(2) + b"hi"
    body += bytes(120 - 40 - len(body))
    aad = b"dissent-rs v3 slot" + slot_group + slot_session + bytes([3]) * 32
    aad += u32(7) + u16(2) + u64(5) + u32(120)
    sealed = nonce + ChaCha20Poly1305(hchacha20(slot_key, nonce[:16])).encrypt(
        bytes(4) + nonce[16:], body, aad
    )
    assert len(sealed) == 120
    laid, at = bytearray(), 0
    for k in range(8):
        t = traps[k] - 16 * k
        laid += sealed[at : at + t] + bytes(1) + sealed[at + t : at + 15]
        at += 15
    assert len(laid) == 128 and all(laid[t] == 0 for t in traps)
    emit("laid_out[0..32]", bytes(laid[:32]))
    emit("laid_out[96..128]", bytes(laid[96:]))
    # The relay's DLEQ proof of Z is randomized; its context is fixed.
    emit(
        "trap_context",
        b"dissent-rs v3 trap" + slot_group + slot_session + u32(7) + u16(2),
    )

    print("\n".join(out))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Independent check of the epoch setup messages (protocol v3, docs/protocol.md §11).

Parses the Rust-produced vectors in docs/vectors/setup-vectors.txt with the layouts of
docs/protocol.md and checks, with code written here or in shuffle.py beside it:
- every Ed25519 identity signature (verification written from RFC 8032 §5.1.7, with its
  own point decoding; checked first against RFC 8032's test 1 and test 2),
  over "dissent-rs v3 setup" || group || the message before its signature;
- each trustee key's proof of knowledge and the submission's proof of knowledge of its
  randomness (shuffle.py's DLEQ verifier, Ristretto255 and merlin), with their contexts;
- the Open's fields and participants bitmap, the Chunk's fields.
Run: `python3 docs/vectors/setup.py [VECTORS]`. Exits non-zero on any failure; the last
line starts with "all setup vectors verified".
"""

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shuffle  # noqa: E402  (Ristretto255, merlin, the DLEQ verifier)

# ---------------------------------------------------------------- Ed25519 (RFC 8032)

Q = 2**255 - 19
ELL = 2**252 + 27742317777372353535851937790883648493
ED_D = (-121665 * pow(121666, Q - 2, Q)) % Q
SQRT_M1 = pow(2, (Q - 1) // 4, Q)


def ed_add(p, q):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % Q
    b = (y1 + x1) * (y2 + x2) % Q
    c = 2 * t1 * t2 * ED_D % Q
    d = 2 * z1 * z2 % Q
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % Q, g * h % Q, f * g % Q, e * h % Q)


def ed_mul(s, p):
    r = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            r = ed_add(r, p)
        p = ed_add(p, p)
        s >>= 1
    return r


def ed_equal(p, q):
    return (p[0] * q[2] - q[0] * p[2]) % Q == 0 and (p[1] * q[2] - q[1] * p[2]) % Q == 0


def ed_recover_x(y, sign):
    if y >= Q:
        return None
    x2 = (y * y - 1) * pow(ED_D * y * y + 1, Q - 2, Q)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (Q + 3) // 8, Q)
    if (x * x - x2) % Q != 0:
        x = x * SQRT_M1 % Q
    if (x * x - x2) % Q != 0:
        return None
    if (x & 1) != sign:
        x = Q - x
    return x


def ed_decode(b):
    if len(b) != 32:
        return None
    y = int.from_bytes(b, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = ed_recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % Q)


def ed_encode(p):
    zinv = pow(p[2], Q - 2, Q)
    x, y = p[0] * zinv % Q, p[1] * zinv % Q
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


ED_G_Y = 4 * pow(5, Q - 2, Q) % Q
ED_G = (ed_recover_x(ED_G_Y, 0), ED_G_Y, 1, ed_recover_x(ED_G_Y, 0) * ED_G_Y % Q)


def ed_public(seed):
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return ed_encode(ed_mul(a, ED_G))


def ed_verify(public, message, signature):
    """RFC 8032 §5.1.7 with the cofactorless equation (as verify_strict), canonical S."""
    a = ed_decode(public)
    r = ed_decode(signature[:32])
    if a is None or r is None or len(signature) != 64:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= ELL:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % ELL
    return ed_equal(ed_mul(s, ED_G), ed_add(r, ed_mul(k, a)))


def check_ed25519():
    # RFC 8032 §7.1, TEST 1 and TEST 2.
    for seed, pub, msg, sig in [
        ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
         "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
         "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
         "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
        ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
         "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
         "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
         "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ]:
        seed, pub, msg, sig = (bytes.fromhex(x) for x in (seed, pub, msg, sig))
        assert ed_public(seed) == pub, "RFC 8032 public key"
        assert ed_verify(pub, msg, sig), "RFC 8032 signature"
        bad = bytearray(sig)
        bad[0] ^= 1
        assert not ed_verify(pub, msg, bytes(bad))
    print("ed25519 (RFC 8032 tests 1, 2) ok")


# ---------------------------------------------------------------- setup messages

CONTEXT = b"dissent-rs v3 setup"
HEADER = 10


def header(m, tag):
    if len(m) < HEADER or m[0] != tag:
        raise ValueError("wrong tag")
    return int.from_bytes(m[1:9], "big"), m[9]


def signed(m, group, public):
    return ed_verify(public, CONTEXT + group + m[:-64], m[-64:])


def check(v):
    group = v["group"]
    t0, t1, c0 = v["trustee0_identity"], v["trustee1_identity"], v["client0_identity"]

    o = v["open"]
    epoch, attempt = header(o, 1)
    assert (epoch, attempt) == (7, 0)
    assert o[10:42] == group
    trustees = int.from_bytes(o[42:44], "big")
    clients = int.from_bytes(o[44:46], "big")
    participants = o[46:]
    assert trustees == 0b11 and clients == 3
    assert len(participants) == (clients + 7) // 8 and participants == bytes([0b101])
    print("open ok")

    shares = []
    for j, ident in [(0, t0), (1, t1)]:
        k = v["key%d" % j]
        epoch, attempt = header(k, 2)
        assert len(k) == HEADER + 1 + 32 + 64 + 64
        assert k[10] == j
        share, proof = k[11:43], k[43:107]
        assert signed(k, group, ident), "key%d signature" % j
        ctx = b"dissent-rs v3 setup key" + group + epoch.to_bytes(8, "big") + bytes([attempt, j])
        assert shuffle.dleq_verify(ctx, share, share_base(), share, proof), "key%d proof" % j
        shares.append(shuffle.decode(share))
    print("keys ok")

    s = v["submit0"]
    epoch, attempt = header(s, 3)
    assert len(s) == HEADER + 2 + 64 + 64 + 64
    client = int.from_bytes(s[10:12], "big")
    a, b, proof = s[12:44], s[44:76], s[76:140]
    assert client == 0
    assert signed(s, group, c0), "submit0 signature"
    ctx = (b"dissent-rs v3 setup submit" + group + epoch.to_bytes(8, "big") + bytes([attempt])
           + client.to_bytes(2, "big") + a)
    assert shuffle.decode(a) is not None and shuffle.decode(b) is not None
    assert shuffle.dleq_verify(ctx, b, share_base(), b, proof), "submit0 proof"
    print("submission ok")

    c = v["chunk"]
    epoch, attempt = header(c, 4)
    assert (c[10], c[11]) == (1, 1)
    offset, length = int.from_bytes(c[12:16], "big"), int.from_bytes(c[16:18], "big")
    assert offset == 4096 and length == len(c) - 18 == 4 and c[18:] == bytes.fromhex("d0d1d2d3")
    print("chunk ok")

    se = v["seal"]
    header(se, 5)
    assert len(se) == HEADER + 2 + 32 + 64 and (se[10], se[11]) == (1, 2)
    assert se[12:44] == b"\xdd" * 32
    assert signed(se, group, t1), "seal signature"
    re = v["record"]
    header(re, 6)
    assert len(re) == HEADER + 1 + 32 + 32 + 64 and re[10] == 1
    assert re[11:43] == b"\xee" * 32 and re[43:75] == b"\x11" * 32
    assert signed(re, group, t1), "record signature"
    assert not signed(re, group, t0)
    print("seal and record ok")


def share_base():
    return shuffle.G.encode()


def main():
    check_ed25519()
    v = load(sys.argv[1] if len(sys.argv) > 1 else None)
    check(v)
    print("all setup vectors verified")


def load(path):
    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), "setup-vectors.txt")
    v = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 1)
            if parts[0]:
                v[parts[0]] = bytes.fromhex(parts[1] if len(parts) > 1 else "")
    return v


if __name__ == "__main__":
    try:
        main()
    except (AssertionError, ValueError, IndexError) as e:
        print("FAILED:", e)
        sys.exit(1)

#!/usr/bin/env python3
"""Independent check of the group operations and the proof of shuffle (protocol v3).

Verifies the Rust-produced vectors in docs/vectors/shuffle-vectors.txt with nothing but
Python's standard library and code written here from the specifications:
- Ristretto255 from RFC 9496 (field arithmetic, decode, encode, equality, the one-way map
  from 64 uniform bytes) on twisted Edwards extended coordinates; checked first against the
  RFC's appendix A vectors (multiples of the generator, invalid encodings, the one-way map);
- Keccak-f[1600] (FIPS 202), checked by building SHA3-256 on it and comparing with hashlib;
- STROBE-128 (the subset merlin uses: meta-AD, AD, PRF) and merlin transcripts, checked
  against merlin's published vector;
- the DLEQ proof, the message encoding, the decryption share and the Terelius-Wikstrom
  proof of shuffle as written in docs/protocol.md, verified equation by equation.

Then it tampers with copies (a swapped pair of output rows, a flipped proof byte, another
context, a wrong DH value) and requires each to fail. Run from the repository root:
`python3 docs/vectors/shuffle.py [VECTORS]` (default: shuffle-vectors.txt beside it).
Exits non-zero on any failure; the last line starts with "all vectors verified".
"""

import hashlib
import os
import sys

# ---------------------------------------------------------------- field and group (RFC 9496)

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P


def inv(x):
    return pow(x, P - 2, P)


def is_negative(x):
    return (x % P) & 1


def ct_abs(x):
    x %= P
    return (P - x) % P if is_negative(x) else x


SQRT_M1 = pow(2, (P - 1) // 4, P)


def sqrt_ratio_m1(u, v):
    """RFC 9496 section 4.2: (was_square, non-negative r with r^2 = u/v or SQRT_M1*u/v)."""
    u %= P
    v %= P
    v3 = v * v % P * v % P
    v7 = v3 * v3 % P * v % P
    r = u * v3 % P * pow(u * v7 % P, (P - 5) // 8, P) % P
    check = v * r % P * r % P
    correct = check == u
    flipped = check == (-u) % P
    flipped_i = check == (-u * SQRT_M1) % P
    if flipped or flipped_i:
        r = r * SQRT_M1 % P
    return correct or flipped, ct_abs(r)


# The RFC's constants, each checked against its definition below (section 4.1).
SQRT_AD_MINUS_ONE = 25063068953384623474111414158702152701244531502492656460079210482610430750235
INVSQRT_A_MINUS_D = 54469307008909316920995813868745141605393597292927456921205312896311721017578
ONE_MINUS_D_SQ = 1159843021668779879193775521855586647937357759715417654439879720876111806838
D_MINUS_ONE_SQ = 40440834346308536858101042469323190826248399146238708352240133220865137265952


class Point:
    """A twisted Edwards point (a = -1) in extended coordinates: x = X/Z, y = Y/Z, xy = T/Z."""

    __slots__ = ("x", "y", "z", "t")

    def __init__(self, x, y, z, t):
        self.x, self.y, self.z, self.t = x % P, y % P, z % P, t % P

    def __add__(self, o):
        a = (self.y - self.x) * (o.y - o.x) % P
        b = (self.y + self.x) * (o.y + o.x) % P
        c = self.t * 2 * D % P * o.t % P
        d = self.z * 2 * o.z % P
        e, f, g, h = b - a, d - c, d + c, b + a
        return Point(e * f, g * h, f * g, e * h)

    def __neg__(self):
        return Point(-self.x, self.y, self.z, -self.t)

    def __sub__(self, o):
        return self + (-o)

    def __mul__(self, k):
        k %= L
        acc = IDENTITY
        add = self
        while k:
            if k & 1:
                acc = acc + add
            add = add + add
            k >>= 1
        return acc

    __rmul__ = __mul__

    def __eq__(self, o):
        # RFC 9496 section 4.3.3.
        return (self.x * o.y - self.y * o.x) % P == 0 or (self.y * o.y - self.x * o.x) % P == 0

    def encode(self):
        """RFC 9496 section 4.3.2."""
        x0, y0, z0, t0 = self.x, self.y, self.z, self.t
        u1 = (z0 + y0) * (z0 - y0) % P
        u2 = x0 * y0 % P
        _, invsqrt = sqrt_ratio_m1(1, u1 * u2 * u2)
        den1 = invsqrt * u1 % P
        den2 = invsqrt * u2 % P
        z_inv = den1 * den2 % P * t0 % P
        ix0 = x0 * SQRT_M1 % P
        iy0 = y0 * SQRT_M1 % P
        enchanted = den1 * INVSQRT_A_MINUS_D % P
        rotate = is_negative(t0 * z_inv)
        x, y = (iy0, ix0) if rotate else (x0, y0)
        den_inv = enchanted if rotate else den2
        if is_negative(x * z_inv):
            y = -y
        s = ct_abs(den_inv * (z0 - y))
        return s.to_bytes(32, "little")


IDENTITY = Point(0, 1, 1, 0)


def decode(b):
    """RFC 9496 section 4.3.1; None for an invalid encoding."""
    if len(b) != 32:
        return None
    s = int.from_bytes(b, "little")
    if s >= P or is_negative(s):
        return None
    ss = s * s % P
    u1 = (1 - ss) % P
    u2 = (1 + ss) % P
    u2_sqr = u2 * u2 % P
    v = (-(D * u1 % P * u1) - u2_sqr) % P
    was_square, invsqrt = sqrt_ratio_m1(1, v * u2_sqr)
    den_x = invsqrt * u2 % P
    den_y = invsqrt * den_x % P * v % P
    x = ct_abs(2 * s * den_x)
    y = u1 * den_y % P
    t = x * y % P
    if not was_square or is_negative(t) or y == 0:
        return None
    return Point(x, y, 1, t)


def elligator(t):
    """RFC 9496 section 4.3.4, MAP."""
    r = SQRT_M1 * t % P * t % P
    u = (r + 1) * ONE_MINUS_D_SQ % P
    v = (-1 - r * D) * (r + D) % P
    was_square, s = sqrt_ratio_m1(u, v)
    s_prime = (-ct_abs(s * t)) % P
    if not was_square:
        s = s_prime
    c = P - 1 if was_square else r
    n = (c * (r - 1) % P * D_MINUS_ONE_SQ - v) % P
    w0 = 2 * s * v % P
    w1 = n * SQRT_AD_MINUS_ONE % P
    w2 = (1 - s * s) % P
    w3 = (1 + s * s) % P
    return Point(w0 * w3, w2 * w1, w1 * w3, w0 * w2)


def from_uniform_bytes(b):
    assert len(b) == 64
    t1 = int.from_bytes(b[:32], "little") & ((1 << 255) - 1)
    t2 = int.from_bytes(b[32:], "little") & ((1 << 255) - 1)
    return elligator(t1 % P) + elligator(t2 % P)


BASE_Y = 4 * inv(5) % P
BASE_X = 15112221349535400772501151409588531511454012693041857206046113283949847762202
G = Point(BASE_X, BASE_Y, 1, BASE_X * BASE_Y)


def check_ristretto():
    # Section 4.1's constants against their definitions (a = -1).
    assert SQRT_M1 * SQRT_M1 % P == P - 1
    assert SQRT_AD_MINUS_ONE * SQRT_AD_MINUS_ONE % P == (-D - 1) % P
    assert INVSQRT_A_MINUS_D * INVSQRT_A_MINUS_D % P * ((-1 - D) % P) % P == 1
    assert ONE_MINUS_D_SQ == (1 - D * D) % P
    assert D_MINUS_ONE_SQ == (D - 1) * (D - 1) % P
    assert (BASE_X * BASE_X * (P - 1) + BASE_Y * BASE_Y) % P == (1 + D * BASE_X * BASE_X % P * BASE_Y * BASE_Y) % P
    # Appendix A.1: encodings of 0·G .. 15·G.
    multiples = """
0000000000000000000000000000000000000000000000000000000000000000
e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76
6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919
94741f5d5d52755ece4f23f044ee27d5d1ea1e2bd196b462166b16152a9d0259
da80862773358b466ffadfe0b3293ab3d9fd53c5ea6c955358f568322daf6a57
e882b131016b52c1d3337080187cf768423efccbb517bb495ab812c4160ff44e
f64746d3c92b13050ed8d80236a7f0007c3b3f962f5ba793d19a601ebb1df403
44f53520926ec81fbd5a387845beb7df85a96a24ece18738bdcfa6a7822a176d
903293d8f2287ebe10e2374dc1a53e0bc887e592699f02d077d5263cdd55601c
02622ace8f7303a31cafc63f8fc48fdc16e1c8c8d234b2f0d6685282a9076031
20706fd788b2720a1ed2a5dad4952b01f413bcf0e7564de8cdc816689e2db95f
bce83f8ba5dd2fa572864c24ba1810f9522bc6004afe95877ac73241cafdab42
e4549ee16b9aa03099ca208c67adafcafa4c3f3e4e5303de6026e3ca8ff84460
aa52e000df2e16f55fb1032fc33bc42742dad6bd5a8fc0be0167436c5948501f
46376b80f409b29dc2b5f6f0c52591990896e5716f41477cd30085ab7f10301e
e0c418f7c8d9c4cdd7395b93ea124f3ad99021bb681dfc3302a9d99a2e53e64e
""".split()
    acc = IDENTITY
    for i, want in enumerate(multiples):
        assert acc.encode().hex() == want, f"{i}·G"
        q = decode(bytes.fromhex(want))
        assert q is not None and q == acc and q.encode().hex() == want
        acc = acc + G
    assert (G * 7).encode().hex() == multiples[7]
    # Appendix A.2 (a selection): non-canonical field encodings, negative field elements,
    # non-square x^2, infinite or zero t.
    bad = """
00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f
f3ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f
edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f
0100000000000000000000000000000000000000000000000000000000000000
01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f
ed57ffd8c914fb201471d1c3d245ce3c746fcbe63a3679d51b6a516ebebe0e20
c34c4e1826e5d403b78e246e88aa051c36ccf0aafebffe137d148a2bf9104562
c940e5a4404157cfb1628b108db051a8d439e1a421394ec4ebccb9ec92a8ac78
47cfc5497c53dc8e61c91d17fd626ffb1c49e2bca94eed052281b510b1117a24
f1c6165d33367351b0da8f6e4511010c68174a03b6581212c71c0e1d026c3c72
87260f7a2f12495118360f02c26a470f450dadf34a413d21042b43b9d93e1309
26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371
4eac077a713c57b4f4397629a4145982c661f48044dd3f96427d40b147d9742f
de6a7b00deadc788eb6b6c8d20c0ae96c2f2019078fa604fee5b87d6e989ad7b
bcab477be20861e01e4a0e295284146a510150d9817763caf1a6f4b422d67042
2a292df7e32cababbd9de088d1d1abec9fc0440f637ed2fba145094dc14bea08
f4a9e534fc0d216c44b218fa0c42d99635a0127ee2e53c712f70609649fdff22
8268436f8c4126196cf64b3c7ddbda90746a378625f9813dd9b8457077256731
2810e5cbc2cc4d4eece54f61c6f69758e289aa7ab440b3cbeaa21995c2f4232b
3eb858e78f5a7254d8c9731174a94f76755fd3941c0ac93735c07ba14579630e
a45fdc55c76448c049a1ab33f17023edfb2be3581e9c7aade8a6125215e04220
d483fe813c6ba647ebbfd3ec41adca1c6130c2beeee9d9bf065c8d151c5f396e
8a2e1d30050198c65a54483123960ccc38aef6848e1ec8f5f780e8523769ba32
32888462f8b486c68ad7dd9610be5192bbeaf3b443951ac1a8118419d9fa097b
227142501b9d4355ccba290404bde41575b037693cef1f438c47f8fbf35d1165
5c37cc491da847cfeb9281d407efc41e15144c876e0170b499a96a22ed31e01e
445425117cb8c90edcbc7c1cc0e74f747f2c1efa5630a967c64f287792a48a4b
""".split()
    for b in bad:
        assert decode(bytes.fromhex(b)) is None, b
    # Appendix A.3: the one-way map on SHA-512 of these inputs (given there as hex).
    one_way = [
        ("5d1be09e3d0c82fc538112490e35701979d99e06ca3e2b5b54bffe8b4dc772c1"
         "4d98b696a1bbfb5ca32c436cc61c16563790306c79eaca7705668b47dffe5bb6",
         "3066f82a1a747d45120d1740f14358531a8f04bbffe6a819f86dfe50f44a0a46"),
        ("f116b34b8f17ceb56e8732a60d913dd10cce47a6d53bee9204be8b44f6678b27"
         "0102a56902e2488c46120e9276cfe54638286b9e4b3cdb470b542d46c2068d38",
         "f26e5b6f7d362d2d2a94c5d0e7602cb4773c95a2e5c31a64f133189fa76ed61b"),
        ("8422e1bbdaab52938b81fd602effb6f89110e1e57208ad12d9ad767e2e25510c"
         "27140775f9337088b982d83d7fcf0b2fa1edffe51952cbe7365e95c86eaf325c",
         "006ccd2a9e6867e6a2c5cea83d3302cc9de128dd2a9a57dd8ee7b9d7ffe02826"),
        ("ac22415129b61427bf464e17baee8db65940c233b98afce8d17c57beeb7876c2"
         "150d15af1cb1fb824bbd14955f2b57d08d388aab431a391cfc33d5bafb5dbbaf",
         "f8f0c87cf237953c5890aec3998169005dae3eca1fbb04548c635953c817f92a"),
    ]
    for uniform, want in one_way:
        assert from_uniform_bytes(bytes.fromhex(uniform)).encode().hex() == want
    print("ristretto255: RFC 9496 vectors ok (16 multiples, %d invalid, %d one-way map)"
          % (len(bad), len(one_way)))


# ------------------------------------------------------------ Keccak-f[1600], STROBE, merlin

RC = [
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
]
ROT = [
    [0, 36, 3, 41, 18], [1, 44, 10, 45, 2], [62, 6, 43, 15, 61],
    [28, 55, 25, 21, 56], [27, 20, 39, 8, 14],
]
M64 = (1 << 64) - 1


def rol(v, n):
    return ((v << n) | (v >> (64 - n))) & M64 if n else v


def keccak_f(state):
    """FIPS 202 Keccak-f[1600] on 200 bytes (lanes little-endian, lane (x, y) at 8(x + 5y))."""
    a = [[int.from_bytes(state[8 * (x + 5 * y):8 * (x + 5 * y) + 8], "little") for y in range(5)]
         for x in range(5)]
    for rc in RC:
        c = [a[x][0] ^ a[x][1] ^ a[x][2] ^ a[x][3] ^ a[x][4] for x in range(5)]
        d = [c[(x - 1) % 5] ^ rol(c[(x + 1) % 5], 1) for x in range(5)]
        a = [[a[x][y] ^ d[x] for y in range(5)] for x in range(5)]
        b = [[0] * 5 for _ in range(5)]
        for x in range(5):
            for y in range(5):
                b[y][(2 * x + 3 * y) % 5] = rol(a[x][y], ROT[x][y])
        a = [[b[x][y] ^ ((~b[(x + 1) % 5][y]) & b[(x + 2) % 5][y]) for y in range(5)]
             for x in range(5)]
        a[0][0] ^= rc
    out = bytearray(200)
    for x in range(5):
        for y in range(5):
            out[8 * (x + 5 * y):8 * (x + 5 * y) + 8] = a[x][y].to_bytes(8, "little")
    return out


def sha3_256(data):
    rate = 136
    msg = bytearray(data) + b"\x06" + bytes((-len(data) - 1) % rate)
    msg[-1] |= 0x80
    state = bytearray(200)
    for i in range(0, len(msg), rate):
        for j in range(rate):
            state[j] ^= msg[i + j]
        state = keccak_f(state)
    return bytes(state[:32])


STROBE_R = 166
FLAG_I, FLAG_A, FLAG_C, FLAG_T, FLAG_M, FLAG_K = 1, 2, 4, 8, 16, 32


class Strobe128:
    """The STROBE-128 operations merlin uses (meta-AD, AD, PRF), from the STROBE spec."""

    def __init__(self, label):
        st = bytearray(200)
        st[0:6] = bytes([1, STROBE_R + 2, 1, 0, 1, 96])
        st[6:18] = b"STROBEv1.0.2"
        self.state = keccak_f(st)
        self.pos = 0
        self.pos_begin = 0
        self.cur_flags = 0
        self.meta_ad(label, False)

    def copy(self):
        c = Strobe128.__new__(Strobe128)
        c.state, c.pos, c.pos_begin, c.cur_flags = bytearray(self.state), self.pos, self.pos_begin, self.cur_flags
        return c

    def run_f(self):
        self.state[self.pos] ^= self.pos_begin
        self.state[self.pos + 1] ^= 0x04
        self.state[STROBE_R + 1] ^= 0x80
        self.state = keccak_f(self.state)
        self.pos = 0
        self.pos_begin = 0

    def absorb(self, data):
        for byte in data:
            self.state[self.pos] ^= byte
            self.pos += 1
            if self.pos == STROBE_R:
                self.run_f()

    def squeeze(self, n):
        out = bytearray()
        for _ in range(n):
            out.append(self.state[self.pos])
            self.state[self.pos] = 0
            self.pos += 1
            if self.pos == STROBE_R:
                self.run_f()
        return bytes(out)

    def begin_op(self, flags, more):
        if more:
            assert self.cur_flags == flags
            return
        assert flags & FLAG_T == 0
        old_begin = self.pos_begin
        self.pos_begin = self.pos + 1
        self.cur_flags = flags
        self.absorb(bytes([old_begin, flags]))
        if flags & (FLAG_C | FLAG_K) and self.pos != 0:
            self.run_f()

    def meta_ad(self, data, more):
        self.begin_op(FLAG_M | FLAG_A, more)
        self.absorb(data)

    def ad(self, data, more):
        self.begin_op(FLAG_A, more)
        self.absorb(data)

    def prf(self, n, more):
        self.begin_op(FLAG_I | FLAG_A | FLAG_C, more)
        return self.squeeze(n)


class Transcript:
    """merlin 1.0 transcripts (merlin.cool)."""

    def __init__(self, label, strobe=None):
        if strobe is not None:
            self.strobe = strobe
            return
        self.strobe = Strobe128(b"Merlin v1.0")
        self.append(b"dom-sep", label)

    def clone(self):
        return Transcript(None, self.strobe.copy())

    def append(self, label, message):
        self.strobe.meta_ad(label, False)
        self.strobe.meta_ad(len(message).to_bytes(4, "little"), True)
        self.strobe.ad(message, False)

    def append_u64(self, label, x):
        self.append(label, x.to_bytes(8, "little"))

    def challenge(self, label, n):
        self.strobe.meta_ad(label, False)
        self.strobe.meta_ad(n.to_bytes(4, "little"), True)
        return self.strobe.prf(n, False)

    def challenge_scalar(self, label):
        return int.from_bytes(self.challenge(label, 64), "little") % L


def check_transcripts():
    for data in (b"", b"abc", bytes(range(256)) * 3):
        assert sha3_256(data) == hashlib.sha3_256(data).digest()
    t = Transcript(b"test protocol")
    t.append(b"some label", b"some data")
    got = t.challenge(b"challenge", 32).hex()
    assert got == "d5a21972d0d5fe320c0d263fac7fffb8145aa640af6e9bca177c03c7efcf0615", got
    print("keccak-f[1600] ok (SHA3-256 against hashlib); merlin ok (published vector)")


# ------------------------------------------------------------------- the protocol's operations

def point_at(b, i):
    q = decode(b[32 * i:32 * i + 32])
    if q is None:
        raise ValueError("invalid point encoding")
    return q


def scalar_at(b, i):
    s = int.from_bytes(b[32 * i:32 * i + 32], "little")
    if s >= L:
        raise ValueError("non-canonical scalar")
    return s


def generator_h():
    return from_uniform_bytes(Transcript(b"dissent-rs v3 shuffle generator h").challenge(b"generator", 64))


def generator_h_i(i):
    t = Transcript(b"dissent-rs v3 shuffle generator h_i")
    t.append_u64(b"index", i)
    return from_uniform_bytes(t.challenge(b"generator", 64))


def dleq_verify(context, a, b, s, proof):
    """log_G(A) = log_B(S): A, B, S are 32-byte encodings, proof is c || s (64 bytes)."""
    pa, pb, ps = decode(a), decode(b), decode(s)
    if pa is None or pb is None or ps is None or len(proof) != 64:
        return False
    c, resp = int.from_bytes(proof[:32], "little"), int.from_bytes(proof[32:], "little")
    if c >= L or resp >= L:
        return False
    r1 = resp * G - c * pa
    r2 = resp * pb - c * ps
    t = Transcript(b"dissent-rs v3 dleq")
    t.append(b"context", context)
    t.append(b"A", a)
    t.append(b"B", b)
    t.append(b"S", s)
    t.append(b"R1", r1.encode())
    t.append(b"R2", r2.encode())
    return t.challenge_scalar(b"c") == c


def encode_message(m):
    """docs/protocol.md: the first counter k < 512 whose candidate decodes."""
    assert len(m) <= 30
    for k in range(512):
        cand = bytes([(k & 0x7F) << 1]) + m + bytes(30 - len(m)) + bytes([len(m) | ((k >> 7) << 5)])
        if decode(cand) is not None:
            return cand
    return None


def shuffle_verify(context, key, width, inputs, outputs, proof):
    """The verifier of docs/protocol.md, one equation at a time. Returns True or False."""
    row = 64 * width
    if width < 1 or len(inputs) == 0 or len(inputs) % row or len(outputs) != len(inputs):
        return False
    n = len(inputs) // row
    if len(proof) != 32 * (5 * n + 6 + 3 * width):
        return False
    try:
        y = point_at(key, 0)
        e = [[(point_at(inputs, 2 * (i * width + k)), point_at(inputs, 2 * (i * width + k) + 1))
              for k in range(width)] for i in range(n)]
        e2 = [[(point_at(outputs, 2 * (i * width + k)), point_at(outputs, 2 * (i * width + k) + 1))
               for k in range(width)] for i in range(n)]
        com = [point_at(proof, j) for j in range(n)]
        chain = [point_at(proof, n + i) for i in range(n)]
        t_hat = [point_at(proof, 2 * n + i) for i in range(n)]
        t1, t2, t3 = (point_at(proof, 3 * n + w) for w in range(3))
        t4 = [(point_at(proof, 3 * n + 3 + 2 * k), point_at(proof, 3 * n + 4 + 2 * k))
              for k in range(width)]
        base = 3 * n + 3 + 2 * width
        s1, s2, s3 = (scalar_at(proof, base + w) for w in range(3))
        s4 = [scalar_at(proof, base + 3 + k) for k in range(width)]
        s_hat = [scalar_at(proof, base + 3 + width + i) for i in range(n)]
        s_prime = [scalar_at(proof, base + 3 + width + n + i) for i in range(n)]
    except ValueError:
        return False

    t = Transcript(b"dissent-rs v3 shuffle")
    t.append(b"context", context)
    t.append_u64(b"n", n)
    t.append_u64(b"width", width)
    t.append(b"key", key)
    t.append(b"inputs", inputs)
    t.append(b"outputs", outputs)
    t.append(b"permutation commitment", proof[:32 * n])
    u = []
    for j in range(n):
        tj = t.clone()
        tj.append_u64(b"index", j)
        u.append(tj.challenge_scalar(b"u"))
    t.append(b"commitment chain", proof[32 * n:64 * n])
    t.append(b"announcements", proof[64 * n:32 * base])
    c = t.challenge_scalar(b"c")

    h = generator_h()
    hs = [generator_h_i(i) for i in range(n)]
    ok = True
    # t1 = s1·G − c·(Σ c_j − Σ H_j)
    csum = IDENTITY
    for j in range(n):
        csum = csum + com[j] - hs[j]
    ok &= t1 == s1 * G - c * csum
    # t2 = s2·G − c·(ĉ_N − (Π u_j)·H)
    prod = 1
    for x in u:
        prod = prod * x % L
    ok &= t2 == s2 * G - c * (chain[-1] - prod * h)
    # t3 = s3·G + Σ s'_i·H_i − c·Σ u_j·c_j
    rhs = s3 * G
    for i in range(n):
        rhs = rhs + s_prime[i] * hs[i] - (c * u[i]) * com[i]
    ok &= t3 == rhs
    # t4_k
    for k in range(width):
        ra = -(s4[k] * y)
        rb = -(s4[k] * G)
        for i in range(n):
            ra = ra + s_prime[i] * e2[i][k][0] - (c * u[i]) * e[i][k][0]
            rb = rb + s_prime[i] * e2[i][k][1] - (c * u[i]) * e[i][k][1]
        ok &= t4[k][0] == ra and t4[k][1] == rb
    # t̂_i = ŝ_i·G + s'_i·ĉ_(i−1) − c·ĉ_i, ĉ_0 = H
    prev = h
    for i in range(n):
        ok &= t_hat[i] == s_hat[i] * G + s_prime[i] * prev - c * chain[i]
        prev = chain[i]
    return bool(ok)


# --------------------------------------------------------------------------- the vectors

def load_vectors():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "shuffle-vectors.txt")
    v = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 1)
            if parts[0]:
                v[parts[0]] = bytes.fromhex(parts[1] if len(parts) > 1 else "")
    return v


def main():
    check_ristretto()
    check_transcripts()
    v = load_vectors()

    assert v["generator_h"] == generator_h().encode()
    for i in range(3):
        assert v["generator_h_%d" % i] == generator_h_i(i).encode()
    print("generators ok")

    x_c = int.from_bytes(v["client_secret"], "little")
    x_t = int.from_bytes(v["trustee_secret"], "little")
    assert (x_c * G).encode() == v["client_public"]
    assert (x_t * G).encode() == v["trustee_public"]
    shared = (x_c * point_at(v["trustee_public"], 0)).encode()
    assert shared == v["dh_shared"] == (x_t * point_at(v["client_public"], 0)).encode()
    ctx = v["dleq_context"]
    args = (v["client_public"], v["trustee_public"], v["dh_shared"], v["dleq_proof"])
    assert dleq_verify(ctx, *args)
    assert not dleq_verify(b"another context", *args)
    assert not dleq_verify(ctx, v["client_public"], v["trustee_public"], v["client_public"], v["dleq_proof"])
    bad = bytearray(v["dleq_proof"])
    bad[5] ^= 1
    assert not dleq_verify(ctx, v["client_public"], v["trustee_public"], v["dh_shared"], bytes(bad))
    print("dh and dleq proof ok (and refused with another context, value or proof)")

    for name in ("encoding_short", "encoding_full", "encoding_empty"):
        m = v[name + "_message"]
        assert encode_message(m) == v[name + "_point"], name
        assert decode(v[name + "_point"]) is not None
    print("encodings ok")

    keys = [point_at(v["trustee0_public"], 0), point_at(v["trustee1_public"], 0)]
    assert (keys[0] + keys[1]).encode() == v["joint_key"]
    ct, share = v["ciphertext"], v["decryption_share"]
    assert dleq_verify(b"dissent-rs v3 decryption share", v["trustee0_public"], ct[32:], share[:32], share[32:])
    assert not dleq_verify(b"dissent-rs v3 decryption share", v["trustee1_public"], ct[32:], share[:32], share[32:])
    print("decryption share ok (and refused for the other trustee)")

    args = (v["shuffle_context"], v["joint_key"], v["shuffle_width"][0],
            v["shuffle_inputs"], v["shuffle_outputs"], v["shuffle_proof"])
    assert shuffle_verify(*args), "the shuffle proof does not verify"
    context, key, width, inputs, outputs, proof = args
    row = 64 * width
    swapped = outputs[row:2 * row] + outputs[:row] + outputs[2 * row:]
    assert not shuffle_verify(context, key, width, inputs, swapped, proof)
    duplicated = outputs[:row] + outputs[:row] + outputs[2 * row:]
    assert not shuffle_verify(context, key, width, inputs, duplicated, proof)
    for at in (0, 32 * 3 + 1, 32 * 7, len(proof) - 40):
        bad = bytearray(proof)
        bad[at] ^= 0x10
        assert not shuffle_verify(context, key, width, inputs, outputs, bytes(bad)), at
    assert not shuffle_verify(b"another context", key, width, inputs, outputs, proof)
    assert not shuffle_verify(context, v["trustee0_public"], width, inputs, outputs, proof)
    assert not shuffle_verify(context, key, width, inputs, outputs, proof[:-32])
    n = len(inputs) // row
    print("shuffle proof ok (n = %d, width %d), refused when tampered" % (n, width))
    print("all vectors verified: ristretto255, merlin, generators, dh, dleq, encodings, "
          "decryption share, shuffle")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAILED:", e, file=sys.stderr)
        raise

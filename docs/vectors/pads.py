import hmac, hashlib
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives import serialization as s
def pub(sk):
    return X25519PrivateKey.from_private_bytes(sk).public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
def hkdf_extract(salt, ikm): return hmac.new(salt, ikm, hashlib.sha256).digest()
def hkdf_expand(prk, info, n=32): return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:n]
c, t = bytes([0x11])*32, bytes([0x22])*32
dh = X25519PrivateKey.from_private_bytes(c).exchange(X25519PublicKey.from_public_bytes(pub(t)))
prk = hkdf_extract(bytes([0x33])*16 + bytes([0x44])*16, dh)
padkey = hkdf_expand(prk, b"dissent-rs v1 pad key" + pub(c) + pub(t))
ik = hkdf_expand(padkey, b"dissent-rs v1 interval" + (7).to_bytes(4,"big") + bytes([0x55])*16 + bytes([0x66])*16)
# cryptography's ChaCha20 takes a 16-byte nonce: counter(4, LE) | nonce(12)
nonce = (0).to_bytes(4,"little") + bytes(4) + (0x010203040506).to_bytes(8,"big")
pad = Cipher(algorithms.ChaCha20(ik, nonce), mode=None).encryptor().update(bytes(72))
print(padkey.hex(), ik.hex(), pad[:16].hex(), pad[64:].hex())

#!/usr/bin/env python3
"""Independent judge for byok's CKM_RSA_AES_KEY_WRAP blobs, written against Python `cryptography` only.

It shares no code with byok: it parses the .byok JSON itself, decrypts the RSA part with RSA-OAEP (SHA-1,
MGF1-SHA-1, empty label), unwraps the rest with AES key wrap with padding (RFC 5649), and parses the plaintext
strictly. It also makes blobs the same way, for byok to open (the reverse direction).

Usage:
  judge.py check CASES.json      each case: {"name", "kek_private", "blob", "expected", "kty", "curve"}
  judge.py make CASES.json       each case: {"name", "kek_public", "plaintext", "out", "kid"}
  judge.py bench KEK_PUB PLAINTEXT N   wrap throughput in one process, prints microseconds per key
  judge.py wrap-one KEK_PUB PLAINTEXT OUT   one wrap, for timing a whole process
Prints one JSON object: {"passed": N, "failed": [..]} (check, make) and exits non-zero on any failure.
"""
import base64
import json
import os
import sys
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding, aes_key_wrap_with_padding

OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1, "P-256K": ec.SECP256K1}


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_private(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def load_public(path):
    with open(path, "rb") as f:
        return serialization.load_pem_public_key(f.read())


def check(case):
    kek = load_private(case["kek_private"])
    with open(case["blob"], "rb") as f:
        doc = json.load(f)
    assert doc["schema_version"] == "1.0.0", doc["schema_version"]
    assert doc["header"]["alg"] == "dir" and doc["header"]["enc"] == "CKM_RSA_AES_KEY_WRAP", doc["header"]
    assert "=" not in doc["ciphertext"], "ciphertext must be unpadded base64url"
    ct = b64url_decode(doc["ciphertext"])
    n = kek.key_size // 8
    aes_key = kek.decrypt(ct[:n], OAEP)
    assert len(aes_key) == 32, f"AES key is {len(aes_key)} bytes"
    plaintext = aes_key_unwrap_with_padding(aes_key, ct[n:])
    with open(case["expected"], "rb") as f:
        expected = f.read()
    assert plaintext == expected, "plaintext differs from the source key"
    kty = case["kty"]
    if kty == "oct":
        assert len(plaintext) in (16, 24, 32)
        return
    key = serialization.load_der_private_key(plaintext, password=None)  # strict DER, PKCS#8
    if kty == "RSA":
        assert isinstance(key, rsa.RSAPrivateKey), type(key)
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey), type(key)
        assert isinstance(key.curve, CURVES[case["curve"]]), key.curve.name


def wrap(kek_public, plaintext):
    aes_key = os.urandom(32)
    return kek_public.encrypt(aes_key, OAEP) + aes_key_wrap_with_padding(aes_key, plaintext)


def make(case):
    kek = load_public(case["kek_public"])
    with open(case["plaintext"], "rb") as f:
        plaintext = f.read()
    doc = {
        "schema_version": "1.0.0",
        "header": {"kid": case["kid"], "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
        "ciphertext": b64url_encode(wrap(kek, plaintext)),
        "generator": "byok interop judge (Python cryptography)",
    }
    with open(case["out"], "w") as f:
        json.dump(doc, f)


def run_all(fn, path):
    with open(path) as f:
        cases = json.load(f)
    passed, failed = 0, []
    for case in cases:
        try:
            fn(case)
            passed += 1
        except Exception as e:  # report every failure, not just the first
            failed.append({"name": case["name"], "error": f"{type(e).__name__}: {e}"})
    print(json.dumps({"passed": passed, "failed": failed}))
    return 1 if failed else 0


def bench(kek_path, plaintext_path, n):
    kek = load_public(kek_path)
    with open(plaintext_path, "rb") as f:
        plaintext = f.read()
    for _ in range(50):
        wrap(kek, plaintext)
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            wrap(kek, plaintext)
        runs.append((time.perf_counter() - start) / n * 1e6)
    runs.sort()
    print(json.dumps({"us_per_key": runs[len(runs) // 2]}))
    return 0


def wrap_one(kek_path, plaintext_path, out):
    with open(plaintext_path, "rb") as f:
        plaintext = f.read()
    with open(out, "wb") as f:
        f.write(wrap(load_public(kek_path), plaintext))
    return 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "check":
        return run_all(check, argv[2])
    if len(argv) >= 3 and argv[1] == "make":
        return run_all(make, argv[2])
    if len(argv) == 5 and argv[1] == "bench":
        return bench(argv[2], argv[3], int(argv[4]))
    if len(argv) == 5 and argv[1] == "wrap-one":
        return wrap_one(argv[2], argv[3], argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

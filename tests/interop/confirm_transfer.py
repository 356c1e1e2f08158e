#!/usr/bin/env python3
"""The official Python SDK confirms what `byok-cli full-transfer` imported into the local Key Vault.

Usage: confirm_transfer.py INFO_JSON MANIFEST_JSON
INFO_JSON is the line byok-emulator printed. MANIFEST_JSON lists the transfers:
  [{"name", "kid", "kty", "hsm_public_sha256" (null for AES), "transfer_id"}]
For each: the key exists at that version with that kty and carries the transfer's tag; for RSA and EC, the SHA-256
of the vault's public key (SubjectPublicKeyInfo DER) equals the one the HSM reported, and a signature the vault
makes (RS256 / ES256 / ES384 / ES512) verifies with that public key — so the vault holds the HSM's private key.
Prints one JSON object {"passed": N, "failed": [...]}; exits non-zero on failure.
"""
import hashlib
import json
import os
import sys

from azure.identity import ClientSecretCredential
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

CURVES = {"P-256": (ec.SECP256R1(), hashes.SHA256(), SignatureAlgorithm.es256),
          "P-384": (ec.SECP384R1(), hashes.SHA384(), SignatureAlgorithm.es384),
          "P-521": (ec.SECP521R1(), hashes.SHA512(), SignatureAlgorithm.es512)}


def public_key_of(jwk):
    if jwk.kty.startswith("RSA"):
        return rsa.RSAPublicNumbers(int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big")).public_key()
    curve = CURVES[jwk.crv][0]
    return ec.EllipticCurvePublicNumbers(int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"),
                                         curve).public_key()


def check(client, cred, ca, t):
    key = client.get_key(t["name"], t["kid"].rsplit("/", 1)[1])
    if key.id != t["kid"]:
        raise AssertionError(f"kid {key.id} != {t['kid']}")
    if getattr(key.key_type, "value", key.key_type) != t["kty"]:
        raise AssertionError(f"kty {key.key_type} != {t['kty']}")
    if (key.properties.tags or {}).get("byok-transfer") != t["transfer_id"]:
        raise AssertionError(f"tag byok-transfer {key.properties.tags} != {t['transfer_id']}")
    if t["hsm_public_sha256"] is None:
        return
    public = public_key_of(key.key)
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if hashlib.sha256(spki).hexdigest() != t["hsm_public_sha256"]:
        raise AssertionError("the vault's public key is not the HSM's")
    message = os.urandom(48)
    crypto = CryptographyClient(key, cred, verify_challenge_resource=False, connection_verify=ca)
    if key.key.kty.startswith("RSA"):
        digest = hashlib.sha256(message).digest()
        signed = crypto.sign(SignatureAlgorithm.rs256, digest)
        public.verify(signed.signature, message, padding.PKCS1v15(), hashes.SHA256())
    else:
        _, hash_alg, alg = CURVES[key.key.crv]
        h = hashes.Hash(hash_alg)
        h.update(message)
        digest = h.finalize()
        signed = crypto.sign(alg, digest)
        half = len(signed.signature) // 2
        r = int.from_bytes(signed.signature[:half], "big")
        s = int.from_bytes(signed.signature[half:], "big")
        public.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(utils.Prehashed(hash_alg)))


def main(argv):
    info = json.loads(open(argv[1]).read())
    transfers = json.loads(open(argv[2]).read())
    ca = info["ca_file"]
    cred = ClientSecretCredential(info["tenant_id"], info["client_id"], info["client_secret"],
                                  authority=info["authority_host"], disable_instance_discovery=True,
                                  connection_verify=ca)
    client = KeyClient(info["vault_url"], cred, verify_challenge_resource=False, connection_verify=ca)
    passed, failed = 0, []
    for t in transfers:
        try:
            check(client, cred, ca, t)
            passed += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported by name
            failed.append({"name": f"full-transfer {t['name']} confirmed by the Python SDK",
                           "error": f"{type(e).__name__}: {e}"})
    print(json.dumps({"passed": passed, "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

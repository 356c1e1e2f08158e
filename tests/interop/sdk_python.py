#!/usr/bin/env python3
"""Fidelity of byok-emulator against the official Python SDK (azure-keyvault-keys + azure-identity), nobody here wrote.

Usage: sdk_python.py INFO_JSON BYOK_CLI_BLOB_DIR
INFO_JSON is the line byok-emulator printed. The scenario:
  1. ClientSecretCredential against the emulator's token endpoint (authority = the emulator), challenge auth;
  2. create an import-only RSA-HSM KEK, read it back;
  3. wrap an EC P-256 and an RSA-2048 key with Python `cryptography` (so byok's wrap is not the only producer),
     import each as a .byok through key_hsm, read it back and compare the public half with the source key; sign
     with the vault (ES256, RS256, PS256) and verify with the source key's public half; have the vault decrypt and
     unwrap what the source key's public half encrypted (RSA-OAEP-256, RSA-OAEP); import a plain JWK and sign;
  4. refusals: a blob for another KEK, and kty RSA without -HSM, come back as HttpResponseError BadParameter;
  5. in Managed HSM mode, an AES-256 key as oct-HSM, and A256KW in both directions against the source AES key.
Prints one JSON object {"passed": N, "failed": [...]}; exits non-zero on failure.
"""
import base64
import hashlib
import json
import os
import sys

from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.keyvault.keys import JsonWebKey, KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, EncryptionAlgorithm, KeyWrapAlgorithm, SignatureAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap, aes_key_wrap_with_padding

OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def blob_for(kek_jwk, kid, plaintext):
    n = int.from_bytes(kek_jwk.n, "big")
    e = int.from_bytes(kek_jwk.e, "big")
    pub = rsa.RSAPublicNumbers(e, n).public_key()
    aes = os.urandom(32)
    ct = pub.encrypt(aes, OAEP) + aes_key_wrap_with_padding(aes, plaintext)
    doc = {"schema_version": "1.0.0", "header": {"kid": kid, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
           "ciphertext": b64url(ct), "generator": "byok sdk fidelity (Python cryptography)"}
    return json.dumps(doc).encode()


def main(argv):
    info = json.loads(open(argv[1]).read())
    os.environ["REQUESTS_CA_BUNDLE"] = info["ca_file"]
    os.environ["SSL_CERT_FILE"] = info["ca_file"]
    managed_hsm = info["audience"].endswith("managedhsm.azure.net")
    cred = ClientSecretCredential(info["tenant_id"], info["client_id"], info["client_secret"],
                                  authority=info["authority_host"], disable_instance_discovery=True,
                                  connection_verify=info["ca_file"])
    client = KeyClient(info["vault_url"], cred, verify_challenge_resource=False, connection_verify=info["ca_file"])

    def crypto_client(key):
        return CryptographyClient(key, cred, verify_challenge_resource=False, connection_verify=info["ca_file"])
    passed, failed = 0, []

    def check(name, fn):
        nonlocal passed
        try:
            fn()
            passed += 1
        except Exception as e:  # report all
            failed.append({"name": name, "error": f"{type(e).__name__}: {e}"})

    state = {}

    def kek():
        k = client.create_rsa_key("sdk-kek", size=2048, hardware_protected=True, key_operations=["import"])
        assert k.key_type == "RSA-HSM", k.key_type
        assert list(k.key_operations) == ["import"], k.key_operations
        again = client.get_key("sdk-kek", k.properties.version)
        assert again.key.n == k.key.n
        state["kek"] = k
    check("create and read an import-only KEK", kek)

    def import_ec():
        src = ec.generate_private_key(ec.SECP256R1())
        pt = src.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        k = state["kek"]
        jwk = JsonWebKey(kty="EC-HSM", crv="P-256", key_ops=["sign", "verify"], t=blob_for(k.key, k.id, pt))
        imported = client.import_key("sdk-ec", jwk)
        got = client.get_key("sdk-ec")
        nums = src.public_key().public_numbers()
        assert int.from_bytes(got.key.x, "big") == nums.x and int.from_bytes(got.key.y, "big") == nums.y
        assert imported.key_type == "EC-HSM" and got.key.crv == "P-256"
        # The vault signs with the imported key; the source key's public half verifies it.
        digest = hashlib.sha256(b"byok fidelity").digest()
        sig = crypto_client(imported).sign(SignatureAlgorithm.es256, digest).signature
        der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        src.public_key().verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    check("import an EC P-256 .byok made by Python cryptography", import_ec)

    def import_rsa():
        src = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pt = src.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        k = state["kek"]
        imported = client.import_key("sdk-rsa", JsonWebKey(kty="RSA-HSM", key_ops=["sign", "verify"], t=blob_for(k.key, k.id, pt)))
        got = client.get_key("sdk-rsa")
        assert int.from_bytes(got.key.n, "big") == src.public_key().public_numbers().n
        digest = hashlib.sha256(b"byok fidelity").digest()
        cc = crypto_client(imported)
        sig = cc.sign(SignatureAlgorithm.rs256, digest).signature
        src.public_key().verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        sig = cc.sign(SignatureAlgorithm.ps256, digest).signature
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        src.public_key().verify(sig, digest, pss, utils.Prehashed(hashes.SHA256()))
        assert cc.verify(SignatureAlgorithm.ps256, digest, sig).is_valid
    check("import an RSA-2048 .byok made by Python cryptography", import_rsa)

    def rsa_decrypt_unwrap():
        src = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        pt = src.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        k = state["kek"]
        ops = ["encrypt", "decrypt", "wrapKey", "unwrapKey"]
        imported = client.import_key("sdk-rsa-enc", JsonWebKey(kty="RSA-HSM", key_ops=ops, t=blob_for(k.key, k.id, pt)))
        cc = crypto_client(imported)
        secret = os.urandom(32)
        oaep256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        # Encrypted locally with the source key's public half, decrypted by the vault.
        assert cc.decrypt(EncryptionAlgorithm.rsa_oaep_256, src.public_key().encrypt(secret, oaep256)).plaintext == secret
        assert cc.unwrap_key(KeyWrapAlgorithm.rsa_oaep, src.public_key().encrypt(secret, OAEP)).key == secret
    check("the vault decrypts and unwraps what the source key's public half encrypted (RSA-OAEP-256, RSA-OAEP)", rsa_decrypt_unwrap)

    def import_jwk():
        src = ec.generate_private_key(ec.SECP384R1())
        nums = src.private_numbers()
        jwk = JsonWebKey(kty="EC", crv="P-384", key_ops=["sign", "verify"], d=nums.private_value.to_bytes(48, "big"),
                         x=nums.public_numbers.x.to_bytes(48, "big"), y=nums.public_numbers.y.to_bytes(48, "big"))
        imported = client.import_key("sdk-jwk", jwk, hardware_protected=True)
        assert imported.key_type == "EC-HSM", imported.key_type
        digest = hashlib.sha384(b"byok fidelity").digest()
        sig = crypto_client(imported).sign(SignatureAlgorithm.es384, digest).signature
        der = utils.encode_dss_signature(int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big"))
        src.public_key().verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA384())))
    check("import a plain EC P-384 JWK (hardware_protected) and sign with it", import_jwk)

    def refusals():
        k = state["kek"]
        other = client.create_rsa_key("sdk-other-kek", size=2048, hardware_protected=True, key_operations=["import"])
        src = ec.generate_private_key(ec.SECP256R1())
        pt = src.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        wrong = blob_for(other.key, k.id, pt)  # wrapped to one KEK, claiming the other
        for jwk, expect in [
            (JsonWebKey(kty="EC-HSM", crv="P-256", key_ops=["sign"], t=wrong), "cannot be opened with the KEK"),
            (JsonWebKey(kty="EC", crv="P-256", key_ops=["sign"], t=blob_for(k.key, k.id, pt)), "needs an HSM key type"),
        ]:
            try:
                client.import_key("sdk-refused", jwk)
            except HttpResponseError as e:
                assert e.status_code == 400 and expect in str(e), str(e)
            else:
                raise AssertionError("the import was accepted")
    check("refusals come back as BadParameter with the reason", refusals)

    if managed_hsm:
        def import_aes():
            k = state["kek"]
            key = os.urandom(32)
            client.import_key("sdk-aes", JsonWebKey(kty="oct-HSM", key_ops=["encrypt", "decrypt"], t=blob_for(k.key, k.id, key)))
            got = client.get_key("sdk-aes")
            assert got.key_type == "oct-HSM"
        check("import an AES-256 .byok as oct-HSM (Managed HSM)", import_aes)

        def aes_wrap():
            k = state["kek"]
            key = os.urandom(32)
            imported = client.import_key("sdk-aes-kw", JsonWebKey(kty="oct-HSM", key_ops=["wrapKey", "unwrapKey"], t=blob_for(k.key, k.id, key)))
            cc = crypto_client(imported)
            # azure-keyvault-keys 4.11.3 quirk: for an oct key whose JWK has no `k` (a Managed HSM never returns it),
            # SymmetricKey.from_jwk makes up a random key and CryptographyClient wraps *locally* with it, without
            # calling the HSM. Force the remote operation, which is what a real Managed HSM would have to do.
            from azure.keyvault.keys.crypto._providers import NoLocalCryptography
            cc._local_provider = NoLocalCryptography()
            cc._initialized = True
            secret = os.urandom(32)
            wrapped = cc.wrap_key(KeyWrapAlgorithm.aes_256, secret).encrypted_key
            assert aes_key_unwrap(key, wrapped) == secret, "the source AES key unwraps what the vault wrapped"
            assert cc.unwrap_key(KeyWrapAlgorithm.aes_256, aes_key_wrap(key, secret)).key == secret
        check("A256KW with an imported AES key matches the source key (Managed HSM)", aes_wrap)

    print(json.dumps({"passed": passed, "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env bash
# Makes rsa-aes-key-wrap-composite.json: a CKM_RSA_AES_KEY_WRAP ciphertext built with the OpenSSL CLI alone, from
# a fixed AES-256 key and the 67-byte HSM-layout P-256 PKCS#8 (not 8-aligned, so the KWP padding shows).
# OAEP is randomised, so the RSA part differs per run; the KWP part is deterministic.
set -euo pipefail
cd "$(dirname "$0")"
keys=../keys
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
aes=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
printf '%s' "$aes" | xxd -r -p > "$tmp/aes"
openssl pkeyutl -encrypt -pubin -inkey $keys/kek-rsa2048.spki.pem -pkeyopt rsa_padding_mode:oaep \
  -pkeyopt rsa_oaep_md:sha1 -pkeyopt rsa_mgf1_md:sha1 -in "$tmp/aes" -out "$tmp/rsa"
openssl enc -id-aes256-wrap-pad -iv A65959A6 -K "$aes" -in $keys/ec-p256.pkcs8-minimal.der -out "$tmp/kwp"
cat > rsa-aes-key-wrap-composite.json <<JSON
{
 "source": "OpenSSL 3 CLI: pkeyutl OAEP/SHA-1/MGF1-SHA-1 and enc -id-aes256-wrap-pad; see make-composite.sh",
 "kek_private_key": "keys/kek-rsa2048.pkcs8.pem",
 "plaintext_file": "keys/ec-p256.pkcs8-minimal.der",
 "aes_key": "$aes",
 "kwp_part": "$(xxd -p "$tmp/kwp" | tr -d '\n')",
 "ciphertext": "$(cat "$tmp/rsa" "$tmp/kwp" | xxd -p | tr -d '\n')"
}
JSON

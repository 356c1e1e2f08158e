#!/usr/bin/env bash
# Regenerates the throwaway test keys in testdata/keys with the OpenSSL CLI. They protect nothing: they exist so
# that tests are repeatable. Names say what a file holds: <kind>.<encoding>.<pem|der>.
set -euo pipefail
cd "$(dirname "$0")/keys"
o() { openssl "$@" 2>/dev/null; }

for bits in 2048 3072 4096; do
  o genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:$bits -out kek-rsa$bits.pkcs8.pem
  o pkey -in kek-rsa$bits.pkcs8.pem -pubout -out kek-rsa$bits.spki.pem
done
o pkey -in kek-rsa4096.pkcs8.pem -pubout -outform DER -out kek-rsa4096.spki.der
o rsa -in kek-rsa3072.pkcs8.pem -RSAPublicKey_out -out kek-rsa3072.pkcs1.pem
o genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out rsa1024.pkcs8.pem
o pkey -in rsa1024.pkcs8.pem -pubout -out kek-rsa1024.spki.pem
o genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:8192 -out /tmp/rsa8192.pem
o pkey -in /tmp/rsa8192.pem -pubout -out kek-rsa8192.spki.pem && rm -f /tmp/rsa8192.pem

o genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2048.pkcs8.pem
o pkcs8 -topk8 -nocrypt -in rsa2048.pkcs8.pem -outform DER -out rsa2048.pkcs8.der
o rsa -in rsa2048.pkcs8.pem -traditional -out rsa2048.pkcs1.pem
o rsa -in rsa2048.pkcs8.pem -traditional -outform DER -out rsa2048.pkcs1.der
o pkcs8 -topk8 -in rsa2048.pkcs8.pem -v2 aes-256-cbc -passout pass:test -out rsa2048.encrypted.pem

o ecparam -name prime256v1 -genkey -out ec-p256.sec1-with-params.pem     # EC PARAMETERS + EC PRIVATE KEY
o pkcs8 -topk8 -nocrypt -in ec-p256.sec1-with-params.pem -out ec-p256.pkcs8.pem
o pkey -in ec-p256.pkcs8.pem -pubout -out ec-p256.spki.pem
o genpkey -algorithm EC -pkeyopt ec_paramgen_curve:secp384r1 -out ec-p384.pkcs8.pem
o ec -in ec-p384.pkcs8.pem -outform DER -out ec-p384.sec1.der
o genpkey -algorithm EC -pkeyopt ec_paramgen_curve:secp521r1 -out ec-p521.pkcs8.pem
o genpkey -algorithm EC -pkeyopt ec_paramgen_curve:secp256k1 -out ec-secp256k1.pkcs8.pem
o genpkey -algorithm EC -pkeyopt ec_paramgen_curve:brainpoolP256r1 -out ec-brainpoolp256r1.pkcs8.pem
o genpkey -algorithm ED25519 -out ed25519.pkcs8.pem

# The layout SoftHSM and openCryptoki emit: ECPrivateKey v1 with the scalar only (no [0] parameters, no [1]
# public key), the curve in the AlgorithmIdentifier. 67 bytes for P-256.
scalar=$(o ec -in ec-p256.pkcs8.pem -text -noout | awk '/priv:/{f=1;next} /pub:/{f=0} f' | tr -d ' :\n')
scalar=$(printf '%064s' "$scalar" | tr ' ' 0 | tail -c 64)
printf '3041020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420%s' "$scalar" | xxd -r -p > ec-p256.pkcs8-minimal.der

head -c 16 /dev/urandom > aes128.raw
head -c 24 /dev/urandom > aes192.raw
head -c 32 /dev/urandom > aes256.raw
head -c 20 /dev/urandom > aes-20-bytes.raw

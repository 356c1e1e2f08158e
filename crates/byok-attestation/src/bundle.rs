//! The certificate bundle (`certificatePemFile`): PEM blocks, each an X.509 certificate with an RSA key.

use sha2::{Digest as _, Sha256};
use x509_parser::pem::Pem;

use crate::error::{Check, Refusal};
use crate::rsa_key::RsaKey;

/// More than a real bundle holds (four), few enough to bound the work of finding the chains.
pub(crate) const MAX_CERTIFICATES: usize = 8;

/// sha256WithRSAEncryption, the only signature algorithm these chains use.
const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";

/// A certificate: what the chains are built from, owned.
#[derive(Clone, Debug)]
pub(crate) struct Certificate {
    pub(crate) subject: String,
    subject_raw: Vec<u8>,
    issuer_raw: Vec<u8>,
    tbs: Vec<u8>,
    signature: Vec<u8>,
    sha256_with_rsa: bool,
    pub(crate) key: RsaKey,
    pub(crate) sha256: String,
}

impl Certificate {
    fn parse(der: &[u8]) -> Result<Self, String> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("not X.509: {e}"))?;
        if !rest.is_empty() {
            return Err(format!("{} bytes after the certificate", rest.len()));
        }
        let tbs = &cert.tbs_certificate;
        let sha256_with_rsa = tbs.signature.algorithm.to_id_string() == SHA256_WITH_RSA;
        // Outside the signed part nothing may vary: the certificate must be exactly its signed part, the one
        // algorithm's DER and the signature, or a changed byte there would go unseen.
        let signature = cert.signature_value.data.to_vec();
        if sha256_with_rsa && der != canonical(tbs.as_ref(), &signature) {
            return Err(format!("{}: not in DER around its signed part", tbs.subject));
        }
        let key =
            RsaKey::from_spki_der(tbs.subject_pki.raw).ok_or_else(|| format!("{}: its key is not RSA", tbs.subject))?;
        Ok(Self {
            subject: tbs.subject.to_string(),
            subject_raw: tbs.subject.as_raw().to_vec(),
            issuer_raw: tbs.issuer.as_raw().to_vec(),
            tbs: tbs.as_ref().to_vec(),
            signature,
            sha256_with_rsa,
            key,
            sha256: hex::encode(Sha256::digest(der)),
        })
    }

    /// Whether `issuer_key` signed this certificate (sha256WithRSAEncryption only).
    pub(crate) fn signed_by(&self, issuer_key: &RsaKey) -> bool {
        self.sha256_with_rsa && issuer_key.verifies_sha256(&self.tbs, &self.signature)
    }

    /// Whether `issuer` issued it: its issuer name is that subject, and that key signed it.
    pub(crate) fn issued_by(&self, issuer: &Certificate) -> bool {
        self.issuer_raw == issuer.subject_raw && self.signed_by(&issuer.key)
    }

    /// Self-issued and signed by its own key.
    pub(crate) fn self_signed(&self) -> bool {
        self.issued_by(self)
    }
}

/// AlgorithmIdentifier { sha256WithRSAEncryption, NULL }, as DER.
const SHA256_WITH_RSA_DER: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];

/// `SEQUENCE { tbs, sha256WithRSAEncryption, BIT STRING signature }` in DER.
fn canonical(tbs: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut bits = vec![0u8];
    bits.extend_from_slice(signature);
    let mut content = tbs.to_vec();
    content.extend_from_slice(&SHA256_WITH_RSA_DER);
    content.extend(tlv(0x03, &bits));
    tlv(0x30, &content)
}

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let len = value.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

/// Every certificate of the bundle, in order.
pub(crate) fn parse(pem: &[u8]) -> Result<Vec<Certificate>, Refusal> {
    let refuse = |detail: String| Refusal::new(Check::Certificates, detail);
    let mut certs = Vec::new();
    for block in Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| refuse(format!("the bundle is not PEM: {e}")))?;
        if block.label != "CERTIFICATE" {
            return Err(refuse(format!("a `{}` block where certificates belong", block.label)));
        }
        if certs.len() == MAX_CERTIFICATES {
            return Err(refuse(format!("more than {MAX_CERTIFICATES} certificates")));
        }
        let index = certs.len() + 1;
        certs.push(Certificate::parse(&block.contents).map_err(|e| refuse(format!("certificate {index}: {e}")))?);
    }
    if certs.is_empty() {
        return Err(refuse("the bundle holds no certificate".into()));
    }
    Ok(certs)
}

//! X.509 and keys as pure functions over bytes: CSR checks, certificate
//! inspection, PEM, and the built-in CA's signer.

pub mod cert;
pub mod csr;
pub mod der;
pub mod import;
pub mod signer;

pub use cert::{inspect_der, parse_pem_certs, pem_encode_cert, CertError, CertificateInfo};
pub use csr::{decode_csr, CsrError, CsrPolicy, DecodedCsr, KeyType};
pub use signer::{generate_ca, CaKeyMaterial, LeafRequest, Signer, SignerError};

/// Key, CSR and openssl helpers shared by the tests of this module.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;
    use std::process::Command;

    use rcgen::{CertificateParams, DnType, KeyPair, SanType, SignatureAlgorithm};

    /// A CSR in DER made by rcgen, with the given common name and SANs.
    pub fn rcgen_csr(
        alg: &'static SignatureAlgorithm,
        common_name: Option<&str>,
        sans: Vec<SanType>,
    ) -> Vec<u8> {
        rcgen_csr_with(alg, common_name, sans, |_| {})
    }

    /// As [`rcgen_csr`], letting the test change the parameters first.
    pub fn rcgen_csr_with(
        alg: &'static SignatureAlgorithm,
        common_name: Option<&str>,
        sans: Vec<SanType>,
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> Vec<u8> {
        let key = KeyPair::generate_for(alg).expect("generate key");
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.subject_alt_names = sans;
        tweak(&mut params);
        params
            .serialize_request(&key)
            .expect("serialize CSR")
            .der()
            .to_vec()
    }

    pub fn dns(name: &str) -> SanType {
        SanType::DnsName(name.try_into().expect("IA5 name"))
    }

    /// Runs openssl and returns its stdout; panics with its stderr on failure.
    pub fn openssl(args: &[&str]) -> Vec<u8> {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is installed at /usr/bin/openssl");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A CSR in DER made by openssl for a key generated with `genpkey_args`
    /// (e.g. `["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]`).
    pub fn openssl_csr(dir: &Path, genpkey_args: &[&str], req_args: &[&str]) -> Vec<u8> {
        let key = dir.join(format!("key-{}.pem", rand::random::<u64>()));
        let key = key.to_str().expect("utf-8 temp path");
        let mut args = vec!["genpkey", "-out", key];
        args.extend_from_slice(genpkey_args);
        openssl(&args);
        let mut args = vec!["req", "-new", "-key", key, "-outform", "DER"];
        args.extend_from_slice(req_args);
        openssl(&args)
    }
}

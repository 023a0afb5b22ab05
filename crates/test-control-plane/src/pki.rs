//! Certificates and keys for one throwaway control plane, generated fresh
//! for every start so nothing secret is ever committed or reused.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Names the serving certificate is valid for: loopback for the tests, plus
/// the in-cluster names the apiserver itself expects for its own service.
const SERVING_NAMES: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "10.0.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// Paths of the written files and the PEM text kubeconfigs embed.
pub(crate) struct Pki {
    pub(crate) ca_cert: PathBuf,
    pub(crate) serving_cert: PathBuf,
    pub(crate) serving_key: PathBuf,
    pub(crate) sa_public_key: PathBuf,
    pub(crate) sa_private_key: PathBuf,
    pub(crate) ca_pem: String,
    pub(crate) admin_cert_pem: String,
    pub(crate) admin_key_pem: String,
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

fn write(dir: &Path, file: &str, contents: &str) -> Result<PathBuf> {
    let path = dir.join(file);
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Generates the CA, serving and admin client certificates and the
/// service-account signing key pair into `dir`.
pub(crate) fn generate(dir: &Path) -> Result<Pki> {
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = name("test-control-plane-ca", None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("self-signing the CA")?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let serving_key = KeyPair::generate().context("generating the serving key")?;
    let mut serving = CertificateParams::new(
        SERVING_NAMES
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>(),
    )?;
    serving.distinguished_name = name("kube-apiserver", None);
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving
        .signed_by(&serving_key, &issuer)
        .context("signing the serving certificate")?;

    // O=system:masters is what makes a client certificate cluster-admin,
    // independent of any RBAC objects.
    let admin_key = KeyPair::generate().context("generating the admin key")?;
    let mut admin = CertificateParams::new(Vec::<String>::new())?;
    admin.distinguished_name = name("admin", Some("system:masters"));
    admin.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin
        .signed_by(&admin_key, &issuer)
        .context("signing the admin certificate")?;

    // ECDSA P-256: the apiserver signs service-account tokens with it (ES256)
    // and verifies them with the public half.
    let sa_key = KeyPair::generate().context("generating the service-account key")?;

    Ok(Pki {
        ca_cert: write(dir, "ca.crt", &ca_pem)?,
        serving_cert: write(dir, "apiserver.crt", &serving_cert.pem())?,
        serving_key: write(dir, "apiserver.key", &serving_key.serialize_pem())?,
        sa_public_key: write(dir, "sa.pub", &sa_key.public_key_pem())?,
        sa_private_key: write(dir, "sa.key", &sa_key.serialize_pem())?,
        ca_pem,
        admin_cert_pem: admin_cert.pem(),
        admin_key_pem: admin_key.serialize_pem(),
    })
}

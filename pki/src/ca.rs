//! The cluster CA: a self-signed ECDSA P-256 certificate and its key, kept in one directory
//! (`ca.pem`, `ca.key`), that signs every process's certificate.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::files::{read_private, write_private, write_public};
use crate::{PkiError, Role};

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";
/// How long a cluster CA is valid, in days, unless given.
pub const CA_DAYS_DEFAULT: u32 = 3650;
/// How long a process's certificate is valid, in days, unless given.
pub const LEAF_DAYS_DEFAULT: u32 = 365;
/// Certificates are valid from a little before they are made: clocks of a cluster differ.
const BACKDATE: Duration = Duration::hours(1);
const CA_NAME: &str = "Boxoffice cluster CA";

/// The CA's parameters: the same at creation and whenever it signs (what an issuer contributes
/// to a certificate is its name, key usages and key identifier method).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = name;
    // It signs processes' certificates only, no intermediate CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(days));
}

fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive, as RFC 5280 asks
    SerialNumber::from_slice(&bytes)
}

pub struct ClusterCa {
    key: KeyPair,
    cert_pem: String,
}

/// A process's credential, as issued: its certificate, its key and the CA's certificate.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl ClusterCa {
    /// Creates a CA in `dir` (made if missing); refuses to overwrite one.
    pub fn create(dir: &Path, days: u32) -> Result<ClusterCa, PkiError> {
        std::fs::create_dir_all(dir).map_err(PkiError::io(dir))?;
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        validity(&mut params, days);
        params.serial_number = Some(serial());
        let cert_pem = params.self_signed(&key)?.pem();
        write_private(&dir.join(CA_KEY_FILE), key.serialize_pem().as_bytes(), true)?;
        write_public(&dir.join(CA_CERT_FILE), cert_pem.as_bytes())?;
        Ok(ClusterCa { key, cert_pem })
    }

    /// The CA kept in `dir`.
    pub fn load(dir: &Path) -> Result<ClusterCa, PkiError> {
        let key_path = dir.join(CA_KEY_FILE);
        let key_pem = String::from_utf8(read_private(&key_path)?).map_err(|e| PkiError::invalid(&key_path, e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::invalid(&key_path, e))?;
        let cert_path = dir.join(CA_CERT_FILE);
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(PkiError::io(&cert_path))?;
        Ok(ClusterCa { key, cert_pem })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for a process named `name` in `role`, valid for `days`. Roles that serve
    /// (node, indexer) need the `hosts` others reach them at (names or IP addresses).
    pub fn issue(&self, role: Role, name: &str, hosts: &[String], days: u32) -> Result<Issued, PkiError> {
        if role.serves() && hosts.is_empty() {
            return Err(PkiError::NoHost { role });
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationalUnitName, role.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names.push(SanType::DnsName(role.san().try_into()?));
        for host in hosts {
            params.subject_alt_names.push(match host.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(host.clone().try_into()?),
            });
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if role.serves() {
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days);
        params.serial_number = Some(serial());
        let key = KeyPair::generate()?;
        let issuer = Issuer::new(ca_params(), &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), ca_pem: self.cert_pem.clone() })
    }
}

impl Issued {
    /// Writes the credential into `dir` (made if missing) as `--tls-dir` reads it.
    pub fn write(&self, dir: &Path) -> Result<(), PkiError> {
        std::fs::create_dir_all(dir).map_err(PkiError::io(dir))?;
        write_private(&dir.join(crate::KEY_FILE), self.key_pem.as_bytes(), false)?;
        write_public(&dir.join(crate::CERT_FILE), self.cert_pem.as_bytes())?;
        write_public(&dir.join(CA_CERT_FILE), self.ca_pem.as_bytes())
    }
}

//! The CA the uploader trusts for an https InfluxDB URL (`influx_ca_file`).
//!
//! The file is checked when the settings are read, like every other value,
//! so a missing file, one without a certificate or one whose certificate
//! rustls cannot use stops the uploader at start with the key and the layer
//! it came from. Only this CA is trusted then, not the built-in public roots:
//! an operator who names a CA means that CA (a store's self-signed
//! certificate, or a private CA), and nobody else's certificate should pass.

use std::path::{Path, PathBuf};

use pulsewire_runtime::config::de;
use serde::Deserializer;

/// The certificates of one PEM file, ready to be trusted.
#[derive(Debug, Clone)]
pub struct CaFile {
    path: PathBuf,
    certificates: Vec<reqwest::Certificate>,
}

impl CaFile {
    /// Reads and checks `path`: at least one PEM certificate, each one
    /// usable as a root by rustls.
    pub fn load(path: &str) -> Result<Self, String> {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read the CA file `{path}`: {e}"))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("`{path}` is not a PEM certificate bundle: {e}"))?;
        if certificates.is_empty() {
            return Err(format!(
                "`{path}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            ));
        }
        let ca = Self {
            path: PathBuf::from(path),
            certificates,
        };
        // reqwest parses the certificates only when a client is built.
        ca.trusting(reqwest::Client::builder())
            .build()
            .map_err(|e| format!("`{path}` holds a certificate that cannot be trusted: {e}"))?;
        Ok(ca)
    }

    /// `builder` trusting this CA only.
    pub fn trusting(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        self.certificates.iter().cloned().fold(
            builder.use_rustls_tls().tls_built_in_root_certs(false),
            |b, cert| b.add_root_certificate(cert),
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// serde `deserialize_with`: an optional [`CaFile`], checked as it is read.
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CaFile>, D::Error> {
    de::checked(d, CaFile::load).map(Some)
}

/// The InfluxDB client for `url`: trusting only `ca` when given. A CA with
/// a plain http URL is refused: the operator meant the store to be
/// protected, and it would not be.
pub fn influx_client(
    url: &str,
    org: &str,
    token: String,
    ca: Option<&CaFile>,
) -> anyhow::Result<influxdb2::Client> {
    let builder = match ca {
        Some(ca) if !url.starts_with("https://") => anyhow::bail!(
            "influx_ca_file {} is set but influx_url {url} is not https://: \
             the CA would protect nothing",
            ca.path().display()
        ),
        Some(ca) => ca.trusting(reqwest::Client::builder()),
        None => reqwest::Client::builder(),
    };
    Ok(influxdb2::ClientBuilder::with_builder(builder, url, org, token).build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate (no key kept) for 127.0.0.1 and localhost.
    const CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ca.pem");

    fn file(name: &str, text: &str) -> (tempdir::Dir, String) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join(name);
        std::fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap().to_string();
        (dir, path)
    }

    /// A directory removed at the end of the test.
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let dir = std::env::temp_dir()
                    .join(format!("pulsewire-uploader-ca-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                Self(dir)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_pem_certificate_is_loaded() {
        let ca = CaFile::load(CA).unwrap();
        assert_eq!(ca.path(), Path::new(CA));
        assert_eq!(ca.certificates.len(), 1);
        // Two certificates in one file (a chain, or an old and a new CA).
        let pem = std::fs::read_to_string(CA).unwrap();
        let (_dir, both) = file("both.pem", &format!("{pem}{pem}"));
        assert_eq!(CaFile::load(&both).unwrap().certificates.len(), 2);
    }

    #[test]
    fn a_missing_empty_or_broken_file_is_refused_by_name() {
        let err = CaFile::load("/nonexistent/ca.pem").unwrap_err();
        assert!(
            err.starts_with("cannot read the CA file `/nonexistent/ca.pem`: "),
            "{err}"
        );
        let (_dir, empty) = file("empty.pem", "");
        assert_eq!(
            CaFile::load(&empty).unwrap_err(),
            format!("`{empty}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        );
        // A private key is no certificate.
        let (_dir, key) = file(
            "key.pem",
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
        );
        assert_eq!(
            CaFile::load(&key).unwrap_err(),
            format!("`{key}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        );
        // Armour around bytes that are no certificate.
        let (_dir, broken) = file(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        );
        let err = CaFile::load(&broken).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "`{broken}` holds a certificate that cannot be trusted: "
            )),
            "{err}"
        );
    }

    #[test]
    fn a_ca_with_a_plain_http_url_is_refused() {
        let ca = CaFile::load(CA).unwrap();
        let err = influx_client("http://127.0.0.1:8086", "o", "t".into(), Some(&ca))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "influx_ca_file {CA} is set but influx_url http://127.0.0.1:8086 is not https://: \
                 the CA would protect nothing"
            )
        );
        assert!(influx_client("https://127.0.0.1:8086", "o", "t".into(), Some(&ca)).is_ok());
        assert!(influx_client("http://127.0.0.1:8086", "o", "t".into(), None).is_ok());
    }
}

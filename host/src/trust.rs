//! Where a component comes from, and whether the daemon runs it.
//!
//! * Built-in components are pinned by hash when the binary is built
//!   (`build.rs`): exactly those bytes, under those names, are trusted.
//! * Any other component needs a signature: ed25519, by a key in the
//!   trusted-keys directory, over the component's SHA-256, in a sidecar file
//!   `<component>.wasm.sig`.
//! * The operator may allow unsigned components from named directories
//!   (development, tests).
//!
//! What is signed is `"guestward-component-v1\0"` followed by the 32-byte
//! SHA-256 of the `.wasm`, so a signature can never be mistaken for one over
//! anything else.

use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use zeroize::Zeroizing;

include!(concat!(env!("OUT_DIR"), "/builtin_pins.rs"));

/// Where operators put the public keys they trust.
pub const DEFAULT_TRUSTED_KEYS: &str = "/etc/guestward/trusted-keys";

const SIGNED_PREFIX: &[u8] = b"guestward-component-v1\0";
const PUBLIC_KEY_HEADER: &str = "guestward-public-key-v1";
const PRIVATE_KEY_HEADER: &str = "guestward-private-key-v1";
const SIGNATURE_HEADER: &str = "guestward-signature-v1";

/// Why a component is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// Pinned into this binary at build time.
    BuiltIn,
    /// Signed by the trusted key of this name.
    SignedBy(String),
    /// In a directory the operator allows unsigned components from.
    UnsignedAllowed,
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BuiltIn => f.write_str("built-in (pinned)"),
            Self::SignedBy(key) => write!(f, "signed by {key}"),
            Self::UnsignedAllowed => f.write_str("unsigned (allowed for its directory)"),
        }
    }
}

/// Why a component is not trusted, or a key or signature file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path}: not signed (no {path}.sig) and not a built-in component")]
    Unsigned { path: String },
    #[error("{path}: signed by a key that is not trusted ({key})")]
    UntrustedKey { path: String, key: String },
    #[error("{path}: the signature does not match the component (modified after signing?)")]
    BadSignature { path: String },
    #[error("{path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// The keys and directories a daemon trusts.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    keys: Vec<(String, VerifyingKey)>,
    unsigned_dirs: Vec<PathBuf>,
}

impl TrustStore {
    /// The public keys (`*.pub`) of `dir` (a missing directory means no
    /// keys), and the directories unsigned components may come from.
    pub fn load(dir: Option<&Path>, unsigned_dirs: &[PathBuf]) -> Result<Self, TrustError> {
        let mut keys = Vec::new();
        if let Some(dir) = dir
            && dir.exists()
        {
            let entries = std::fs::read_dir(dir).map_err(|source| io_error(dir, source))?;
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "pub"))
                .collect();
            paths.sort();
            for path in paths {
                let name = path
                    .file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned())
                    .unwrap_or_default();
                keys.push((name, read_public_key(&path)?));
            }
        }
        let unsigned_dirs = unsigned_dirs
            .iter()
            .map(|dir| dir.canonicalize().unwrap_or_else(|_| dir.clone()))
            .collect();
        Ok(Self { keys, unsigned_dirs })
    }

    /// Whether to run the component at `path`, whose SHA-256 is `sha256`.
    pub fn check(&self, path: &Path, sha256: &str) -> Result<Provenance, TrustError> {
        let name = path.file_stem().map(|stem| stem.to_string_lossy()).unwrap_or_default();
        if BUILTIN_PINS
            .iter()
            .any(|(pinned, hash)| *pinned == name && *hash == sha256)
        {
            return Ok(Provenance::BuiltIn);
        }
        let sidecar = signature_path(path);
        if sidecar.exists() {
            return self.verify(path, &sidecar, sha256);
        }
        let dir = path.parent().and_then(|dir| dir.canonicalize().ok());
        if dir.is_some_and(|dir| self.unsigned_dirs.contains(&dir)) {
            return Ok(Provenance::UnsignedAllowed);
        }
        Err(TrustError::Unsigned {
            path: path.display().to_string(),
        })
    }

    fn verify(&self, path: &Path, sidecar: &Path, sha256: &str) -> Result<Provenance, TrustError> {
        let text = std::fs::read_to_string(sidecar).map_err(|source| io_error(sidecar, source))?;
        let sidecar_file = parse_signature(&text).map_err(|reason| malformed(sidecar, reason))?;
        let Some((name, key)) = self.keys.iter().find(|(_, key)| *key == sidecar_file.key) else {
            return Err(TrustError::UntrustedKey {
                path: path.display().to_string(),
                key: hex::encode(sidecar_file.key.as_bytes()),
            });
        };
        let digest = decode_digest(sha256).map_err(|reason| malformed(path, reason))?;
        key.verify(&signed_message(&digest), &sidecar_file.signature)
            .map_err(|_| TrustError::BadSignature {
                path: path.display().to_string(),
            })?;
        Ok(Provenance::SignedBy(name.clone()))
    }
}

/// The sidecar signature file of a component: `<component>.wasm.sig`.
pub fn signature_path(component: &Path) -> PathBuf {
    let mut path = component.as_os_str().to_owned();
    path.push(".sig");
    PathBuf::from(path)
}

/// A new key pair, as the text of its private and public key files.
pub fn generate_key() -> Result<(Zeroizing<String>, String), getrandom::Error> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut_slice())?;
    let key = SigningKey::from_bytes(&seed);
    let private = Zeroizing::new(format!("{PRIVATE_KEY_HEADER} {}\n", hex::encode(seed.as_slice())));
    let public = format!("{PUBLIC_KEY_HEADER} {}\n", hex::encode(key.verifying_key().as_bytes()));
    Ok((private, public))
}

/// The signature file for a component whose SHA-256 is `sha256`, signed
/// with the private key file text `private_key`.
pub fn sign(private_key: &str, sha256: &str) -> Result<String, String> {
    let seed = Zeroizing::new(parse_key_line(private_key, PRIVATE_KEY_HEADER)?);
    let key = SigningKey::from_bytes(&seed);
    let signature = key.sign(&signed_message(&decode_digest(sha256)?));
    Ok(format!(
        "{SIGNATURE_HEADER}\nkey {}\nsha256 {sha256}\nsignature {}\n",
        hex::encode(key.verifying_key().as_bytes()),
        hex::encode(signature.to_bytes())
    ))
}

fn signed_message(digest: &[u8; 32]) -> Vec<u8> {
    [SIGNED_PREFIX, digest.as_slice()].concat()
}

struct SignatureFile {
    key: VerifyingKey,
    signature: Signature,
}

fn parse_signature(text: &str) -> Result<SignatureFile, String> {
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    if lines.next() != Some(SIGNATURE_HEADER) {
        return Err(format!("not a signature file (it must start with {SIGNATURE_HEADER})"));
    }
    let (mut key, mut signature) = (None, None);
    for line in lines {
        match line.split_once(' ') {
            Some(("key", value)) => key = Some(decode_array::<32>(value, "key")?),
            Some(("signature", value)) => signature = Some(decode_array::<64>(value, "signature")?),
            // The digest is informative: the signature is checked against
            // the component's own digest.
            Some(("sha256", _)) => {}
            _ => return Err(format!("unexpected line {line:?}")),
        }
    }
    let key = key.ok_or("no key line")?;
    Ok(SignatureFile {
        key: VerifyingKey::from_bytes(&key).map_err(|_| "the key is not a valid ed25519 key".to_owned())?,
        signature: Signature::from_bytes(&signature.ok_or("no signature line")?),
    })
}

fn read_public_key(path: &Path) -> Result<VerifyingKey, TrustError> {
    let text = std::fs::read_to_string(path).map_err(|source| io_error(path, source))?;
    let bytes = parse_key_line(&text, PUBLIC_KEY_HEADER).map_err(|reason| malformed(path, reason))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| malformed(path, "not a valid ed25519 public key".to_owned()))
}

/// `<header> <64 hex digits>` on the first non-comment line.
fn parse_key_line(text: &str, header: &str) -> Result<[u8; 32], String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .ok_or("empty key file")?;
    match line.split_once(' ') {
        Some((found, value)) if found == header => decode_array::<32>(value.trim(), "key"),
        _ => Err(format!("not a {header} file")),
    }
}

fn decode_digest(sha256: &str) -> Result<[u8; 32], String> {
    decode_array::<32>(sha256, "sha256")
}

fn decode_array<const N: usize>(text: &str, what: &str) -> Result<[u8; N], String> {
    let bytes = hex::decode(text.trim()).map_err(|_| format!("the {what} is not hex"))?;
    bytes.try_into().map_err(|_| format!("the {what} is not {N} bytes"))
}

fn io_error(path: &Path, source: std::io::Error) -> TrustError {
    TrustError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn malformed(path: &Path, reason: String) -> TrustError {
    TrustError::Malformed {
        path: path.display().to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "7f8ab989a4ffbcbd374e87bcdcd3f24baf514e85710c7fe36b5adc52c465a28e";

    struct Setup {
        dir: tempfile::TempDir,
        private: Zeroizing<String>,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = generate_key().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/vendor.pub"), public).unwrap();
        Setup { dir, private }
    }

    impl Setup {
        fn store(&self) -> TrustStore {
            TrustStore::load(Some(&self.dir.path().join("keys")), &[]).unwrap()
        }

        fn component(&self, signature: Option<String>) -> PathBuf {
            let path = self.dir.path().join("tool.wasm");
            if let Some(signature) = signature {
                std::fs::write(signature_path(&path), signature).unwrap();
            }
            path
        }
    }

    #[test]
    fn a_signature_by_a_trusted_key_is_accepted() {
        let setup = setup();
        let path = setup.component(Some(sign(&setup.private, DIGEST).unwrap()));
        assert_eq!(
            setup.store().check(&path, DIGEST).unwrap(),
            Provenance::SignedBy("vendor".into())
        );
    }

    #[test]
    fn a_component_changed_after_signing_is_refused() {
        let setup = setup();
        let path = setup.component(Some(sign(&setup.private, DIGEST).unwrap()));
        let other = DIGEST.replace('7', "8");
        assert!(matches!(
            setup.store().check(&path, &other),
            Err(TrustError::BadSignature { .. })
        ));
    }

    #[test]
    fn a_signature_by_another_key_is_refused() {
        let setup = setup();
        let (stranger, _) = generate_key().unwrap();
        let path = setup.component(Some(sign(&stranger, DIGEST).unwrap()));
        assert!(matches!(
            setup.store().check(&path, DIGEST),
            Err(TrustError::UntrustedKey { .. })
        ));
    }

    #[test]
    fn unsigned_components_need_an_allowed_directory() {
        let setup = setup();
        let path = setup.component(None);
        assert!(matches!(
            setup.store().check(&path, DIGEST),
            Err(TrustError::Unsigned { .. })
        ));
        let allowing = TrustStore::load(None, &[setup.dir.path().to_owned()]).unwrap();
        assert_eq!(allowing.check(&path, DIGEST).unwrap(), Provenance::UnsignedAllowed);
    }

    #[test]
    fn garbage_signature_files_are_reported() {
        let setup = setup();
        let path = setup.component(Some("hello\n".into()));
        let error = setup.store().check(&path, DIGEST).unwrap_err();
        assert!(error.to_string().contains("not a signature file"), "{error}");
        assert!(
            TrustStore::load(Some(setup.dir.path()), &[]).is_ok(),
            "a directory without keys is fine"
        );
        std::fs::write(setup.dir.path().join("keys/bad.pub"), "guestward-public-key-v1 zz\n").unwrap();
        assert!(TrustStore::load(Some(&setup.dir.path().join("keys")), &[]).is_err());
    }
}

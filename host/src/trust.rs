//! Where a component comes from, and whether the daemon runs it.
//!
//! * Built-in components are pinned by hash when the binary is built
//!   (`build.rs`): exactly those bytes, under those names, are trusted.
//! * Any other component needs a signature: ed25519, by a key in the
//!   trusted-keys directory, in a sidecar file `<component>.wasm.sig`.
//! * The operator may allow unsigned components from named directories
//!   (development, tests).
//!
//! A signature binds the component's bytes *and its name*, because grants
//! and private state are looked up by name: what is signed (v2) is
//! `"guestward-component-v2\0"`, the component's name (the file stem, which
//! never holds a NUL), a NUL, and the 32-byte SHA-256 of the `.wasm`. A
//! signature made for `tool` does not cover the same bytes shipped as
//! `password.wasm`. v1 signatures (`"guestward-component-v1\0"` and the
//! digest, no name) are refused unless the operator accepts them.
//!
//! On top of that, the policy may pin which keys may sign a name
//! (`signers = [...]`), and a built-in command name can be taken over only
//! by a key pinned for it: a key trusted for third-party commands cannot
//! replace `password`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use zeroize::Zeroizing;

include!(concat!(env!("OUT_DIR"), "/builtin_pins.rs"));

/// Where operators put the public keys they trust.
pub const DEFAULT_TRUSTED_KEYS: &str = "/etc/guestward/trusted-keys";

const SIGNED_PREFIX_V1: &[u8] = b"guestward-component-v1\0";
const SIGNED_PREFIX_V2: &[u8] = b"guestward-component-v2\0";
const PUBLIC_KEY_HEADER: &str = "guestward-public-key-v1";
const PRIVATE_KEY_HEADER: &str = "guestward-private-key-v1";
const SIGNATURE_HEADER_V1: &str = "guestward-signature-v1";
const SIGNATURE_HEADER_V2: &str = "guestward-signature-v2";

/// Why a component is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// Pinned into this binary at build time.
    BuiltIn,
    /// Signed, for its name, by the trusted key of this name.
    SignedBy(String),
    /// Signed by the trusted key of this name with a v1 signature, which
    /// does not name the component (accepted only by the operator's choice).
    SignedV1By(String),
    /// In a directory the operator allows unsigned components from.
    UnsignedAllowed,
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BuiltIn => f.write_str("built-in (pinned)"),
            Self::SignedBy(key) => write!(f, "signed by {key}"),
            Self::SignedV1By(key) => write!(f, "signed by {key} (v1 signature: the name is not signed)"),
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
    #[error("{path}: the signature is for component {signed_for}, not {name} (renamed after signing?)")]
    WrongName {
        path: String,
        name: String,
        signed_for: String,
    },
    #[error(
        "{path}: a v1 signature (it does not name the component); sign it again, or accept v1 signatures (--accept-v1-signatures)"
    )]
    LegacySignature { path: String },
    #[error(
        "{path}: `{name}` is a built-in command name: only the pinned built-in, or a key named in component.{name}.signers, may provide it ({found})"
    )]
    BuiltinName { path: String, name: String, found: String },
    #[error("{path}: component.{name}.signers allows only {allowed} ({found})")]
    NotASigner {
        path: String,
        name: String,
        allowed: String,
        found: String,
    },
    #[error("{path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// The keys and directories a daemon trusts, and which keys may sign which
/// component names.
#[derive(Debug, Clone)]
pub struct TrustStore {
    keys: Vec<(String, VerifyingKey)>,
    unsigned_dirs: Vec<PathBuf>,
    /// Accept v1 signatures (which do not bind the name).
    accept_v1: bool,
    /// Component name → the only keys that may sign it (from the policy's
    /// `signers`).
    signers: BTreeMap<String, Vec<String>>,
    /// (name, SHA-256) of the built-in components.
    builtins: &'static [(&'static str, &'static str)],
}

impl Default for TrustStore {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            unsigned_dirs: Vec::new(),
            accept_v1: false,
            signers: BTreeMap::new(),
            builtins: BUILTIN_PINS,
        }
    }
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
        Ok(Self {
            keys,
            unsigned_dirs,
            ..Self::default()
        })
    }

    /// Also accept v1 signatures, which do not bind the component's name
    /// (for components signed before v2; off by default).
    pub fn accept_v1_signatures(mut self, accept: bool) -> Self {
        self.accept_v1 = accept;
        self
    }

    /// Pin signers: a component named like a key of `signers` runs only
    /// when signed by one of the keys listed for it (or as the pinned
    /// built-in bytes).
    pub fn with_signers<'a>(mut self, signers: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Self {
        self.signers = signers
            .into_iter()
            .map(|(name, keys)| (name.to_owned(), keys.to_vec()))
            .collect();
        self
    }

    /// The names of the trusted keys.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(name, _)| name.as_str())
    }

    /// Whether to run the component at `path`, whose SHA-256 is `sha256`,
    /// under its name (the file stem).
    pub fn check(&self, path: &Path, sha256: &str) -> Result<Provenance, TrustError> {
        let name = path.file_stem().map(|stem| stem.to_string_lossy()).unwrap_or_default();
        if self.is_pinned(&name, sha256) {
            return Ok(Provenance::BuiltIn);
        }
        let sidecar = signature_path(path);
        let provenance = if sidecar.exists() {
            let text = std::fs::read_to_string(&sidecar).map_err(|source| io_error(&sidecar, source))?;
            self.verify(path, &name, &text, sha256)?
        } else {
            let dir = path.parent().and_then(|dir| dir.canonicalize().ok());
            if !dir.is_some_and(|dir| self.unsigned_dirs.contains(&dir)) {
                return Err(TrustError::Unsigned {
                    path: path.display().to_string(),
                });
            }
            Provenance::UnsignedAllowed
        };
        self.authorize(path, &name, provenance)
    }

    /// Whether the component handed over with `signature` (an update, not a
    /// file in a directory, so no unsigned directory applies) may run as
    /// the component at `path`.
    pub fn check_given(&self, path: &Path, sha256: &str, signature: Option<&str>) -> Result<Provenance, TrustError> {
        let name = path.file_stem().map(|stem| stem.to_string_lossy()).unwrap_or_default();
        if self.is_pinned(&name, sha256) {
            return Ok(Provenance::BuiltIn);
        }
        let Some(text) = signature else {
            return Err(TrustError::Unsigned {
                path: path.display().to_string(),
            });
        };
        let provenance = self.verify(path, &name, text, sha256)?;
        self.authorize(path, &name, provenance)
    }

    fn is_pinned(&self, name: &str, sha256: &str) -> bool {
        self.builtins
            .iter()
            .any(|(pinned, hash)| *pinned == name && *hash == sha256)
    }

    /// A component may have a verified signature and still not be allowed
    /// its name: pinned signers, and built-in names, are for named keys only.
    fn authorize(&self, path: &Path, name: &str, provenance: Provenance) -> Result<Provenance, TrustError> {
        let signer = match &provenance {
            Provenance::SignedBy(key) | Provenance::SignedV1By(key) => Some(key.as_str()),
            _ => None,
        };
        let found = match signer {
            Some(key) => format!("signed by {key}"),
            None => provenance.to_string(),
        };
        match self.signers.get(name) {
            Some(allowed) if signer.is_some_and(|key| allowed.iter().any(|pinned| pinned == key)) => Ok(provenance),
            Some(allowed) => Err(TrustError::NotASigner {
                path: path.display().to_string(),
                name: name.to_owned(),
                allowed: if allowed.is_empty() {
                    "the pinned built-in (no key)".to_owned()
                } else {
                    allowed.join(", ")
                },
                found,
            }),
            None if self.builtins.iter().any(|(pinned, _)| *pinned == name) => Err(TrustError::BuiltinName {
                path: path.display().to_string(),
                name: name.to_owned(),
                found,
            }),
            None => Ok(provenance),
        }
    }

    /// Check the signature file `text` of the component at `path`.
    fn verify(&self, path: &Path, name: &str, text: &str, sha256: &str) -> Result<Provenance, TrustError> {
        let sidecar = signature_path(path);
        let sidecar_file = parse_signature(text).map_err(|reason| malformed(&sidecar, reason))?;
        let Some((key_name, key)) = self.keys.iter().find(|(_, key)| *key == sidecar_file.key) else {
            return Err(TrustError::UntrustedKey {
                path: path.display().to_string(),
                key: hex::encode(sidecar_file.key.as_bytes()),
            });
        };
        let digest = decode_digest(sha256).map_err(|reason| malformed(path, reason))?;
        let message = match &sidecar_file.signed_for {
            SignedFor::Unbound if !self.accept_v1 => {
                return Err(TrustError::LegacySignature {
                    path: path.display().to_string(),
                });
            }
            SignedFor::Unbound => signed_message_v1(&digest),
            SignedFor::Name(signed_for) if signed_for != name => {
                return Err(TrustError::WrongName {
                    path: path.display().to_string(),
                    name: name.to_owned(),
                    signed_for: signed_for.clone(),
                });
            }
            SignedFor::Name(_) => signed_message(name, &digest),
        };
        key.verify(&message, &sidecar_file.signature)
            .map_err(|_| TrustError::BadSignature {
                path: path.display().to_string(),
            })?;
        Ok(match sidecar_file.signed_for {
            SignedFor::Unbound => Provenance::SignedV1By(key_name.clone()),
            SignedFor::Name(_) => Provenance::SignedBy(key_name.clone()),
        })
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

/// Whether `name` can be a signed component name: the stem of
/// `<name>.wasm`, letters, digits, `-`, `_` and `.`, not starting with `.`.
pub fn valid_component_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The signature file for the component `name` (`name.wasm`) whose SHA-256
/// is `sha256`, signed with the private key file text `private_key`.
pub fn sign(private_key: &str, name: &str, sha256: &str) -> Result<String, String> {
    if !valid_component_name(name) {
        return Err(format!("{name:?} is not a component name"));
    }
    let key = signing_key(private_key)?;
    let signature = key.sign(&signed_message(name, &decode_digest(sha256)?));
    Ok(format!(
        "{SIGNATURE_HEADER_V2}\nname {name}\nkey {}\nsha256 {sha256}\nsignature {}\n",
        hex::encode(key.verifying_key().as_bytes()),
        hex::encode(signature.to_bytes())
    ))
}

/// A v1 signature file (the digest only, no name), as older releases made
/// them: only for testing the operator's opt-in.
#[doc(hidden)]
pub fn sign_v1(private_key: &str, sha256: &str) -> Result<String, String> {
    let key = signing_key(private_key)?;
    let signature = key.sign(&signed_message_v1(&decode_digest(sha256)?));
    Ok(format!(
        "{SIGNATURE_HEADER_V1}\nkey {}\nsha256 {sha256}\nsignature {}\n",
        hex::encode(key.verifying_key().as_bytes()),
        hex::encode(signature.to_bytes())
    ))
}

fn signing_key(private_key: &str) -> Result<SigningKey, String> {
    let seed = Zeroizing::new(parse_key_line(private_key, PRIVATE_KEY_HEADER)?);
    Ok(SigningKey::from_bytes(&seed))
}

/// v2: prefix, name, NUL, digest (names never hold a NUL, so no two
/// (name, digest) pairs give the same message).
fn signed_message(name: &str, digest: &[u8; 32]) -> Vec<u8> {
    [SIGNED_PREFIX_V2, name.as_bytes(), b"\0", digest.as_slice()].concat()
}

fn signed_message_v1(digest: &[u8; 32]) -> Vec<u8> {
    [SIGNED_PREFIX_V1, digest.as_slice()].concat()
}

/// What a signature file says it was made for.
enum SignedFor {
    /// v1: bytes only.
    Unbound,
    /// v2: this component name and its bytes.
    Name(String),
}

struct SignatureFile {
    key: VerifyingKey,
    signature: Signature,
    signed_for: SignedFor,
}

fn parse_signature(text: &str) -> Result<SignatureFile, String> {
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let v2 = match lines.next() {
        Some(SIGNATURE_HEADER_V2) => true,
        Some(SIGNATURE_HEADER_V1) => false,
        _ => {
            return Err(format!(
                "not a signature file (it must start with {SIGNATURE_HEADER_V2})"
            ));
        }
    };
    let (mut key, mut signature, mut name) = (None, None, None);
    for line in lines {
        match line.split_once(' ') {
            Some(("key", value)) => key = Some(decode_array::<32>(value, "key")?),
            Some(("signature", value)) => signature = Some(decode_array::<64>(value, "signature")?),
            Some(("name", value)) if v2 => name = Some(value.trim().to_owned()),
            // The digest is informative: the signature is checked against
            // the component's own digest.
            Some(("sha256", _)) => {}
            _ => return Err(format!("unexpected line {line:?}")),
        }
    }
    let key = key.ok_or("no key line")?;
    let signed_for = match name {
        Some(name) => SignedFor::Name(name),
        None if v2 => return Err("no name line".to_owned()),
        None => SignedFor::Unbound,
    };
    Ok(SignatureFile {
        key: VerifyingKey::from_bytes(&key).map_err(|_| "the key is not a valid ed25519 key".to_owned())?,
        signature: Signature::from_bytes(&signature.ok_or("no signature line")?),
        signed_for,
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
            self.component_named("tool", signature)
        }

        fn component_named(&self, name: &str, signature: Option<String>) -> PathBuf {
            let path = self.dir.path().join(format!("{name}.wasm"));
            if let Some(signature) = signature {
                std::fs::write(signature_path(&path), signature).unwrap();
            }
            path
        }
    }

    #[test]
    fn a_signature_by_a_trusted_key_is_accepted() {
        let setup = setup();
        let path = setup.component(Some(sign(&setup.private, "tool", DIGEST).unwrap()));
        assert_eq!(
            setup.store().check(&path, DIGEST).unwrap(),
            Provenance::SignedBy("vendor".into())
        );
    }

    #[test]
    fn a_component_changed_after_signing_is_refused() {
        let setup = setup();
        let path = setup.component(Some(sign(&setup.private, "tool", DIGEST).unwrap()));
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
        let path = setup.component(Some(sign(&stranger, "tool", DIGEST).unwrap()));
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

    #[test]
    fn a_signature_names_its_component_and_covers_no_other() {
        let setup = setup();
        let signature = sign(&setup.private, "tool", DIGEST).unwrap();
        assert!(signature.contains("\nname tool\n"), "{signature}");
        let renamed = setup.component_named("password", Some(signature.clone()));
        let error = setup.store().check(&renamed, DIGEST).unwrap_err();
        assert!(matches!(error, TrustError::WrongName { .. }), "{error}");
        assert!(
            error.to_string().contains("for component tool, not password"),
            "{error}"
        );
        // Editing the name line does not help: the signature covers the name.
        let forged = setup.component_named("other", Some(signature.replace("name tool", "name other")));
        assert!(matches!(
            setup.store().check(&forged, DIGEST),
            Err(TrustError::BadSignature { .. })
        ));
        assert!(sign(&setup.private, "a/b", DIGEST).is_err());
    }

    #[test]
    fn v1_signatures_need_the_operators_opt_in() {
        let setup = setup();
        let path = setup.component(Some(sign_v1(&setup.private, DIGEST).unwrap()));
        assert!(matches!(
            setup.store().check(&path, DIGEST),
            Err(TrustError::LegacySignature { .. })
        ));
        let accepting = setup.store().accept_v1_signatures(true);
        assert_eq!(
            accepting.check(&path, DIGEST).unwrap(),
            Provenance::SignedV1By("vendor".into())
        );
        let other = DIGEST.replace('7', "8");
        assert!(matches!(
            accepting.check(&path, &other),
            Err(TrustError::BadSignature { .. })
        ));
    }

    #[test]
    fn pinned_signers_are_the_only_keys_for_their_name() {
        let setup = setup();
        let path = setup.component(Some(sign(&setup.private, "tool", DIGEST).unwrap()));
        let pinned = |keys: &[String]| setup.store().with_signers([("tool", keys)]);
        assert_eq!(
            pinned(&["vendor".into()]).check(&path, DIGEST).unwrap(),
            Provenance::SignedBy("vendor".into())
        );
        let error = pinned(&["ops".into()]).check(&path, DIGEST).unwrap_err();
        assert!(matches!(error, TrustError::NotASigner { .. }), "{error}");
        assert!(
            error.to_string().contains("allows only ops (signed by vendor)"),
            "{error}"
        );
        // Pinning applies to unsigned directories too.
        let unsigned = setup.component_named("loose", None);
        let allowing = TrustStore::load(None, &[setup.dir.path().to_owned()])
            .unwrap()
            .with_signers([("loose", &["vendor".to_owned()][..])]);
        assert!(matches!(
            allowing.check(&unsigned, DIGEST),
            Err(TrustError::NotASigner { .. })
        ));
    }

    #[test]
    fn a_built_in_name_is_only_for_its_pinned_bytes_or_its_pinned_signers() {
        const PINS: &[(&str, &str)] = &[("password", DIGEST)];
        let setup = setup();
        let store = TrustStore {
            builtins: PINS,
            ..setup.store()
        };
        let other = DIGEST.replace('7', "8");
        let path = setup.component_named("password", Some(sign(&setup.private, "password", &other).unwrap()));
        assert_eq!(store.check(&path, DIGEST).unwrap(), Provenance::BuiltIn);
        let error = store.check(&path, &other).unwrap_err();
        assert!(matches!(error, TrustError::BuiltinName { .. }), "{error}");
        assert!(error.to_string().contains("component.password.signers"), "{error}");
        let pinned = store.with_signers([("password", &["vendor".to_owned()][..])]);
        assert_eq!(
            pinned.check(&path, &other).unwrap(),
            Provenance::SignedBy("vendor".into())
        );
        // Nor from a directory that allows unsigned components.
        let loose = setup.component_named("password", None);
        std::fs::remove_file(signature_path(&loose)).unwrap();
        let allowing = TrustStore {
            builtins: PINS,
            ..TrustStore::load(None, &[setup.dir.path().to_owned()]).unwrap()
        };
        assert!(matches!(
            allowing.check(&loose, &other),
            Err(TrustError::BuiltinName { .. })
        ));
    }
}

//! `guestward keygen`, `sign` and `verify`: the signing side of
//! [`trust`](guestward::trust).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use zeroize::Zeroizing;

use super::print_line;
use guestward::runtime::component::{component_name, sha256_hex};
use guestward::trust::{self, TrustStore};

/// Write `NAME.key` (private, 0600) and `NAME.pub` in `dir`; never overwrite.
pub fn keygen(name: &str, dir: &Path) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !name.is_empty() && !name.contains('/') && !name.starts_with('.'),
        "{name:?} is not a key name"
    );
    let (private, public) = trust::generate_key().context("cannot get random bytes for the key")?;
    let private_path = dir.join(format!("{name}.key"));
    let public_path = dir.join(format!("{name}.pub"));
    write_new(&private_path, private.as_bytes(), 0o600)?;
    write_new(&public_path, public.as_bytes(), 0o644)?;
    print_line(&format!(
        "wrote {} (keep it secret) and {} (install it in {} on the machines that trust it)",
        private_path.display(),
        public_path.display(),
        trust::DEFAULT_TRUSTED_KEYS
    ));
    Ok(ExitCode::SUCCESS)
}

/// Write `COMPONENT.sig` next to each component, signing its bytes for its
/// name: the file stem, or `name` (one component only) when it will be
/// installed under another name.
pub fn sign(key: &Path, name: Option<&str>, components: &[PathBuf]) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        name.is_none() || components.len() == 1,
        "--name signs one component only"
    );
    let private =
        Zeroizing::new(std::fs::read_to_string(key).with_context(|| format!("cannot read the key {}", key.display()))?);
    for component in components {
        let wasm = std::fs::read(component).with_context(|| format!("cannot read {}", component.display()))?;
        let name = name.map_or_else(|| component_name(component), str::to_owned);
        let signature = trust::sign(&private, &name, &sha256_hex(&wasm))
            .map_err(|reason| anyhow::anyhow!("{}: {reason}", key.display()))?;
        let sidecar = trust::signature_path(component);
        std::fs::write(&sidecar, signature).with_context(|| format!("cannot write {}", sidecar.display()))?;
        print_line(&format!(
            "signed {} as component {name} → {}",
            component.display(),
            sidecar.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the daemon would run each component under its name (with
/// `store`'s keys and signer pins); exit 1 if any would be refused.
pub fn verify(store: &TrustStore, components: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut refused = false;
    for component in components {
        let wasm = std::fs::read(component).with_context(|| format!("cannot read {}", component.display()))?;
        match store.check(component, &sha256_hex(&wasm)) {
            Ok(provenance) => print_line(&format!("{}: {provenance}", component.display())),
            Err(error) => {
                print_line(&format!("refused: {error}"));
                refused = true;
            }
        }
    }
    Ok(if refused { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)?;
    Ok(())
}

//! `guestward policy check`: is the policy valid, and what would each
//! component of a commands directory be granted (or why refused)?

use std::path::Path;
use std::process::ExitCode;

use super::print_line;
use crate::capability::Services;
use crate::policy::Policy;
use crate::root::Root;
use crate::runtime::{Registry, Runtime, RuntimeOptions};
use crate::trust::TrustStore;

pub async fn check(policy: Policy, commands: &Path, trust: TrustStore) -> anyhow::Result<ExitCode> {
    print_line(&format!("policy {}: valid", policy.origin()));
    for (name, signers) in policy.signers() {
        for signer in signers {
            if !trust.key_names().any(|key| key == signer) {
                print_line(&format!(
                    "policy entry {name}: signer {signer} is not a trusted key (no {signer}.pub)"
                ));
            }
        }
    }
    let options = RuntimeOptions {
        trust: Some(trust),
        ..RuntimeOptions::for_policy(&policy)
    };
    let runtime = Runtime::new(&options, Services::new(Root::host()?, None))?;
    let mut paths: Vec<_> = std::fs::read_dir(commands)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    paths.sort();
    let mut refused = false;
    let mut loaded = Vec::new();
    for path in paths {
        match runtime.load(&path, &policy).await {
            Ok(component) => {
                print_line(&format!("\ncomponent {} ({})", component.name, path.display()));
                print_line(&format!("  answers   {}", component.info.names.join(", ")));
                if let Some(provenance) = &component.provenance {
                    print_line(&format!("  trusted   {provenance}"));
                }
                print_line(&policy.component(&component.name).to_string());
                loaded.push(component);
            }
            Err(error) => {
                print_line(&format!("\nrefused: {error}"));
                refused = true;
            }
        }
    }
    // What the daemon would do with names claimed twice.
    let (registry, clashes) = Registry::resolve(loaded);
    for clash in &clashes {
        print_line(&format!("\nrefused: {clash}"));
        refused = true;
    }
    for name in policy.entry_names() {
        if !registry.components().iter().any(|component| component.name == name) {
            print_line(&format!(
                "\npolicy entry {name}: no such component loaded from {}",
                commands.display()
            ));
        }
    }
    Ok(if refused { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

//! `guestward policy check`: is the policy valid, and what would each
//! component of a commands directory be granted (or why refused)? And
//! `guestward policy show`: the effective policy, entry by entry.

use std::path::Path;
use std::process::ExitCode;

use super::print_line;
use std::sync::Arc;

use guestward::capability::{Capabilities, Policy};
use guestward::root::Root;
use guestward::runtime::{Registry, Runtime, RuntimeOptions, is_off_by_default};
use guestward::trust::TrustStore;

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
    let runtime = Runtime::new(&options, Capabilities::new(Arc::new(Root::host()?), None, None))?;
    let mut refused = false;
    let mut loaded = Vec::new();
    for bytes in Runtime::read_dir(commands)? {
        match runtime.load_bytes(&bytes, &policy).await {
            Ok(component) => {
                print_line(&format!("\ncomponent {} ({})", component.name, bytes.path.display()));
                print_line(&format!("  answers   {}", component.info.names.join(", ")));
                if let Some(provenance) = &component.provenance {
                    print_line(&format!("  trusted   {provenance}"));
                }
                print_line(&policy.component(&component.name).to_string());
                match &component.info.asked {
                    Ok(asked) => {
                        let comparison = component.grants.compare(asked);
                        for line in &comparison.more {
                            print_line(&format!("  more      than it asks: {line}"));
                        }
                        for line in &comparison.less {
                            print_line(&format!("  less      than it asks: {line}"));
                        }
                    }
                    Err(reason) => print_line(&format!("  asks      {reason}")),
                }
                loaded.push(component);
            }
            Err(error) if is_off_by_default(&bytes, &error, &policy) => {
                print_line(&format!(
                    "\noff: {} (the policy does not turn it on: {error})",
                    bytes.name()
                ));
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

/// Print the effective policy: its files, the limits of components without
/// an entry, then each entry with the file it comes from.
pub fn show(policy: &Policy) {
    print_line(&format!("policy    {}", policy.origin()));
    let limits = policy.default_limits();
    print_line(&format!(
        "default   deadline {} ms, memory {} MiB, reply {} bytes, {} log lines, downloads {} MiB",
        limits.deadline.as_millis(),
        limits.memory >> 20,
        limits.reply_bytes,
        limits.log_lines,
        limits.download_bytes >> 20
    ));
    for name in policy.entry_names() {
        let origin = policy.entry_origin(name).unwrap_or_default();
        print_line(&format!("\n[component.{name}]  # from {origin}"));
        print_line(&policy.component(name).to_string());
    }
}

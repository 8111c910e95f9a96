//! netplan merges its files, it does not override: a later file's scalar
//! values win, but lists (addresses, routes, name servers) are appended.
//! An image whose `50-cloud-init.yaml` (or installer file) gives one of
//! our interfaces static addresses would end up with both sets: two
//! addresses, two default routes.
//!
//! So `90-guestward.yaml` owns the interfaces it configures: every other
//! file in `/etc/netplan` that holds a stanza for one of them (under
//! `ethernets`, by its ID, `set-name`, `match: name` or `match:
//! macaddress`) is rewritten without it, and its original is kept beside
//! it as `<file>.guestward-orig` (netplan reads only `*.yaml`). The rest
//! of such a file (other interfaces, bridges, its renderer) stays, though
//! its comments do not survive the rewrite. A stanza matched by a name
//! pattern (`en*`) also covers interfaces we do not configure: it is left
//! alone, and the log says so. Both files are part of the plan, so a
//! failed apply puts the original back.

use guestward_sdk::log;
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

use crate::config::{Interface, Interfaces};
use crate::current;
use crate::plan::Plan;

/// What the original of a rewritten file is kept as.
pub const ORIGINAL_SUFFIX: &str = ".guestward-orig";

/// Add to `plan` the rewrites of the other files in `dir` that configure
/// one of `interfaces` (`ours` is this agent's own file).
pub fn take_over(dir: &str, ours: &str, interfaces: &Interfaces, plan: &mut Plan) -> Result<(), String> {
    for name in current::list(dir)? {
        let path = format!("{dir}/{name}");
        if !name.ends_with(".yaml") || path == ours {
            continue;
        }
        let Some(text) = current::read(&path)? else { continue };
        let Some((rewritten, taken)) = without_our_stanzas(&text, interfaces, &path) else {
            continue;
        };
        log::log(
            log::Level::Info,
            &format!(
                "{path}: took over {} (the original is kept as {path}{ORIGINAL_SUFFIX})",
                taken.join(", ")
            ),
        );
        let header = format!(
            "# guestward took over {} from this file: see 90-guestward.yaml.\n# The original is kept as {name}{ORIGINAL_SUFFIX}.\n",
            taken.join(", ")
        );
        plan.write_with_mode(format!("{path}{ORIGINAL_SUFFIX}"), text, 0o600);
        plan.write_with_mode(path, header + &rewritten, 0o600);
    }
    Ok(())
}

/// `text` without its `ethernets` stanzas for `interfaces`, and the IDs
/// of those stanzas; `None` when it has none (or is not YAML netplan
/// would read, which `netplan generate` reports itself).
fn without_our_stanzas(text: &str, interfaces: &Interfaces, path: &str) -> Option<(String, Vec<String>)> {
    let mut documents = YamlLoader::load_from_str(text).ok()?;
    let document = documents.first_mut()?;
    let ethernets = child_hash(document, "network").and_then(|network| child_hash_in(network, "ethernets"))?;
    let mut taken = Vec::new();
    for (id, stanza) in ethernets.iter() {
        let Some(id_text) = id.as_str() else { continue };
        match claim(id_text, stanza, interfaces) {
            Claim::Ours => taken.push(id.clone()),
            Claim::Pattern(pattern) => log::log(
                log::Level::Warn,
                &format!(
                    "{path}: stanza {id_text} matches the name pattern {pattern}, which may cover an interface guestward configures: left alone"
                ),
            ),
            Claim::Other => {}
        }
    }
    if taken.is_empty() {
        return None;
    }
    for id in &taken {
        ethernets.remove(id);
    }
    let mut rewritten = String::new();
    YamlEmitter::new(&mut rewritten).dump(document).ok()?;
    let rewritten = rewritten.strip_prefix("---\n").unwrap_or(&rewritten).to_owned() + "\n";
    let ids = taken.iter().filter_map(Yaml::as_str).map(str::to_owned).collect();
    Some((rewritten, ids))
}

enum Claim<'a> {
    Ours,
    /// Matched by a name pattern that could cover one of ours.
    Pattern(&'a str),
    Other,
}

/// Whether the stanza `id` configures one of `interfaces`.
fn claim<'a>(id: &str, stanza: &'a Yaml, interfaces: &Interfaces) -> Claim<'a> {
    let field = |yaml: &'a Yaml, key: &str| -> Option<&'a str> {
        match yaml {
            Yaml::Hash(hash) => hash.get(&Yaml::String(key.to_owned())).and_then(Yaml::as_str),
            _ => None,
        }
    };
    let matching = match stanza {
        Yaml::Hash(hash) => hash.get(&Yaml::String("match".to_owned())),
        _ => None,
    };
    let set_name = field(stanza, "set-name");
    let match_name = matching.and_then(|matching| field(matching, "name"));
    let match_mac = matching.and_then(|matching| field(matching, "macaddress"));
    let is_ours = |interface: &Interface| {
        let named = |name: Option<&str>| name == Some(interface.name.as_str());
        // netplan merges stanzas by ID, whatever they match.
        id == interface.name
            || named(set_name)
            || named(match_name)
            || match_mac.is_some_and(|mac| mac.eq_ignore_ascii_case(&interface.mac))
    };
    if interfaces.values().any(is_ours) {
        return Claim::Ours;
    }
    match match_name {
        Some(pattern) if pattern.contains(['*', '?', '[']) => Claim::Pattern(pattern),
        _ => Claim::Other,
    }
}

fn child_hash<'a>(yaml: &'a mut Yaml, key: &str) -> Option<&'a mut Hash> {
    match yaml {
        Yaml::Hash(hash) => child_hash_in(hash, key),
        _ => None,
    }
}

fn child_hash_in<'a>(hash: &'a mut Hash, key: &str) -> Option<&'a mut Hash> {
    match hash.get_mut(&Yaml::String(key.to_owned())) {
        Some(Yaml::Hash(child)) => Some(child),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vector;
    use crate::render::tests::machine;

    const CLOUD_INIT: &str = "\
# written by cloud-init
network:
  version: 2
  ethernets:
    eth0:
      match:
        macaddress: 'BC:76:4E:20:5E:B2'
      addresses: [10.0.0.5/24]
      routes: [{to: default, via: 10.0.0.1}]
      nameservers: {addresses: [10.0.0.53]}
    public:
      match: {macaddress: 'bc:76:4e:20:5e:fb'}
      dhcp4: true
    eth5:
      dhcp4: true
    all-en:
      match: {name: 'en*'}
      dhcp4: true
";

    #[test]
    fn other_files_lose_their_stanzas_for_our_interfaces_and_keep_the_rest() {
        machine(&[
            ("/etc/netplan/50-cloud-init.yaml", CLOUD_INIT),
            (
                "/etc/netplan/60-bridge.yaml",
                "network:\n  bridges:\n    br0: {interfaces: [eth5]}\n",
            ),
            ("/etc/netplan/90-guestward.yaml", "old\n"),
            ("/etc/netplan/notes.txt", "eth0:\n"),
        ]);
        let mut plan = Plan::default();
        take_over("/etc/netplan", "/etc/netplan/90-guestward.yaml", &vector(), &mut plan).unwrap();
        let paths: Vec<&str> = plan.writes.iter().map(|write| write.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc/netplan/50-cloud-init.yaml.guestward-orig",
                "/etc/netplan/50-cloud-init.yaml"
            ]
        );
        assert_eq!(
            plan.contents("/etc/netplan/50-cloud-init.yaml.guestward-orig"),
            Some(CLOUD_INIT)
        );
        let rewritten = plan.contents("/etc/netplan/50-cloud-init.yaml").unwrap();
        assert!(
            rewritten.starts_with("# guestward took over eth0, public from this file"),
            "{rewritten}"
        );
        assert!(
            !rewritten.contains("10.0.0.5") && !rewritten.contains("5e:fb"),
            "{rewritten}"
        );
        assert!(
            rewritten.contains("eth5:\n      dhcp4: true") && rewritten.contains("all-en"),
            "{rewritten}"
        );
        assert!(plan.writes.iter().all(|write| write.mode == 0o600));
    }

    #[test]
    fn a_file_without_our_interfaces_or_not_yaml_is_left_alone() {
        machine(&[
            (
                "/etc/netplan/01-eth5.yaml",
                "network:\n  ethernets:\n    eth5: {dhcp4: true}\n",
            ),
            ("/etc/netplan/02-broken.yaml", "network: [\n"),
        ]);
        let mut plan = Plan::default();
        take_over("/etc/netplan", "/etc/netplan/90-guestward.yaml", &vector(), &mut plan).unwrap();
        assert_eq!(plan, Plan::default());
    }
}

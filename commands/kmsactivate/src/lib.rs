//! `kmsactivate`: register a Red Hat Enterprise Linux guest with RHN
//! (legacy-agent.md §3.7): write `/etc/sysconfig/rhn/up2date` from the
//! legacy template, forget any old system id, and run
//! `rhnreg_ks --activationkey <key> --profile <profile> --force` with an
//! empty environment. The activation key is passed as a secret argument:
//! it never reaches a log or the `--root` record.
//!
//! One deliberate difference: a failed `rhnreg_ks` reports its exit code,
//! not the raw wait status (exit 1 was "256").

use guestward_sdk::{Command, Reply, Request, export_command, files, log, programs};
use serde_json::Value;

const UP2DATE: &str = "/etc/sysconfig/rhn/up2date";
const SYSTEM_ID: &str = "/etc/sysconfig/rhn/systemid";
const RHNREG_KS: &str = "/usr/sbin/rhnreg_ks";

pub struct KmsActivate;

impl Command for KmsActivate {
    const NAMES: &'static [&'static str] = &["kmsactivate"];
    const SUMMARY: &'static str = "Register a RHEL guest with RHN through an activation key";
    const ASKS: &'static str = include_str!("../policy.toml");

    fn handle(request: Request<'_>) -> Reply {
        match activate(request.raw_value()) {
            Ok(()) => Reply::ok(""),
            Err(message) => Reply::error(message),
        }
    }
}

export_command!(KmsActivate);

fn activate(value: &str) -> Result<(), String> {
    if !is_rhel() {
        return Err("KMS not supported on this OS".to_owned());
    }
    let arguments: Value = serde_json::from_str(value).unwrap_or(Value::Null);
    // Python's KeyError text: the key in quotes.
    let field = |key: &str| arguments.get(key).ok_or_else(|| format!("'{key}'"));
    let key = text(field("activation_key")?, "activation_key")?;
    let profile = text(field("profile")?, "profile")?;
    let domains = domains(field("domains")?)?;
    let options = files::ReplaceOptions {
        mode: Some(0o644),
        owner: None,
        backup_suffix: None,
        create_parents: true,
    };
    files::replace(UP2DATE, up2date(&domains).as_bytes(), &options)
        .map_err(|error| format!("{UP2DATE}: {}", error.text()))?;
    match files::remove(SYSTEM_ID) {
        Ok(()) | Err(files::Error::NotFound(_)) => {}
        Err(error) => return Err(format!("{SYSTEM_ID}: {}", error.text())),
    }
    let args = [
        programs::Argument::Plain("--activationkey".into()),
        programs::Argument::Secret(key),
        programs::Argument::Plain("--profile".into()),
        programs::Argument::Plain(profile),
        programs::Argument::Plain("--force".into()),
    ];
    let output = programs::run(RHNREG_KS, &args, &[], programs::RunOptions::default())
        .map_err(|error| format!("Couldn't activate with RHN: {}", error.text()))?;
    match output.exit_code {
        Some(0) => {
            log::log(log::Level::Info, "registered with RHN");
            Ok(())
        }
        Some(code) => Err(format!("Couldn't activate with RHN: {code}")),
        None => Err(format!(
            "Couldn't activate with RHN: signal {}",
            output.signal.unwrap_or_default()
        )),
    }
}

/// Red Hat Enterprise Linux, as the legacy agent's OS detection named
/// "redhat" (CentOS and Fedora are not).
fn is_rhel() -> bool {
    files::read("/etc/redhat-release").is_ok_and(|release| release.starts_with(b"Red Hat Enterprise Linux"))
}

fn text(value: &Value, key: &str) -> Result<String, String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("'{key}' must be a string"))
}

/// `domains` is one domain or a list of them.
fn domains(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::String(domain) => Ok(vec![domain.clone()]),
        Value::Array(items) => items.iter().map(|item| text(item, "domains")).collect(),
        _ => Err("'domains' must be a string or a list of strings".to_owned()),
    }
}

/// The legacy agent's `up2date` file, byte for byte: each domain `d`
/// becomes `//d/XMLRPC`, joined with `;` after `https:` (and `http:`), with
/// a trailing `;`.
fn up2date(domains: &[String]) -> String {
    let urls = |scheme: &str| {
        domains
            .iter()
            .map(|domain| format!("{scheme}//{domain}/XMLRPC"))
            .collect::<Vec<_>>()
            .join(";")
    };
    UP2DATE_TEMPLATE
        .replace("{serverURL}", &urls("https:"))
        .replace("{noSSLServerURL}", &urls("http:"))
}

const UP2DATE_TEMPLATE: &str = "\
# Automatically generated Red Hat Update Agent config file, do not edit.
# Format: 1.0
versionOverride[comment]=Override the automatically determined system version
versionOverride=

enableProxyAuth[comment]=To use an authenticated proxy or not
enableProxyAuth=0

networkRetries[comment]=Number of attempts to make at network connections before giving up
networkRetries=5

hostedWhitelist[comment]=None
hostedWhitelist=

enableProxy[comment]=Use a HTTP Proxy
enableProxy=0

serverURL[comment]=Remote server URL
serverURL={serverURL};

proxyPassword[comment]=The password to use for an authenticated proxy
proxyPassword=

noSSLServerURL[comment]=None
noSSLServerURL={noSSLServerURL};

proxyUser[comment]=The username for an authenticated proxy
proxyUser=

disallowConfChanges[comment]=Config options that can not be overwritten by a config update action
disallowConfChanges=noReboot;sslCACert;useNoSSLForPackages;noSSLServerURL;serverURL;disallowConfChanges;

sslCACert[comment]=The CA cert used to verify the ssl server
sslCACert=/usr/share/rhn/RHN-ORG-TRUSTED-SSL-CERT

debug[comment]=Whether or not debugging is enabled
debug=0

httpProxy[comment]=HTTP proxy in host:port format, e.g. squid.redhat.com:3128
httpProxy=

systemIdPath[comment]=Location of system id
systemIdPath=/etc/sysconfig/rhn/systemid

noReboot[comment]=Disable the reboot action
noReboot=0
";

#[cfg(test)]
mod tests {
    use super::*;
    use guestward_sdk::testing;

    fn rhel() {
        testing::reset();
        testing::with_host(|host| {
            host.files.insert(
                "/etc/redhat-release".into(),
                b"Red Hat Enterprise Linux Server release 7.9 (Maipo)\n".to_vec(),
            );
            host.files.insert(SYSTEM_ID.into(), b"old id".to_vec());
        });
    }

    fn call(value: &str) -> (String, String) {
        let reply = KmsActivate::handle(Request::new("kmsactivate", value));
        (reply.code, reply.message)
    }

    #[test]
    fn registers_with_the_key_as_a_secret() {
        rhel();
        let value =
            r#"{"activation_key":"k3y","profile":"web1","domains":["proxy1.example.com","proxy2.example.com"]}"#;
        assert_eq!(call(value), ("0".into(), String::new()));
        testing::with_host(|host| {
            let up2date = String::from_utf8(host.files[UP2DATE].clone()).unwrap();
            assert!(
                up2date.contains("\nserverURL=https://proxy1.example.com/XMLRPC;https://proxy2.example.com/XMLRPC;\n")
            );
            assert!(
                up2date
                    .contains("\nnoSSLServerURL=http://proxy1.example.com/XMLRPC;http://proxy2.example.com/XMLRPC;\n")
            );
            assert!(!host.files.contains_key(SYSTEM_ID), "the old system id is forgotten");
            assert_eq!(
                host.runs[0].0,
                [RHNREG_KS, "--activationkey", "<secret>", "--profile", "web1", "--force"]
            );
            assert!(host.logs.iter().all(|(_, line)| !line.contains("k3y")));
        });
    }

    #[test]
    fn the_legacy_texts_and_a_failing_rhnreg_ks() {
        rhel();
        assert_eq!(call(r#"{"profile":"p","domains":"d"}"#).1, "'activation_key'");
        assert_eq!(call(r#"{"activation_key":"k","domains":"d"}"#).1, "'profile'");
        testing::with_host(|host| host.exit_codes.insert(RHNREG_KS.into(), 1));
        assert_eq!(
            call(r#"{"activation_key":"k","profile":"p","domains":"d"}"#).1,
            "Couldn't activate with RHN: 1"
        );
        testing::reset();
        assert_eq!(call("{}"), ("500".into(), "KMS not supported on this OS".into()));
    }
}

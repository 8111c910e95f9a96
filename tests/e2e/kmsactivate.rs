//! kmsactivate through the real xenstored: the legacy up2date file byte for
//! byte, rhnreg_ks recorded with the activation key redacted, and the key
//! in no log.

use guestward_tests::AgentBuilder;

use crate::{Guest, answer, guest_test};

const KEY: &str = "1-activation-K3Y-never-logged";

/// The up2date file of the legacy agent's `test_kms.py` for two proxies.
const UP2DATE: &[&str] = &[
    "# Automatically generated Red Hat Update Agent config file, do not edit.",
    "# Format: 1.0",
    "versionOverride[comment]=Override the automatically determined system version",
    "versionOverride=",
    "",
    "enableProxyAuth[comment]=To use an authenticated proxy or not",
    "enableProxyAuth=0",
    "",
    "networkRetries[comment]=Number of attempts to make at network connections before giving up",
    "networkRetries=5",
    "",
    "hostedWhitelist[comment]=None",
    "hostedWhitelist=",
    "",
    "enableProxy[comment]=Use a HTTP Proxy",
    "enableProxy=0",
    "",
    "serverURL[comment]=Remote server URL",
    "serverURL=https://proxy1.example.com/XMLRPC;https://proxy2.example.com/XMLRPC;",
    "",
    "proxyPassword[comment]=The password to use for an authenticated proxy",
    "proxyPassword=",
    "",
    "noSSLServerURL[comment]=None",
    "noSSLServerURL=http://proxy1.example.com/XMLRPC;http://proxy2.example.com/XMLRPC;",
    "",
    "proxyUser[comment]=The username for an authenticated proxy",
    "proxyUser=",
    "",
    "disallowConfChanges[comment]=Config options that can not be overwritten by a config update action",
    "disallowConfChanges=noReboot;sslCACert;useNoSSLForPackages;noSSLServerURL;serverURL;disallowConfChanges;",
    "",
    "sslCACert[comment]=The CA cert used to verify the ssl server",
    "sslCACert=/usr/share/rhn/RHN-ORG-TRUSTED-SSL-CERT",
    "",
    "debug[comment]=Whether or not debugging is enabled",
    "debug=0",
    "",
    "httpProxy[comment]=HTTP proxy in host:port format, e.g. squid.redhat.com:3128",
    "httpProxy=",
    "",
    "systemIdPath[comment]=Location of system id",
    "systemIdPath=/etc/sysconfig/rhn/systemid",
    "",
    "noReboot[comment]=Disable the reboot action",
    "noReboot=0",
];

fn request(domains: serde_json::Value) -> String {
    let value = serde_json::json!({"activation_key": KEY, "profile": "web-1", "domains": domains});
    serde_json::json!({"name": "kmsactivate", "value": value}).to_string()
}

fn make_rhel(guest: &Guest) {
    let root = guest.agent.root();
    std::fs::create_dir_all(root.join("etc/sysconfig/rhn")).unwrap();
    std::fs::write(
        root.join("etc/redhat-release"),
        "Red Hat Enterprise Linux Server release 7.9 (Maipo)\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/sysconfig/rhn/systemid"), "old id").unwrap();
}

#[test]
fn rhel_is_registered_with_the_legacy_file_and_a_redacted_key() {
    let guest = Guest::start(AgentBuilder::new().log_level("trace"));
    make_rhel(&guest);
    let reply = guest.dom0.call(
        "k1",
        &request(serde_json::json!(["proxy1.example.com", "proxy2.example.com"])),
    );
    assert_eq!(reply, answer("", "0"));

    let root = guest.agent.root();
    let up2date = std::fs::read_to_string(root.join("etc/sysconfig/rhn/up2date")).unwrap();
    assert_eq!(up2date, UP2DATE.join("\n") + "\n");
    assert!(!root.join("etc/sysconfig/rhn/systemid").exists());
    // Under --root the run is recorded, not carried out: the key redacted.
    let actions = std::fs::read_to_string(root.join(".guestward/actions.log")).unwrap();
    assert!(
        actions.contains(r#"["/usr/sbin/rhnreg_ks","--activationkey","<redacted>","--profile","web-1","--force"]"#),
        "{actions}"
    );
    assert!(!actions.contains(KEY), "{actions}");
    assert!(!guest.agent.log().contains(KEY), "the key reached the log");
}

guest_test!(a_single_domain_may_be_a_string, AgentBuilder::new(), |guest| {
    make_rhel(&guest);
    assert_eq!(
        guest.dom0.call("k", &request(serde_json::json!("rhn.example.com"))),
        answer("", "0")
    );
    let up2date = std::fs::read_to_string(guest.agent.root().join("etc/sysconfig/rhn/up2date")).unwrap();
    assert!(
        up2date.contains("\nserverURL=https://rhn.example.com/XMLRPC;\n"),
        "{up2date}"
    );
});

guest_test!(
    other_systems_are_refused_with_the_legacy_text,
    AgentBuilder::new(),
    |guest| {
        let root = guest.agent.root();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/redhat-release"),
            "CentOS Linux release 7.9.2009 (Core)\n",
        )
        .unwrap();
        let reply = guest.dom0.call("k", r#"{"name":"kmsactivate","value":{}}"#);
        assert_eq!(reply, answer("KMS not supported on this OS", "500"));
        assert!(!root.join("etc/sysconfig/rhn/up2date").exists());
    }
);

guest_test!(a_missing_argument_names_the_key, AgentBuilder::new(), |guest| {
    make_rhel(&guest);
    let reply = guest
        .dom0
        .call("k", r#"{"name":"kmsactivate","value":{"profile":"p","domains":"d"}}"#);
    assert_eq!(reply, answer("'activation_key'", "500"));
});

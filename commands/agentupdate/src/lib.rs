//! `agentupdate`: update the agent from a URL (legacy-agent.md §3.6).
//!
//! The argument is `"<url>,<md5>"` or `{"url", "md5sum"[, "sha256"]}`. The
//! file is fetched through the `download` capability (URL prefixes and a
//! size cap from the policy) and checked against the MD5 sum (and the
//! SHA-256 when given). What it holds decides what happens:
//!
//! * a Guestward bundle: a tarball (plain or gzip) of `<name>.wasm`
//!   components with their `<name>.wasm.sig` signatures, at its root or one
//!   directory deep. The components go to the daemon through the `update`
//!   capability, which verifies every signature (made for the component's
//!   name) and installs them all at once, loaded without a restart; if any fails,
//!   nothing changes. This component cannot vouch for what it installs.
//! * a legacy nova-agent tarball with `installer.sh`: run only when the
//!   operator allows it (see [`legacy`]); otherwise a 500 says why.
//!
//! Unlike the legacy agent, nothing is written to `/var/run` and the agent
//! is not restarted: there is nothing to restart.

mod archive;
mod bundle;
mod legacy;
mod source;

use guestward_sdk::{Command, Reply, Request, download, export_command, log};

use crate::archive::Member;
use crate::source::Source;

pub struct AgentUpdate;

impl Command for AgentUpdate {
    const NAMES: &'static [&'static str] = &["agentupdate"];
    const SUMMARY: &'static str = "Update the agent's commands from a signed bundle at a URL";
    const ASKS: &'static str = include_str!("../policy.toml");

    fn handle(request: Request<'_>) -> Reply {
        match update(request) {
            Ok(()) => Reply::ok(""),
            Err(message) => Reply::error(message),
        }
    }
}

export_command!(AgentUpdate);

fn update(request: Request<'_>) -> Result<(), String> {
    let value = request.json().map_err(|_| "Invalid arguments".to_owned())?;
    let source = Source::parse(&value)?;
    let file_name = source.file_name()?;
    // The URL may carry a token in its query: log the file name only.
    log::log(log::Level::Info, &format!("fetching update {file_name}"));
    let body = download::fetch(&source.url, u64::MAX).map_err(|error| error.text().to_owned())?;
    source::verify(&source, &body)?;
    let members = archive::members(&body).map_err(|error| format!("{file_name}: {error}"))?;
    match Payload::find(&members).map_err(|error| format!("{file_name}: {error}"))? {
        Payload::Bundle(components) => bundle::install(components),
        Payload::Installer(installer) => legacy::run(&members, installer),
    }
}

/// What an update tarball holds.
enum Payload<'a> {
    /// Guestward components, with their signatures.
    Bundle(Vec<bundle::Component<'a>>),
    /// A legacy nova-agent update: the path of its `installer.sh`.
    Installer(&'a str),
}

impl<'a> Payload<'a> {
    /// Components win over an `installer.sh` in the same tarball: a bundle
    /// may carry one for older agents.
    fn find(members: &'a [Member]) -> Result<Self, String> {
        let components = bundle::components(members)?;
        if !components.is_empty() {
            return Ok(Self::Bundle(components));
        }
        legacy::installer(members)
            .map(Self::Installer)
            .ok_or_else(|| "holds neither Guestward components (<name>.wasm) nor an installer.sh".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use guestward_sdk::{testing, update};
    use md5::Digest as _;

    use super::*;
    use crate::archive::tests::{gzip, tarball};

    const URL: &str = "http://updates.example/guestward-1.2.tar.gz";

    /// Serve `body` at [`URL`] and call `agentupdate` with its MD5.
    fn update_with(body: Vec<u8>) -> (String, String) {
        let md5 = hex::encode(md5::Md5::digest(&body));
        testing::with_host(|host| host.downloads.insert(URL.to_owned(), body));
        call(&serde_json::json!(format!("{URL},{md5}")).to_string())
    }

    fn call(value: &str) -> (String, String) {
        let reply = AgentUpdate::handle(Request::new("agentupdate", value));
        (reply.code, reply.message)
    }

    #[test]
    fn a_bundle_goes_to_the_installer_with_its_signatures() {
        testing::reset();
        let bundle = gzip(&tarball(&[
            ("guestward-1.2/probe.wasm", b"\0asm"),
            ("guestward-1.2/probe.wasm.sig", b"signature"),
            ("guestward-1.2/installer.sh", b"exit 1"),
        ]));
        assert_eq!(update_with(bundle), ("0".into(), String::new()));
        testing::with_host(|host| {
            assert_eq!(host.installed["probe.wasm"], b"\0asm");
            assert!(host.runs.is_empty(), "a bundle's installer.sh is never run");
        });
    }

    /// Whichever way the daemon refuses, the reply is its text after
    /// "Update refused: ", as when `install` returned a plain string.
    #[test]
    fn a_refused_install_replies_with_the_daemons_text() {
        testing::reset();
        let bundle = gzip(&tarball(&[("probe.wasm", b"\0asm"), ("probe.wasm.sig", b"sig")]));
        for (error, text) in [
            (
                update::Error::Refused("probe.wasm: not signed by a trusted key".into()),
                "probe.wasm: not signed by a trusted key",
            ),
            (
                update::Error::NotGranted("this component may not install components".into()),
                "this component may not install components",
            ),
            (
                update::Error::Unavailable("this agent installs no components (not a daemon)".into()),
                "this agent installs no components (not a daemon)",
            ),
            (
                update::Error::Failed("the installer has stopped".into()),
                "the installer has stopped",
            ),
        ] {
            testing::with_host(|host| host.install_error = Some(error));
            assert_eq!(
                update_with(bundle.clone()),
                ("500".into(), format!("Update refused: {text}"))
            );
        }
        assert!(testing::with_host(|host| host.installed.is_empty()));
    }

    #[test]
    fn a_wrong_checksum_installs_nothing() {
        testing::reset();
        testing::with_host(|host| host.downloads.insert(URL.to_owned(), tarball(&[("a.wasm", b"x")])));
        let (code, message) = call(&serde_json::json!({"url": URL, "md5sum": "0123"}).to_string());
        assert_eq!(code, "500");
        assert!(message.starts_with("MD5 sums do not match (0123 != "), "{message}");
        assert!(testing::with_host(|host| host.installed.is_empty()));
    }

    #[test]
    fn download_and_archive_errors_are_replies() {
        testing::reset();
        assert_eq!(
            call("\"http://nowhere.example/a.tar,00\"").1,
            "http://nowhere.example/a.tar: HTTP 404 Not Found"
        );
        assert_eq!(call("\"http://h.example/agent,00\"").1, "Invalid URL");
        assert_eq!(call("5"), ("500".into(), "Invalid arguments".into()));
        let (code, message) = update_with(b"not a tarball at all".repeat(40));
        assert_eq!(code, "500");
        assert!(message.starts_with("guestward-1.2.tar.gz: "), "{message}");
        let message = update_with(tarball(&[("README", b"hello")])).1;
        assert_eq!(
            message,
            "guestward-1.2.tar.gz: holds neither Guestward components (<name>.wasm) nor an installer.sh"
        );
    }

    #[test]
    fn a_huge_url_gets_the_daemons_short_refusal() {
        // Found by `guestward fuzz`: a 45 KB URL outside the grants came back
        // quoted whole in the daemon's refusal, and the reply, over the
        // 16 KiB limit, reached the hypervisor as a size error.
        testing::reset();
        testing::load_asks::<AgentUpdate>("agentupdate").unwrap();
        let url = "https://updates.example.com/a%s/bundle.tar.gz".repeat(1_000);
        let value = serde_json::json!({"url": url, "md5sum": "0".repeat(32)}).to_string();
        let reply = testing::call::<AgentUpdate>("agentupdate", &value);
        assert_eq!(reply.code, "500");
        assert_eq!(reply.message, "a URL is at most 2048 bytes, not 45000");
    }

    #[test]
    fn the_legacy_installer_runs_only_when_allowed() {
        testing::reset();
        let legacy = tarball(&[
            ("nova-agent-1.39/installer.sh", b"#!/bin/sh\ncp agent /usr/bin\n"),
            ("nova-agent-1.39/bin/agent", b"ELF"),
        ]);
        let (code, message) = update_with(legacy.clone());
        assert_eq!(code, "500");
        assert!(message.contains("disabled by policy"), "{message}");
        assert!(testing::with_host(|host| host.runs.is_empty() && host.files.is_empty()));

        testing::with_host(|host| host.settings.insert("legacy-installer".into(), "allow".into()));
        assert_eq!(update_with(legacy.clone()).0, "0");
        testing::with_host(|host| {
            let argv = &host.runs[0].0;
            assert_eq!(argv, &["/bin/sh", "/var/lib/guestward/legacy-update/installer.sh"]);
            assert!(host.files.is_empty(), "the extraction directory is removed afterwards");
            host.exit_codes.insert("/bin/sh".into(), 3);
        });
        assert_eq!(update_with(legacy).1, "Agent installer script failed: 3");
    }

    #[test]
    fn a_legacy_tarball_cannot_escape_its_directory() {
        testing::reset();
        testing::with_host(|host| host.settings.insert("legacy-installer".into(), "allow".into()));
        let hostile = tarball(&[("installer.sh", b"true"), ("a/../../etc/passwd", b"x")]);
        let (code, message) = update_with(hostile);
        assert_eq!(code, "500");
        assert!(message.contains("not a plain relative path"), "{message}");
        assert!(testing::with_host(|host| host.runs.is_empty()));
    }
}

//! The legacy update path: a nova-agent tarball whose `installer.sh` is
//! run as root. That runs arbitrary code outside any sandbox, so it happens
//! only when the operator asks for it three times: the setting
//! `legacy-installer = "allow"` for this component, a read-write grant of
//! `/var/lib/guestward` (the extraction directory's parent, created if
//! missing) and a grant of the program
//! `["/bin/sh", "/var/lib/guestward/legacy-update/installer.sh"]`.
//!
//! Differences from the legacy agent, deliberate: the tarball is unpacked
//! so that the installer's own directory becomes [`EXTRACT_DIR`] (so one
//! fixed program grant covers every tarball layout); links, devices and
//! paths with `..` are refused rather than extracted; the installer runs
//! through `/bin/sh` (so its mode bits do not matter) with an empty
//! environment, and its exit code, not the raw wait status, is reported.

use guestward_sdk::{agent, files, log, programs};

use crate::archive::{Kind, Member, depth, file_name};

/// Where the tarball is unpacked; removed before and after.
pub const EXTRACT_DIR: &str = "/var/lib/guestward/legacy-update";
const INSTALLER: &str = "/var/lib/guestward/legacy-update/installer.sh";
const SHELL: &str = "/bin/sh";

/// The first `installer.sh` at the root or one directory deep, in archive
/// order, as the legacy agent searched.
pub fn installer(members: &[Member]) -> Option<&str> {
    members
        .iter()
        .find(|member| {
            member.kind == Kind::File && depth(&member.path) <= 1 && file_name(&member.path) == "installer.sh"
        })
        .map(|member| member.path.as_str())
}

/// Unpack and run the installer, if the operator allows it.
pub fn run(members: &[Member], installer: &str) -> Result<(), String> {
    if agent::setting("legacy-installer").as_deref() != Some("allow") {
        return Err(
            "This update is a legacy tarball with installer.sh, and running it as root is disabled by \
                    policy (allowed only with the agentupdate setting legacy-installer = \"allow\"); \
                    send a signed Guestward bundle instead"
                .to_owned(),
        );
    }
    let top = installer.strip_suffix("installer.sh").unwrap_or_default();
    remove_tree(EXTRACT_DIR)?;
    let outcome = extract(members, top).and_then(|()| run_installer());
    if let Err(error) = remove_tree(EXTRACT_DIR) {
        log::log(
            log::Level::Warn,
            &format!("could not clean up after the installer: {error}"),
        );
    }
    outcome
}

/// The members under `top` (the installer's directory), written under
/// [`EXTRACT_DIR`] with their modes.
fn extract(members: &[Member], top: &str) -> Result<(), String> {
    files::create_dir(EXTRACT_DIR, Some(0o700), true).map_err(|error| error.text().to_owned())?;
    for member in members {
        let Some(relative) = member.path.strip_prefix(top).filter(|relative| !relative.is_empty()) else {
            continue;
        };
        if relative.split('/').any(|segment| segment.is_empty() || segment == "..") {
            return Err(format!(
                "Refusing to unpack {:?}: not a plain relative path",
                member.path
            ));
        }
        let path = format!("{EXTRACT_DIR}/{relative}");
        let written = match member.kind {
            Kind::Directory => files::create_dir(&path, Some(member.mode & 0o755), true),
            Kind::File => files::replace(
                &path,
                &member.contents,
                &files::ReplaceOptions {
                    mode: Some(member.mode & 0o755),
                    owner: None,
                    backup_suffix: None,
                    create_parents: true,
                },
            ),
            Kind::Other => {
                return Err(format!(
                    "Refusing to unpack {:?}: links and devices are not supported",
                    member.path
                ));
            }
        };
        match written {
            Ok(()) | Err(files::Error::AlreadyExists(_)) => {}
            Err(error) => return Err(error.text().to_owned()),
        }
    }
    Ok(())
}

fn run_installer() -> Result<(), String> {
    let output = programs::run(
        SHELL,
        &programs::plain(&[INSTALLER]),
        &[],
        programs::RunOptions::default(),
    )
    .map_err(|error| format!("Agent installer script failed: {}", error.text()))?;
    match (output.exit_code, output.signal) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(format!("Agent installer script failed: {code}")),
        (None, signal) => Err(format!(
            "Agent installer script failed: killed by signal {}",
            signal.unwrap_or_default()
        )),
    }
}

/// Remove a directory tree; nothing there is fine.
fn remove_tree(path: &str) -> Result<(), String> {
    let entries = match files::list_dir(path) {
        Ok(entries) => entries,
        Err(files::Error::NotFound(_)) => return Ok(()),
        Err(files::Error::NotADirectory(_)) => return files::remove(path).map_err(|error| error.text().to_owned()),
        Err(error) => return Err(error.text().to_owned()),
    };
    for entry in entries {
        let child = format!("{path}/{}", entry.name);
        match entry.kind {
            files::FileKind::Directory => remove_tree(&child)?,
            _ => files::remove(&child).map_err(|error| error.text().to_owned())?,
        }
    }
    match files::remove(path) {
        Ok(()) | Err(files::Error::NotFound(_)) => Ok(()),
        Err(error) => Err(error.text().to_owned()),
    }
}

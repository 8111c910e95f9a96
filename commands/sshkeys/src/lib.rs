//! `guest-ssh-get-authorized-keys`, `guest-ssh-add-authorized-keys` and
//! `guest-ssh-remove-authorized-keys` of the QEMU guest agent protocol:
//! what libvirt's `virsh get-user-sshkeys` / `set-user-sshkeys` send.
//!
//! The account's home and ids come from `/etc/passwd`; its keys live in
//! `~/.ssh/authorized_keys`. `~/.ssh` is created (0700) when missing and
//! the file is replaced atomically (0600), both given to the account, as
//! qemu-ga does; the text is read and rewritten as qemu-ga does
//! ([`keys`]), with its error texts.
//!
//! A local user owns their home and can plant anything in it, so beyond
//! qemu-ga:
//!
//! * `~/.ssh` and `authorized_keys` are never followed when they are
//!   symlinks (qemu-ga follows them, and its path-based `chown` after the
//!   rename too): a link to `/root/.ssh` or to another user's keys is
//!   refused. The host's `files` walk refuses, on its own, to follow any
//!   symlink in a directory a user can write, and the grants give a file
//!   only to the account whose home holds it (`chown = "home-account"`).
//! * An existing `authorized_keys` that the account could not read itself
//!   (another owner, no read bit for it: a hard link to `/etc/shadow`) is
//!   neither answered nor copied into a file the account owns.
//! * The file is at most [`keys::MAX_FILE_BYTES`], so its keys always fit
//!   in one answer; a key with a NUL is refused like one with a newline.

pub mod account;
pub mod keys;

use guestward_sdk::{Command, Reply, Request, export_command, files, log, qga};
use serde_json::json;

use account::Account;

const GET: &str = "qga:guest-ssh-get-authorized-keys";
const ADD: &str = "qga:guest-ssh-add-authorized-keys";
const REMOVE: &str = "qga:guest-ssh-remove-authorized-keys";

pub struct SshKeys;

impl Command for SshKeys {
    const NAMES: &'static [&'static str] = &[GET, ADD, REMOVE];
    const SUMMARY: &'static str = "Get, add and remove an account's SSH authorized keys (QEMU guest agent)";
    const ASKS: &'static str = include_str!("../policy.toml");

    fn handle(request: Request<'_>) -> Reply {
        let result = match request.name() {
            GET => get(&request),
            ADD => add(&request),
            _ => remove(&request),
        };
        result.unwrap_or_else(|reply| reply)
    }
}

export_command!(SshKeys);

/// `{"username"}` → `{"keys": [...]}`.
fn get(request: &Request<'_>) -> Result<Reply, Reply> {
    let mut arguments = qga::Arguments::of(request)?;
    let username: String = arguments.required("username")?;
    arguments.finish()?;
    let account = account::lookup(&username).map_err(qga::generic_error)?;
    let path = account.authorized_keys();
    let contents = read_keys(&account)?.ok_or_else(|| {
        qga::generic_error(format!(
            "failed to read '{path}': Failed to open file \u{201C}{path}\u{201D}: No such file or directory"
        ))
    })?;
    Ok(qga::ok(
        json!({ "keys": keys::listed(&String::from_utf8_lossy(&contents)) }),
    ))
}

/// `{"username", "keys", "reset"?}` → `{}`.
fn add(request: &Request<'_>) -> Result<Reply, Reply> {
    let mut arguments = qga::Arguments::of(request)?;
    let username: String = arguments.required("username")?;
    let new_keys: Vec<String> = arguments.required("keys")?;
    let reset = arguments.optional::<bool>("reset")?.unwrap_or(false);
    arguments.finish()?;
    check_keys(&new_keys)?;
    let account = account::lookup(&username).map_err(qga::generic_error)?;
    let old = if reset {
        String::new()
    } else {
        read_keys(&account)?
            .map(|bytes| text(&account, bytes))
            .transpose()?
            .unwrap_or_default()
    };
    if let Some(contents) = keys::added(&old, &new_keys, reset) {
        write_keys(&account, &contents)?;
        log::log(
            log::Level::Info,
            &format!("authorized keys of {} updated", account.name),
        );
    }
    Ok(qga::ok(json!({})))
}

/// `{"username", "keys"}` → `{}`; a missing file has nothing to remove.
fn remove(request: &Request<'_>) -> Result<Reply, Reply> {
    let mut arguments = qga::Arguments::of(request)?;
    let username: String = arguments.required("username")?;
    let gone: Vec<String> = arguments.required("keys")?;
    arguments.finish()?;
    check_keys(&gone)?;
    let account = account::lookup(&username).map_err(qga::generic_error)?;
    if let Some(bytes) = read_keys(&account)?
        && let Some(contents) = keys::removed(&text(&account, bytes)?, &gone)
    {
        write_keys(&account, &contents)?;
        log::log(
            log::Level::Info,
            &format!("authorized keys of {} updated", account.name),
        );
    }
    Ok(qga::ok(json!({})))
}

fn check_keys(list: &[String]) -> Result<(), Reply> {
    list.iter()
        .try_for_each(|key| keys::check_key(key))
        .map_err(qga::generic_error)
}

/// The contents of the account's `authorized_keys`, `None` when it (or
/// `~/.ssh`) does not exist; refused when either is a symlink, when the
/// file is not one the account could read, or when it is too large.
fn read_keys(account: &Account) -> Result<Option<Vec<u8>>, Reply> {
    let path = account.authorized_keys();
    let failed = |why: &str| qga::generic_error(format!("failed to read '{path}': {why}"));
    if !existing_ssh_dir(account).map_err(|why| failed(&why))? {
        return Ok(None);
    }
    let meta = match files::metadata(&path) {
        Ok(meta) => meta,
        Err(files::Error::NotFound(_)) => return Ok(None),
        Err(error) => return Err(failed(error.text())),
    };
    match meta.kind {
        files::FileKind::File => {}
        files::FileKind::Symlink => return Err(failed(&format!("{path} is a symlink, which is not followed"))),
        _ => return Err(failed("not a regular file")),
    }
    if !readable_by(&meta, account) {
        return Err(failed(&format!(
            "it is owned by uid {} and {} may not read it (a hard link to another file?); refused",
            meta.uid, account.name
        )));
    }
    if meta.size > keys::MAX_FILE_BYTES as u64 {
        return Err(failed(&format!(
            "it is {} bytes, over the limit of {} bytes",
            meta.size,
            keys::MAX_FILE_BYTES
        )));
    }
    match files::read(&path) {
        Ok(contents) if contents.len() > keys::MAX_FILE_BYTES => Err(failed(&format!(
            "it is over the limit of {} bytes",
            keys::MAX_FILE_BYTES
        ))),
        Ok(contents) => Ok(Some(contents)),
        Err(files::Error::NotFound(_)) => Ok(None),
        Err(error) => Err(failed(error.text())),
    }
}

/// Whether `~/.ssh` is there: a directory, or nothing (`false`); a
/// symlink or anything else is refused.
fn existing_ssh_dir(account: &Account) -> Result<bool, String> {
    let dir = account.ssh_dir();
    match files::metadata(&dir) {
        Ok(meta) if meta.kind == files::FileKind::Directory => Ok(true),
        Ok(meta) if meta.kind == files::FileKind::Symlink => Err(format!("{dir} is a symlink, which is not followed")),
        Ok(_) => Err(format!("{dir} is not a directory")),
        Err(files::Error::NotFound(_)) => Ok(false),
        Err(error) => Err(error.text().to_owned()),
    }
}

/// Whether the account itself may read a file with this owner and mode
/// (its primary group only: a conservative answer).
fn readable_by(meta: &files::FileMetadata, account: &Account) -> bool {
    account.uid == 0
        || meta.uid == account.uid
        || meta.mode & 0o004 != 0
        || (meta.gid == account.gid && meta.mode & 0o040 != 0)
}

/// The file as text: a file that is not UTF-8 is not rewritten, so that no
/// byte of it is lost.
fn text(account: &Account, bytes: Vec<u8>) -> Result<String, Reply> {
    String::from_utf8(bytes).map_err(|_| {
        qga::generic_error(format!(
            "failed to read '{}': it is not UTF-8 text; not rewritten",
            account.authorized_keys()
        ))
    })
}

/// Replace `authorized_keys` (0600, the account's), creating `~/.ssh`
/// (0700, the account's) first when missing; an existing `~/.ssh` keeps
/// its mode, as with qemu-ga.
fn write_keys(account: &Account, contents: &str) -> Result<(), Reply> {
    let path = account.authorized_keys();
    let write_failed = |why: &str| qga::generic_error(format!("failed to write to '{path}': {why}"));
    if contents.len() > keys::MAX_FILE_BYTES {
        return Err(write_failed(&format!(
            "it would be {} bytes, over the limit of {} bytes",
            contents.len(),
            keys::MAX_FILE_BYTES
        )));
    }
    let dir = account.ssh_dir();
    if !existing_ssh_dir(account).map_err(|why| write_failed(&why))? {
        files::create_dir(&dir, Some(0o700), false)
            .map_err(|error| qga::generic_error(format!("failed to create directory '{dir}': {}", error.text())))?;
        files::set_permissions(&dir, Some(0o700), Some(account.owner())).map_err(|error| {
            qga::generic_error(format!(
                "failed to set ownership of directory '{dir}': {}",
                error.text()
            ))
        })?;
    }
    let options = files::ReplaceOptions {
        mode: Some(0o600),
        owner: Some(account.owner()),
        backup_suffix: None,
        create_parents: false,
    };
    files::replace(&path, contents.as_bytes(), &options).map_err(|error| write_failed(error.text()))
}

#[cfg(test)]
mod tests;

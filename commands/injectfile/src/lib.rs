//! `injectfile` and `file_inject`: write a file the hypervisor sends
//! (legacy-agent.md §3.5; Nova's SSH key injection uses them for
//! `/root/.ssh/authorized_keys`).
//!
//! * `injectfile`: base64 of `<path>,<contents>`, split at the first comma
//!   (contents may hold commas and any bytes).
//! * `file_inject`: `{"b64_path": …, "b64_file": …}`, the form Nova uses
//!   when `features` lists it.
//!
//! The file is replaced atomically; an existing file keeps its mode and
//! owner, a new one is 0644 and root's; missing parent directories are
//! created. An `authorized_keys` file under a `.ssh` directory of a home
//! directory gets mode 0600, its directory 0700, both owned by the account
//! whose home it is (from `/etc/passwd`). With the setting
//! `backup-suffix`, the previous contents are kept next to the file. Where
//! a file may be written is the policy's `files` grants.

use guestward_sdk::legacy::b64decode;
use guestward_sdk::{Command, EXCERPT_CHARS, Reply, Request, agent, excerpt, export_command, files};

pub struct InjectFile;

impl Command for InjectFile {
    const NAMES: &'static [&'static str] = &["injectfile", "file_inject"];
    const SUMMARY: &'static str = "Write a file sent by the hypervisor (SSH keys, personality files)";
    const ASKS: &'static str = include_str!("../policy.toml");

    fn handle(request: Request<'_>) -> Reply {
        let parsed = match request.name() {
            "injectfile" => parse_injectfile(request.raw_value()),
            _ => parse_file_inject(request.raw_value()),
        };
        match parsed.and_then(|(path, contents)| write(&path, &contents)) {
            Ok(()) => Reply::ok(""),
            Err(message) => Reply::error(message),
        }
    }
}

export_command!(InjectFile);

/// `injectfile`: base64 of `<path>,<contents>`.
fn parse_injectfile(value: &str) -> Result<(String, Vec<u8>), String> {
    const NOT_BASE64: &str = "Error doing base64 decoding of data";
    let text: String = serde_json::from_str(value).map_err(|_| NOT_BASE64.to_owned())?;
    let data = b64decode(&text).map_err(|_| NOT_BASE64.to_owned())?;
    let comma = data
        .iter()
        .position(|&byte| byte == b',')
        .ok_or("need more than 1 value to unpack")?;
    let path = String::from_utf8(data[..comma].to_vec()).map_err(|_| "the path is not UTF-8".to_owned())?;
    Ok((path, data[comma + 1..].to_vec()))
}

/// `file_inject`: `{"b64_path": …, "b64_file": …}`.
fn parse_file_inject(value: &str) -> Result<(String, Vec<u8>), String> {
    let arguments: serde_json::Value = serde_json::from_str(value).map_err(|_| "Invalid arguments".to_owned())?;
    let field = |key: &str| -> Result<Vec<u8>, String> {
        let text = arguments
            .get(key)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("Missing '{key}' in the arguments"))?;
        b64decode(text).map_err(|_| format!("Error doing base64 decoding of {key}"))
    };
    let path = String::from_utf8(field("b64_path")?).map_err(|_| "the path is not UTF-8".to_owned())?;
    Ok((path, field("b64_file")?))
}

fn write(path: &str, contents: &[u8]) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("The path must be absolute: {:?}", excerpt(path, EXCERPT_CHARS)));
    }
    let backup_suffix = agent::setting("backup-suffix").filter(|suffix| !suffix.is_empty());
    let ssh_owner = authorized_keys_owner(path)?;
    if let Some((directory, owner)) = &ssh_owner {
        prepare_ssh_directory(directory, *owner)?;
    }
    let options = files::ReplaceOptions {
        mode: ssh_owner.as_ref().map(|_| 0o600),
        owner: ssh_owner.map(|(_, owner)| owner),
        backup_suffix,
        create_parents: true,
    };
    if already_written(path, contents, &options) {
        return Ok(());
    }
    files::replace(path, contents, &options).map_err(|error| describe(path, &error))
}

/// Whether `path` is already a regular file with these contents, mode and
/// owner. A request run a second time (the daemon was killed after running
/// it, before its answer was committed) must change nothing: replacing
/// again would overwrite the backup of the original with the injected file.
fn already_written(path: &str, contents: &[u8], options: &files::ReplaceOptions) -> bool {
    let Ok(meta) = files::metadata(path) else {
        return false;
    };
    meta.kind == files::FileKind::File
        && meta.size == contents.len() as u64
        && options.mode.is_none_or(|mode| meta.mode & 0o7777 == mode)
        && options
            .owner
            .is_none_or(|owner| (meta.uid, meta.gid) == (owner.uid, owner.gid))
        && files::read(path).is_ok_and(|current| current == contents)
}

/// For `<home>/.ssh/authorized_keys` (or `authorized_keys2`): the `.ssh`
/// directory and the owner, the account whose home `<home>` is.
fn authorized_keys_owner(path: &str) -> Result<Option<(String, files::Owner)>, String> {
    let Some((directory, file)) = path.rsplit_once('/') else {
        return Ok(None);
    };
    let Some(home) = directory.strip_suffix("/.ssh") else {
        return Ok(None);
    };
    if !matches!(file, "authorized_keys" | "authorized_keys2") {
        return Ok(None);
    }
    let passwd = files::read("/etc/passwd").map_err(|error| describe("/etc/passwd", &error))?;
    let owner = String::from_utf8_lossy(&passwd)
        .lines()
        .find_map(|line| account_with_home(line, home));
    match owner {
        Some(owner) => Ok(Some((directory.to_owned(), owner))),
        // No account lives there: write it as any other file.
        None => Ok(None),
    }
}

/// The uid and gid of a passwd line whose home directory is `home`.
fn account_with_home(line: &str, home: &str) -> Option<files::Owner> {
    let fields: Vec<&str> = line.split(':').collect();
    match fields.as_slice() {
        [_, _, uid, gid, _, dir, ..] if dir.trim_end_matches('/') == home.trim_end_matches('/') => Some(files::Owner {
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
        }),
        _ => None,
    }
}

/// `.ssh`: created if missing, 0700, the account's.
fn prepare_ssh_directory(directory: &str, owner: files::Owner) -> Result<(), String> {
    files::create_dir(directory, Some(0o700), true).map_err(|error| describe(directory, &error))?;
    files::set_permissions(directory, Some(0o700), Some(owner)).map_err(|error| describe(directory, &error))
}

fn describe(path: &str, error: &files::Error) -> String {
    match error {
        files::Error::NotGranted(text) => format!("Not allowed to write there: {text}"),
        files::Error::InvalidPath(text) => format!("Invalid path: {text}"),
        files::Error::NotFound(text) | files::Error::AlreadyExists(text) => {
            format!("{}: {text}", excerpt(path, EXCERPT_CHARS))
        }
        files::Error::NotADirectory(text)
        | files::Error::IsADirectory(text)
        | files::Error::TooLarge(text)
        | files::Error::Io(text) => text.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guestward_sdk::legacy::b64encode;
    use guestward_sdk::testing;

    fn call(name: &str, value: &str) -> (String, String) {
        let reply = InjectFile::handle(Request::new(name, value));
        (reply.code, reply.message)
    }

    fn injectfile(data: &[u8]) -> (String, String) {
        call("injectfile", &format!("\"{}\"", b64encode(data)))
    }

    #[test]
    fn a_huge_path_is_quoted_short() {
        // Found by `guestward fuzz`: a 390 KB relative path was quoted whole
        // in "The path must be absolute", and the reply, over the 16 KiB
        // limit, reached the hypervisor as a size error.
        testing::reset();
        testing::load_asks::<InjectFile>("injectfile").unwrap();
        let path = "7tm".repeat(100_000);
        let value = format!("\"{}\"", b64encode(format!("{path},hello").as_bytes()));
        let reply = testing::call::<InjectFile>("injectfile", &value);
        assert_eq!(reply.code, "500");
        assert!(
            reply.message.starts_with("The path must be absolute: \"7tm7tm"),
            "{}",
            &reply.message[..80]
        );
        assert!(reply.message.len() < 300, "{} bytes", reply.message.len());
    }

    #[test]
    fn contents_split_at_the_first_comma_and_may_be_binary() {
        testing::reset();
        assert_eq!(injectfile(b"/tmp/t/f,a,b\nc"), ("0".into(), String::new()));
        let binary: Vec<u8> = (0..=255).collect();
        assert_eq!(injectfile(&[b"/tmp/bin,".as_slice(), &binary].concat()).0, "0");
        testing::with_host(|host| {
            assert_eq!(host.files["/tmp/t/f"], b"a,b\nc");
            assert_eq!(host.files["/tmp/bin"], binary);
        });
    }

    #[test]
    fn legacy_error_texts() {
        testing::reset();
        assert_eq!(
            call("injectfile", "\"L3RtcC94\""),
            ("500".into(), "need more than 1 value to unpack".into())
        );
        assert_eq!(
            call("injectfile", "\"QQ\""),
            ("500".into(), "Error doing base64 decoding of data".into())
        );
        assert_eq!(injectfile(b"relative,x").1, "The path must be absolute: \"relative\"");
    }

    #[test]
    fn file_inject_takes_the_newer_form() {
        testing::reset();
        let value = serde_json::json!({"b64_path": b64encode(b"/etc/motd"), "b64_file": b64encode(b"hello")});
        assert_eq!(call("file_inject", &value.to_string()).0, "0");
        assert_eq!(testing::with_host(|host| host.files["/etc/motd"].clone()), b"hello");
        assert_eq!(call("file_inject", "{}").1, "Missing 'b64_path' in the arguments");
    }

    #[test]
    fn authorized_keys_belong_to_the_account_whose_home_it_is() {
        testing::reset();
        testing::with_host(|host| {
            host.files.insert(
                "/etc/passwd".into(),
                b"root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1001::/home/alice:/bin/sh\n".to_vec(),
            )
        });
        assert_eq!(
            injectfile(b"/home/alice/.ssh/authorized_keys,\nssh-ed25519 AAAA alice\n").0,
            "0"
        );
        assert_eq!(injectfile(b"/root/.ssh/authorized_keys,key").0, "0");
        testing::with_host(|host| {
            assert_eq!(host.permissions["/home/alice/.ssh"], (Some(0o700), Some((1000, 1001))));
            assert_eq!(
                host.permissions["/home/alice/.ssh/authorized_keys"],
                (Some(0o600), Some((1000, 1001)))
            );
            assert_eq!(
                host.permissions["/root/.ssh/authorized_keys"],
                (Some(0o600), Some((0, 0)))
            );
        });
    }
}

//! `keyinit` and `password`: Nova's Diffie-Hellman password change
//! (legacy-agent.md §3.3, §3.4).
//!
//! `keyinit` answers `D0` with the agent's public key and keeps the derived
//! AES key in the host's `state` store (never on disk), where it expires
//! after [`KEY_TTL_SECONDS`] without use. `password` decrypts the new
//! password with it and writes the account's new hash into `/etc/shadow`
//! (or FreeBSD's `/etc/master.passwd`, then `pwd_mkdb`), under the
//! `lckpwdf(3)` lock, by atomic replacement: the file is never missing or
//! half written. The key is wiped on success and kept on failure.
//!
//! * [`dh`]: the exchange and the key derivation.
//! * [`cipher`]: base64, AES-128-CBC and the legacy padding check.
//! * [`hash`]: crypt(3) hashes, each scheme with its parameters.
//! * [`shadow`]: rewriting the password file line by line.
//! * [`qga`]: `guest-set-user-password` of the QEMU guest agent protocol,
//!   through the same rewriting, lock and hash schemes.

pub mod cipher;
pub mod dh;
pub mod hash;
pub mod qga;
pub mod shadow;

use guestward_sdk::{Command, Reply, Request, agent, export_command, files, log, programs, state};
use zeroize::Zeroizing;

/// The key is forgotten after this long without use: Nova sends `password`
/// right after `keyinit`, so five minutes is ample.
pub const KEY_TTL_SECONDS: u32 = 300;

/// Where the key waits between `keyinit` and `password`.
const KEY_STATE: &str = "aes-key";

const SHADOW: &str = "/etc/shadow";
const MASTER_PASSWD: &str = "/etc/master.passwd";
const LOGIN_DEFS: &str = "/etc/login.defs";
/// The lock `lckpwdf(3)` takes, honoured by passwd, useradd, vipw…
const PASSWORD_LOCK: &str = "/etc/.pwd.lock";
/// How long `lckpwdf(3)` waits for it.
const LOCK_TIMEOUT_MS: u32 = 15_000;
const PWD_MKDB: &str = "/usr/sbin/pwd_mkdb";

pub struct Password;

impl Command for Password {
    const NAMES: &'static [&'static str] = &["keyinit", "password", "qga:guest-set-user-password"];
    const SUMMARY: &'static str =
        "Set a password: Nova's Diffie-Hellman exchange, or the QEMU guest agent's guest-set-user-password";
    const ASKS: &'static str = include_str!("../policy.toml");

    fn handle(request: Request<'_>) -> Reply {
        let result = match request.name() {
            "qga:guest-set-user-password" => return qga::set_user_password(&request),
            "keyinit" => keyinit(request.raw_value()),
            _ => password(request.raw_value()),
        };
        result.unwrap_or_else(Reply::error)
    }
}

export_command!(Password);

fn keyinit(value: &str) -> Result<Reply, String> {
    let peer = dh::parse_peer_key(value)?;
    let mut seed = [0u8; 16];
    getrandom::fill(&mut seed).map_err(|error| format!("no random bytes for the key: {error}"))?;
    let private = dh::private_key_from_bytes(seed);
    let key = dh::derive_key(&dh::shared_secret(&peer, &private));
    state::set(KEY_STATE, &key.to_bytes(), Some(KEY_TTL_SECONDS)).map_err(|error| format!("{error:?}"))?;
    log::log(log::Level::Info, "key exchange done");
    Ok(Reply::new("D0", dh::public_key(&private).to_string()))
}

fn password(value: &str) -> Result<Reply, String> {
    const NOT_BASE64: &str = "Couldn't decode base64 data";
    let text = match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::String(text)) => Zeroizing::new(text),
        _ => return Err(NOT_BASE64.to_owned()),
    };
    let ciphertext = Zeroizing::new(cipher::decode_base64_lenient(&text).map_err(|_| NOT_BASE64.to_owned())?);
    let key = state::get(KEY_STATE)
        .map(Zeroizing::new)
        .and_then(|bytes| dh::AesKey::from_bytes(&bytes))
        .ok_or("Password without key exchange")?;
    // On any failure from here on, the key stays for another try.
    let password = cipher::decrypt_password(&key, &ciphertext)?;
    let account = agent::setting("account").unwrap_or_else(|| "root".to_owned());
    set_password(&account, &password)?;
    state::delete(KEY_STATE);
    log::log(log::Level::Info, &format!("password of {account} changed"));
    Ok(Reply::ok(""))
}

/// The password database of this system.
enum Database {
    /// Linux: `/etc/shadow`.
    Shadow,
    /// FreeBSD: `/etc/master.passwd`, then `pwd_mkdb` rebuilds its databases.
    MasterPasswd,
}

impl Database {
    fn detect() -> Result<Self, String> {
        if files::metadata(SHADOW).is_ok() {
            Ok(Self::Shadow)
        } else if files::metadata(MASTER_PASSWD).is_ok() {
            Ok(Self::MasterPasswd)
        } else {
            Err("Unknown password file format".to_owned())
        }
    }

    fn path(&self) -> &'static str {
        match self {
            Self::Shadow => SHADOW,
            Self::MasterPasswd => MASTER_PASSWD,
        }
    }
}

fn set_password(account: &str, password: &cipher::Password) -> Result<(), String> {
    // The legacy agent kept the day of the last change as it was, and its
    // test vectors say so (legacy-agent.md §8.2).
    set_hash(account, LastChange::Kept, &mut |old_hash, default_scheme| {
        hash_like(password.as_bytes(), old_hash, default_scheme)
    })
    .map_err(|error| error.to_string())
}

/// What a new password does to shadow's day of the last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LastChange {
    /// Left as it was.
    Kept,
    /// Today, as `chpasswd` and `passwd` set it: this also ends a change
    /// forced at the next login (a day of 0). FreeBSD's file has no such
    /// field.
    Today,
}

impl LastChange {
    /// The day to write into `database`, if any.
    fn day(self, database: &Database) -> Option<u64> {
        if !matches!((self, database), (Self::Today, Database::Shadow)) {
            return None;
        }
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some(since_epoch.as_secs() / SECONDS_PER_DAY)
    }
}

const SECONDS_PER_DAY: u64 = 24 * 60 * 60;

/// Why the password database was not changed.
#[derive(Debug)]
pub(crate) enum SetError {
    /// The account has no line in the database (`path`).
    NoAccount { account: String, path: &'static str },
    /// Anything else, in the legacy agent's words.
    Failed(String),
}

impl std::fmt::Display for SetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoAccount { account, path } => write!(f, "No account '{account}' in {path}"),
            Self::Failed(text) => f.write_str(text),
        }
    }
}

impl From<String> for SetError {
    fn from(text: String) -> Self {
        Self::Failed(text)
    }
}

/// Hash `password` as the account's old hash was hashed (its scheme and
/// parameters), or with the system's default scheme when the old one names
/// no usable scheme.
pub(crate) fn hash_like(password: &[u8], old_hash: &str, default_scheme: &hash::Scheme) -> Result<String, String> {
    let mut random = |buffer: &mut [u8]| {
        // WASI randomness does not fail; a zero salt would still hash.
        let _ = getrandom::fill(buffer);
    };
    let (scheme, salt_len) = match hash::existing_scheme(old_hash) {
        Some((scheme, salt_len)) => (scheme, Some(salt_len)),
        None => (default_scheme.clone(), None),
    };
    hash::hash_password(password, &scheme, salt_len, &mut random)
}

/// Replace the account's hash with `new_hash(old hash, the system's default
/// scheme)` in the password database, under the `lckpwdf(3)` lock, by
/// atomic replacement (and `pwd_mkdb` on FreeBSD, restoring the file if it
/// fails).
pub(crate) fn set_hash(
    account: &str,
    last_change: LastChange,
    new_hash: &mut dyn FnMut(&str, &hash::Scheme) -> Result<String, String>,
) -> Result<(), SetError> {
    let database = Database::detect()?;
    let path = database.path();
    let _lock = files::lock(PASSWORD_LOCK, LOCK_TIMEOUT_MS)
        .map_err(|error| format!("Couldn't lock the password database: {}", describe(&error)))?;
    let old = files::read(path).map_err(|error| format!("Couldn't read {path}: {}", describe(&error)))?;
    let login_defs = files::read(LOGIN_DEFS)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let default_scheme = hash::default_scheme(login_defs.as_deref());
    let rewritten = shadow::rewrite(
        &old,
        account,
        &mut |old_hash| new_hash(old_hash, &default_scheme),
        last_change.day(&database),
    )?;
    if rewritten.accounts_changed == 0 {
        return Err(SetError::NoAccount {
            account: account.to_owned(),
            path,
        });
    }
    replace(path, &rewritten.contents)?;
    if let Database::MasterPasswd = database
        && let Err(error) = rebuild_freebsd_databases()
    {
        replace(path, &old)?;
        log::log(log::Level::Error, &format!("pwd_mkdb failed: {error}"));
        return Err(SetError::Failed("Rebuilding the passwd database failed".to_owned()));
    }
    Ok(())
}

/// Atomically replace the password file, keeping its mode and owner.
fn replace(path: &str, contents: &[u8]) -> Result<(), String> {
    let options = files::ReplaceOptions {
        mode: None,
        owner: None,
        backup_suffix: None,
        create_parents: false,
    };
    files::replace(path, contents, &options).map_err(|error| format!("Couldn't write {path}: {}", describe(&error)))
}

fn rebuild_freebsd_databases() -> Result<(), String> {
    let output = programs::run(
        PWD_MKDB,
        &programs::plain(&["-p", MASTER_PASSWD]),
        &[],
        programs::RunOptions::default(),
    )
    .map_err(|error| error.text().to_owned())?;
    match output.exit_code {
        Some(0) => Ok(()),
        Some(code) => Err(format!(
            "exit code {code}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        None => Err(format!("killed by signal {}", output.signal.unwrap_or_default())),
    }
}

fn describe(error: &files::Error) -> String {
    match error {
        files::Error::NotGranted(text)
        | files::Error::InvalidPath(text)
        | files::Error::NotFound(text)
        | files::Error::AlreadyExists(text)
        | files::Error::NotADirectory(text)
        | files::Error::IsADirectory(text)
        | files::Error::TooLarge(text)
        | files::Error::Io(text) => text.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guestward_sdk::testing;

    /// A root line whose hash the tests replace.
    const SHADOW_FILE: &str = "root:$6$abcdefgh$old:17000:0:99999:7:::\nbin:*:17000:0:99999:7:::\n";

    fn setup(files: &[(&str, &str)]) {
        testing::reset();
        testing::with_host(|host| {
            for (path, contents) in files {
                host.files.insert((*path).to_owned(), contents.as_bytes().to_vec());
            }
        });
    }

    /// The host side of the exchange, with the vectors' host key (V1).
    fn exchange() -> dh::AesKey {
        let host_private: num_bigint::BigUint = "5373003642731685151011".parse().unwrap();
        let host_public = num_bigint::BigUint::from(5u8).modpow(&host_private, &dh::prime());
        let reply = Password::handle(Request::new("keyinit", &format!("\"{host_public}\"")));
        assert_eq!(reply.code, "D0");
        let agent_public: num_bigint::BigUint = reply.message.parse().unwrap();
        let shared = agent_public.modpow(&host_private, &dh::prime()).to_string();
        dh::derive_key(&test_secret(&shared))
    }

    fn test_secret(decimal: &str) -> dh::SharedSecret {
        // The shared secret is A^b = B^a: rebuild it through the API.
        let one = dh::private_key_from_bytes(1u128.to_be_bytes());
        dh::shared_secret(&decimal.parse().unwrap(), &one)
    }

    fn encrypt(key: &dh::AesKey, plaintext: &[u8]) -> String {
        use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
        let ciphertext = cbc::Encryptor::<aes::Aes128>::new(&key.key.into(), &key.iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
        guestward_sdk::legacy::b64encode(&ciphertext)
    }

    fn root_hash() -> String {
        testing::with_host(|host| {
            let shadow = String::from_utf8(host.files[SHADOW].clone()).unwrap();
            shadow.lines().next().unwrap().split(':').nth(1).unwrap().to_owned()
        })
    }

    #[test]
    fn keyinit_then_password_sets_the_hash_under_the_lock() {
        setup(&[(SHADOW, SHADOW_FILE)]);
        let key = exchange();
        let reply = Password::handle(Request::new("password", &format!("\"{}\"", encrypt(&key, b"new pw\n"))));
        assert_eq!((reply.code.as_str(), reply.message.as_str()), ("0", ""));
        let hash = root_hash();
        assert!(hash.starts_with("$6$") && hash != "$6$abcdefgh$old", "{hash}");
        let shadow = testing::with_host(|host| host.files[SHADOW].clone());
        let expected = format!("root:{hash}:17000:0:99999:7:::\nbin:*:17000:0:99999:7:::\n");
        assert_eq!(
            shadow,
            expected.as_bytes(),
            "only the hash changes, as the legacy agent did"
        );
        assert!(testing::with_host(|host| host.locks == [PASSWORD_LOCK]));
        // The key is gone: a second password needs a new keyinit.
        let again = Password::handle(Request::new("password", &format!("\"{}\"", encrypt(&key, b"x\n"))));
        assert_eq!(again.message, "Password without key exchange");
    }

    #[test]
    fn a_failed_password_keeps_the_key() {
        setup(&[(SHADOW, SHADOW_FILE)]);
        let key = exchange();
        let wrong = encrypt(&dh::derive_key(&test_secret("123")), b"pw\n");
        let reply = Password::handle(Request::new("password", &format!("\"{wrong}\"")));
        assert_eq!(
            (reply.code.as_str(), reply.message.as_str()),
            ("500", "Invalid password data received")
        );
        let reply = Password::handle(Request::new("password", &format!("\"{}\"", encrypt(&key, b"pw\n"))));
        assert_eq!(reply.code, "0");
    }

    #[test]
    fn the_account_is_configurable() {
        setup(&[(SHADOW, "root:x:1::\nadmin:$1$abcd$old:1::\n")]);
        testing::with_host(|host| host.settings.insert("account".into(), "admin".into()));
        let key = exchange();
        let reply = Password::handle(Request::new("password", &format!("\"{}\"", encrypt(&key, b"pw\n"))));
        assert_eq!(reply.code, "0");
        let shadow = testing::with_host(|host| String::from_utf8(host.files[SHADOW].clone()).unwrap());
        assert!(shadow.starts_with("root:x:1::\nadmin:$1$"), "{shadow}");
    }

    #[test]
    fn a_missing_account_is_an_error_not_a_silent_success() {
        setup(&[(SHADOW, "bin:*:1::\n")]);
        let key = exchange();
        let reply = Password::handle(Request::new("password", &format!("\"{}\"", encrypt(&key, b"pw\n"))));
        assert_eq!(reply.message, "No account 'root' in /etc/shadow");
    }

    #[test]
    fn freebsd_runs_pwd_mkdb_and_restores_the_file_if_it_fails() {
        let master = "root:$1$abcd$old:0:0::0:0:Charlie &:/root:/bin/csh\n";
        setup(&[(MASTER_PASSWD, master)]);
        let key = exchange();
        let reply = Password::handle(Request::new("password", &format!("\"{}\"", encrypt(&key, b"pw\n"))));
        assert_eq!(reply.code, "0");
        let runs = testing::with_host(|host| host.runs.clone());
        assert_eq!(runs[0].0, [PWD_MKDB, "-p", MASTER_PASSWD]);

        setup(&[(MASTER_PASSWD, master)]);
        testing::with_host(|host| host.exit_codes.insert(PWD_MKDB.into(), 1));
        let key = exchange();
        let reply = Password::handle(Request::new("password", &format!("\"{}\"", encrypt(&key, b"pw\n"))));
        assert_eq!(reply.message, "Rebuilding the passwd database failed");
        let restored = testing::with_host(|host| host.files[MASTER_PASSWD].clone());
        assert_eq!(restored, master.as_bytes());
    }

    #[test]
    fn legacy_error_texts() {
        setup(&[(SHADOW, SHADOW_FILE)]);
        let cases = [
            ("password", "\"kjadfkjaf\"", "Couldn't decode base64 data"),
            (
                "password",
                "\"AAAAAAAAAAAAAAAAAAAAAA==\"",
                "Password without key exchange",
            ),
            ("password", "\"\"", "Password without key exchange"),
            ("password", "5", "Couldn't decode base64 data"),
            ("keyinit", "\"abc\"", "invalid literal for long() with base 10: 'abc'"),
        ];
        for (name, value, message) in cases {
            let reply = Password::handle(Request::new(name, value));
            assert_eq!(
                (reply.code.as_str(), reply.message.as_str()),
                ("500", message),
                "{name} {value}"
            );
        }
        setup(&[]);
        let key = exchange();
        let reply = Password::handle(Request::new("password", &format!("\"{}\"", encrypt(&key, b"pw\n"))));
        assert_eq!(reply.message, "Unknown password file format");
    }

    #[test]
    fn nothing_secret_is_logged() {
        setup(&[(SHADOW, SHADOW_FILE)]);
        let key = exchange();
        let ciphertext = encrypt(&key, b"Sup3rS3cret\n");
        Password::handle(Request::new("password", &format!("\"{ciphertext}\"")));
        let logs = testing::with_host(|host| host.logs.clone());
        assert!(!logs.is_empty());
        for (_, line) in logs {
            assert!(!line.contains("Sup3rS3cret") && !line.contains(&ciphertext), "{line}");
        }
    }
}

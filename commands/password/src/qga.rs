//! `guest-set-user-password` of the QEMU guest agent protocol: what
//! libvirt's `virsh set-user-password` (Nova's set admin password on KVM)
//! sends.
//!
//! qemu-ga decodes the base64 password, refuses a newline in it and a `:`
//! or newline in the user name, and pipes `user:password` to `chpasswd`
//! (`chpasswd -e` for a crypted one). Here the same checks come first, with
//! qemu-ga's texts, and then the account's line is rewritten exactly as
//! Nova's `password` does it: under the `lckpwdf(3)` lock, by atomic
//! replacement, a plain password hashed inside the component with the
//! account's own scheme (else the system's default). Unlike Nova's, the
//! day of the last change becomes today, as chpasswd sets it, which also
//! ends a change forced at the next login.
//!
//! Where qemu-ga would write something wrong without a word, this refuses:
//! a NUL in the password (chpasswd silently cut the password there), a `:`
//! in a crypted hash (it would split the shadow line), and an empty
//! password.

use guestward_sdk::{Reply, Request, log, qga};
use zeroize::Zeroizing;

use crate::{LastChange, SetError, hash_like, set_hash};

/// qemu-ga's answer whenever chpasswd failed: what libvirt users see for
/// an account that does not exist.
const CHPASSWD_FAILED: &str = "child process has failed to set user password";

/// `guest-set-user-password` `{"username", "password" (base64), "crypted"}`.
pub fn set_user_password(request: &Request<'_>) -> Reply {
    let (username, password, crypted) = match arguments(request) {
        Ok(arguments) => arguments,
        Err(reply) => return reply,
    };
    let password = match decode_base64(&password) {
        Some(password) => password,
        None => return qga::generic_error("Base64 data contains invalid characters"),
    };
    if password.contains(&b'\n') || password.contains(&0) {
        return qga::generic_error("forbidden characters in raw password");
    }
    if username.contains([':', '\n', '\0']) {
        return qga::generic_error("forbidden characters in username");
    }
    if username.is_empty() || password.is_empty() {
        log::log(log::Level::Info, "refused an empty user name or an empty password");
        return qga::generic_error(CHPASSWD_FAILED);
    }
    let result = if crypted {
        let Some(hash) = crypted_hash(&password) else {
            return qga::generic_error("forbidden characters in crypted password");
        };
        set_hash(&username, LastChange::Today, &mut |_, _| Ok(hash.to_owned()))
    } else {
        set_hash(&username, LastChange::Today, &mut |old_hash, default_scheme| {
            hash_like(&password, old_hash, default_scheme)
        })
    };
    match result {
        Ok(()) => {
            log::log(log::Level::Info, &format!("password of {username} changed"));
            qga::ok(serde_json::json!({}))
        }
        Err(error @ SetError::NoAccount { .. }) => {
            log::log(log::Level::Info, &error.to_string());
            qga::generic_error(CHPASSWD_FAILED)
        }
        Err(SetError::Failed(text)) => qga::generic_error(text),
    }
}

/// The three parameters, each required, in the order qemu-ga checks them.
fn arguments(request: &Request<'_>) -> Result<(String, Zeroizing<String>, bool), Reply> {
    let mut arguments = qga::Arguments::of(request)?;
    let username: String = arguments.required("username")?;
    let password = Zeroizing::new(arguments.required::<String>("password")?);
    let crypted: bool = arguments.required("crypted")?;
    arguments.finish()?;
    Ok((username, password, crypted))
}

/// A crypted password as it goes into the shadow line: text without the
/// field separator. (qemu-ga checks nothing else, and neither does this:
/// `!` and `*` lock an account, as the operator may mean.)
fn crypted_hash(password: &[u8]) -> Option<&str> {
    std::str::from_utf8(password).ok().filter(|hash| !hash.contains(':'))
}

/// Base64 as qemu-ga reads it: only the standard alphabet, `=` and newlines
/// may appear (anything else: `None`); newlines are skipped, padding may be
/// missing or excessive. A trailing group of one character carries no whole
/// byte and is dropped, as glib drops it.
fn decode_base64(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    fn value(byte: u8) -> Option<u32> {
        match byte {
            b'A'..=b'Z' => Some(u32::from(byte - b'A')),
            b'a'..=b'z' => Some(u32::from(byte - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(byte - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    if !text
        .bytes()
        .all(|byte| value(byte).is_some() || byte == b'=' || byte == b'\n')
    {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 4 * 3 + 3));
    let (mut bits, mut count) = (0u32, 0u32);
    // Data ends at the first padding character.
    for sextet in text.bytes().take_while(|&byte| byte != b'=').filter_map(value) {
        bits = (bits << 6) | sextet;
        count += 1;
        if count == 4 {
            out.extend_from_slice(&bits.to_be_bytes()[1..]);
            (bits, count) = (0, 0);
        }
    }
    match count {
        2 => out.push((bits >> 4) as u8),
        3 => out.extend_from_slice(&((bits >> 2) as u16).to_be_bytes()),
        _ => {}
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PASSWORD_LOCK, Password, SHADOW};
    use guestward_sdk::testing;

    const NAME: &str = "qga:guest-set-user-password";
    const SHADOW_FILE: &str = "root:$6$abcdefgh$old:17000:0:99999:7:::\nalice:!:17000:0:99999:7:::\n";

    fn setup() {
        testing::reset();
        testing::load_asks::<Password>("password").unwrap();
        testing::with_host(|host| host.files.insert(SHADOW.into(), SHADOW_FILE.as_bytes().to_vec()));
    }

    fn call(arguments: &str) -> (String, String) {
        let reply = testing::call::<Password>(NAME, arguments);
        (reply.code, reply.message)
    }

    /// Field `index` (from 0) of the user's shadow line.
    fn shadow_field(user: &str, index: usize) -> String {
        let shadow = testing::with_host(|host| String::from_utf8(host.files[SHADOW].clone()).unwrap());
        let line = shadow
            .lines()
            .find(|line| line.starts_with(&format!("{user}:")))
            .unwrap();
        line.split(':').nth(index).unwrap().to_owned()
    }

    fn hash_of(user: &str) -> String {
        shadow_field(user, 1)
    }

    fn b64(text: &str) -> String {
        guestward_sdk::legacy::b64encode(text.as_bytes())
    }

    #[test]
    fn a_plain_password_is_hashed_in_the_accounts_scheme_under_the_lock() {
        setup();
        let arguments = format!(
            r#"{{"crypted":false,"username":"root","password":"{}"}}"#,
            b64("Tr0ub4dor&3")
        );
        assert_eq!(call(&arguments), ("0".into(), "{}".into()));
        let hash = hash_of("root");
        assert!(
            hash.starts_with("$6$") && hash.len() > 20 && hash != "$6$abcdefgh$old",
            "{hash}"
        );
        assert!(testing::with_host(|host| host.locks == [PASSWORD_LOCK]));
        assert_eq!(hash_of("alice"), "!", "other accounts are untouched");
        // A locked account gets the system's default scheme.
        testing::with_host(|host| {
            host.files
                .insert("/etc/login.defs".into(), b"ENCRYPT_METHOD YESCRYPT\n".to_vec())
        });
        let arguments = format!(r#"{{"username":"alice","password":"{}","crypted":false}}"#, b64("pw"));
        assert_eq!(call(&arguments).0, "0");
        assert!(hash_of("alice").starts_with("$y$j9T$"), "{}", hash_of("alice"));
    }

    fn today() -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        now.as_secs() / 86_400
    }

    #[test]
    fn the_last_change_becomes_today_as_chpasswd_sets_it_ending_a_forced_change() {
        setup();
        testing::with_host(|host| {
            host.files.insert(
                SHADOW.into(),
                b"root:$6$abcdefgh$old:0:0:99999:7:::\nalice:!:17000:0:99999:7:::\n".to_vec(),
            )
        });
        let before = today();
        let arguments = format!(r#"{{"username":"root","password":"{}","crypted":false}}"#, b64("pw"));
        assert_eq!(call(&arguments).0, "0");
        let arguments = format!(
            r#"{{"username":"alice","password":"{}","crypted":true}}"#,
            b64("$6$s$h")
        );
        assert_eq!(call(&arguments).0, "0");
        let days = before..=today();
        for user in ["root", "alice"] {
            let day: u64 = shadow_field(user, 2).parse().unwrap();
            assert!(days.contains(&day), "{user}: {day} is not today");
        }
        let shadow = testing::with_host(|host| String::from_utf8(host.files[SHADOW].clone()).unwrap());
        assert!(shadow.lines().all(|line| line.ends_with(":0:99999:7:::")), "{shadow}");
    }

    #[test]
    fn a_crypted_password_goes_in_verbatim() {
        setup();
        let hash = "$6$Gw3stw4rd$kiTf0PA1";
        let arguments = format!(r#"{{"username":"alice","password":"{}","crypted":true}}"#, b64(hash));
        assert_eq!(call(&arguments), ("0".into(), "{}".into()));
        assert_eq!(hash_of("alice"), hash);
        let arguments = format!(r#"{{"username":"alice","password":"{}","crypted":true}}"#, b64("x:0:0"));
        assert_eq!(call(&arguments).1, "forbidden characters in crypted password");
        assert_eq!(hash_of("alice"), hash);
    }

    #[test]
    fn refusals_have_qemu_gas_words_and_change_nothing() {
        setup();
        let pw = b64("pw");
        let cases = [
            (
                r#"{"password":"cHc=","crypted":false}"#.to_owned(),
                "Parameter 'username' is missing",
            ),
            (
                r#"{"username":"root","crypted":false}"#.to_owned(),
                "Parameter 'password' is missing",
            ),
            (
                r#"{"username":"root","password":"cHc="}"#.to_owned(),
                "Parameter 'crypted' is missing",
            ),
            (
                r#"{"username":1,"password":"cHc=","crypted":false}"#.to_owned(),
                "Invalid parameter type for 'username', expected: string",
            ),
            (
                r#"{"username":"root","password":"cHc=","crypted":"false"}"#.to_owned(),
                "Invalid parameter type for 'crypted', expected: boolean",
            ),
            (
                r#"{"username":"root","password":"cHc=","crypted":false,"extra":1}"#.to_owned(),
                "Parameter 'extra' is unexpected",
            ),
            (
                r#"{"username":"root","password":"!!!notbase64","crypted":false}"#.to_owned(),
                "Base64 data contains invalid characters",
            ),
            (
                format!(r#"{{"username":"root","password":"{}","crypted":false}}"#, b64("a\nb")),
                "forbidden characters in raw password",
            ),
            (
                format!(r#"{{"username":"root","password":"{}","crypted":true}}"#, b64("a\0b")),
                "forbidden characters in raw password",
            ),
            (
                format!(r#"{{"username":"ro:ot","password":"{pw}","crypted":false}}"#),
                "forbidden characters in username",
            ),
            (
                format!(r#"{{"username":"root\n","password":"{pw}","crypted":false}}"#),
                "forbidden characters in username",
            ),
            (
                format!(r#"{{"username":"nosuchuser","password":"{pw}","crypted":false}}"#),
                CHPASSWD_FAILED,
            ),
            (
                r#"{"username":"root","password":"","crypted":false}"#.to_owned(),
                CHPASSWD_FAILED,
            ),
            (
                format!(r#"{{"username":"","password":"{pw}","crypted":false}}"#),
                CHPASSWD_FAILED,
            ),
        ];
        for (arguments, desc) in cases {
            assert_eq!(call(&arguments), ("GenericError".into(), desc.into()), "{arguments}");
        }
        let shadow = testing::with_host(|host| host.files[SHADOW].clone());
        assert_eq!(shadow, SHADOW_FILE.as_bytes());
    }

    #[test]
    fn the_password_never_reaches_a_log() {
        setup();
        for crypted in [false, true] {
            let arguments = format!(
                r#"{{"username":"root","password":"{}","crypted":{crypted}}}"#,
                b64("Sup3rS3cret")
            );
            assert_eq!(call(&arguments).0, "0");
        }
        let logs = testing::with_host(|host| host.logs.clone());
        assert!(!logs.is_empty());
        for (_, line) in logs {
            assert!(
                !line.contains("Sup3rS3cret") && !line.contains(&b64("Sup3rS3cret")),
                "{line}"
            );
        }
    }

    fn decoded(text: &str) -> Option<Vec<u8>> {
        decode_base64(text).map(|bytes| bytes.to_vec())
    }

    #[test]
    fn base64_is_read_as_qemu_ga_reads_it() {
        assert_eq!(decoded("VHIwdWI0ZG9yJjM="), Some(b"Tr0ub4dor&3".to_vec()));
        assert_eq!(decoded("YWJj"), Some(b"abc".to_vec()));
        assert_eq!(decoded("YWJj="), Some(b"abc".to_vec()), "excess padding");
        assert_eq!(decoded("YWJj\n"), Some(b"abc".to_vec()), "a newline");
        assert_eq!(decoded("YWJjZA"), Some(b"abcd".to_vec()), "no padding");
        assert_eq!(decoded("YWJjZA=="), Some(b"abcd".to_vec()));
        assert_eq!(decoded("YWJjZGU="), Some(b"abcde".to_vec()));
        assert_eq!(decoded(""), Some(Vec::new()));
        for bad in ["!!!notbase64", "YW Jj", "YWJj\r\n", "YW-_", "é"] {
            assert_eq!(decoded(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn crypted_hashes_may_not_split_the_shadow_line() {
        assert_eq!(crypted_hash(b"$6$salt$hash"), Some("$6$salt$hash"));
        assert_eq!(crypted_hash(b"!"), Some("!"));
        assert_eq!(crypted_hash(b"a:b"), None);
        assert_eq!(crypted_hash(b"\xff"), None);
    }
}

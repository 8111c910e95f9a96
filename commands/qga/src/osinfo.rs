//! `guest-get-osinfo`: the kernel's release, version and machine (what
//! `uname(2)` says) and the fields of os-release(5), each member present
//! only when its source says something, as qemu-ga answers.

use serde_json::{Map, Value};

use crate::read_text;

/// os-release keys and the members they become.
const OS_RELEASE_MEMBERS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("PRETTY_NAME", "pretty-name"),
    ("VERSION", "version"),
    ("VERSION_ID", "version-id"),
    ("VARIANT", "variant"),
    ("VARIANT_ID", "variant-id"),
];

/// The kernel's files and the members they become (uname's release,
/// version and machine).
const KERNEL_MEMBERS: &[(&str, &str)] = &[
    ("/proc/sys/kernel/osrelease", "kernel-release"),
    ("/proc/sys/kernel/version", "kernel-version"),
    ("/proc/sys/kernel/arch", "machine"),
];

pub fn guest_osinfo() -> Value {
    let mut members = Map::new();
    for (path, member) in KERNEL_MEMBERS {
        if let Ok(text) = read_text(path) {
            members.insert((*member).to_owned(), Value::from(text.trim_end_matches('\n')));
        }
    }
    // /etc/os-release, else /usr/lib/os-release; neither: no such members
    // (qemu-ga does not fail either).
    let os_release = read_text("/etc/os-release").or_else(|_| read_text("/usr/lib/os-release"));
    if let Ok(text) = os_release {
        let fields = parse_os_release(&text);
        for (key, member) in OS_RELEASE_MEMBERS {
            if let Some((_, value)) = fields.iter().rev().find(|(name, _)| name == key) {
                members.insert((*member).to_owned(), Value::from(value.as_str()));
            }
        }
    }
    Value::Object(members)
}

/// `KEY=value` lines; values unquoted as a shell would (double quotes with
/// backslash escapes, single quotes, bare words with escapes). Comments,
/// blank lines and lines without `=` are skipped.
pub fn parse_os_release(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let key = key.trim();
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return None;
            }
            Some((key.to_owned(), unquote(value.trim())))
        })
        .collect()
}

/// The shell's unquoting of one value.
fn unquote(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => out.extend(chars.by_ref().take_while(|&c| c != '\'')),
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(next @ ('$' | '`' | '"' | '\\')) => out.push(next),
                            Some('\n') | None => {}
                            Some(next) => {
                                out.push('\\');
                                out.push(next);
                            }
                        },
                        c => out.push(c),
                    }
                }
            }
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unquoted_as_a_shell_unquotes_them() {
        let text = "# comment\nNAME=\"Debian GNU/Linux\"\nID=debian\nVERSION='12 (bookworm)'\n\
            PRETTY_NAME=\"A \\\"quoted\\\" \\$name\\\\\"\nVARIANT=Cloud\\ Edition\nbroken line\n=x\nBAD KEY=1\nEMPTY=\n";
        let fields = parse_os_release(text);
        let get = |key: &str| fields.iter().find(|(name, _)| name == key).map(|(_, v)| v.as_str());
        assert_eq!(get("NAME"), Some("Debian GNU/Linux"));
        assert_eq!(get("ID"), Some("debian"));
        assert_eq!(get("VERSION"), Some("12 (bookworm)"));
        assert_eq!(get("PRETTY_NAME"), Some("A \"quoted\" $name\\"));
        assert_eq!(get("VARIANT"), Some("Cloud Edition"));
        assert_eq!(get("EMPTY"), Some(""));
        assert_eq!(fields.len(), 6, "{fields:?}");
    }

    #[test]
    fn unterminated_quotes_and_odd_bytes_never_panic() {
        for value in ["\"abc", "'abc", "\\", "\"\\", "\"a\\\"", "é\"ü", "\u{0}"] {
            let _ = unquote(value);
        }
        assert_eq!(unquote("\"abc"), "abc");
    }
}

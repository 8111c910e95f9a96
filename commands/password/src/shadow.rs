//! Rewriting `/etc/shadow` (or FreeBSD's `/etc/master.passwd`, whose first
//! two fields are the same): the account's hash changes, and its
//! last-change day when asked, every other byte stays where it was
//! (legacy-agent.md §3.4.1).

/// The rewritten file and how many lines were the account's.
#[derive(Debug, PartialEq, Eq)]
pub struct Rewritten {
    pub contents: Vec<u8>,
    pub accounts_changed: usize,
}

/// Replace field 2 of every line whose first field is `account` with
/// `new_hash(old hash)`, and field 3 (shadow's day of the last change) with
/// `changed_on` when there is one. Comment lines, lines with fewer than
/// three fields and other accounts' lines are copied as they are, bytes and
/// line endings included, valid UTF-8 or not.
pub fn rewrite(
    contents: &[u8],
    account: &str,
    new_hash: &mut dyn FnMut(&str) -> Result<String, String>,
    changed_on: Option<u64>,
) -> Result<Rewritten, String> {
    let mut out = Vec::with_capacity(contents.len() + 128);
    let mut accounts_changed = 0;
    for line in contents.split_inclusive(|&byte| byte == b'\n') {
        match replace_hash(line, account, new_hash, changed_on)? {
            Some(changed) => {
                out.extend_from_slice(&changed);
                accounts_changed += 1;
            }
            None => out.extend_from_slice(line),
        }
    }
    Ok(Rewritten {
        contents: out,
        accounts_changed,
    })
}

/// The line with its hash replaced, or `None` when it is not the account's.
fn replace_hash(
    line: &[u8],
    account: &str,
    new_hash: &mut dyn FnMut(&str) -> Result<String, String>,
    changed_on: Option<u64>,
) -> Result<Option<Vec<u8>>, String> {
    if line.starts_with(b"#") || line.iter().filter(|&&byte| byte == b':').count() < 2 {
        return Ok(None);
    }
    let mut fields = line.splitn(3, |&byte| byte == b':');
    let (Some(user), Some(old_hash), Some(rest)) = (fields.next(), fields.next(), fields.next()) else {
        return Ok(None);
    };
    if user != account.as_bytes() {
        return Ok(None);
    }
    let hash = new_hash(&String::from_utf8_lossy(old_hash))?;
    let rest = match changed_on {
        Some(day) => [day.to_string().as_bytes(), after_first_field(rest)].concat(),
        None => rest.to_vec(),
    };
    Ok(Some([user, b":", hash.as_bytes(), b":", &rest].concat()))
}

/// What follows the first field of `rest`: from its `:`, or from the line
/// ending when it is the last field.
fn after_first_field(rest: &[u8]) -> &[u8] {
    let end = rest
        .iter()
        .position(|&byte| matches!(byte, b':' | b'\r' | b'\n'))
        .unwrap_or(rest.len());
    &rest[end..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite_with(contents: &[u8], account: &str) -> Rewritten {
        rewrite(contents, account, &mut |old| Ok(format!("NEW[{old}]")), None).unwrap()
    }

    #[test]
    fn only_the_accounts_hash_changes() {
        let input = b"# comment\nroot:$6$abcdefgh$oldhash:17000:0:99999:7:::\nbin:*:17000:0:99999:7:::\nbroken line\n";
        let output = rewrite_with(input, "root");
        assert_eq!(output.accounts_changed, 1);
        assert_eq!(
            String::from_utf8(output.contents).unwrap(),
            "# comment\nroot:NEW[$6$abcdefgh$oldhash]:17000:0:99999:7:::\nbin:*:17000:0:99999:7:::\nbroken line\n"
        );
    }

    #[test]
    fn every_line_of_the_account_changes() {
        let output = rewrite_with(b"root:a:1::\nroot:b:2::\n", "root");
        assert_eq!(output.accounts_changed, 2);
        assert_eq!(output.contents, b"root:NEW[a]:1::\nroot:NEW[b]:2::\n");
    }

    #[test]
    fn endings_and_foreign_bytes_survive() {
        let input = b"user\xff:x:1::\r\nroot:h:1::\r\nlast:*:1::";
        let output = rewrite_with(input, "root");
        assert_eq!(output.contents, b"user\xff:x:1::\r\nroot:NEW[h]:1::\r\nlast:*:1::");
        let output = rewrite_with(b"root:h:1::", "root");
        assert_eq!(output.contents, b"root:NEW[h]:1::", "no newline added at the end");
    }

    #[test]
    fn an_absent_account_changes_nothing() {
        let input = b"admin:x:1::\n";
        assert_eq!(
            rewrite_with(input, "root"),
            Rewritten {
                contents: input.to_vec(),
                accounts_changed: 0
            }
        );
        let input = b"rootkit:x:1::\n#root:x:1::\nroot:\n";
        assert_eq!(rewrite_with(input, "root").accounts_changed, 0);
    }

    #[test]
    fn a_last_change_day_replaces_field_three_of_the_accounts_lines_only() {
        let day = Some(20_788);
        let input = b"root:h:17000:0:99999:7:::\nbin:*:0:0:99999:7:::\nalice:!::0:99999:7:::\r\nbob:x:0\r\ncarol:x:\n";
        let rewrite_day = |account| rewrite(input, account, &mut |old| Ok(format!("N{old}")), day).unwrap();
        assert_eq!(
            rewrite_day("root").contents,
            b"root:Nh:20788:0:99999:7:::\nbin:*:0:0:99999:7:::\nalice:!::0:99999:7:::\r\nbob:x:0\r\ncarol:x:\n"
        );
        // A forced change (0), an empty field, the last field of its line.
        assert!(
            rewrite_day("bin")
                .contents
                .starts_with(b"root:h:17000:0:99999:7:::\nbin:N*:20788:0:")
        );
        let alice = rewrite_day("alice").contents;
        assert!(alice.ends_with(b"alice:N!:20788:0:99999:7:::\r\nbob:x:0\r\ncarol:x:\n"));
        assert!(rewrite_day("bob").contents.ends_with(b"bob:Nx:20788\r\ncarol:x:\n"));
        assert!(rewrite_day("carol").contents.ends_with(b"carol:Nx:20788\n"));
    }

    #[test]
    fn hashing_errors_stop_the_rewrite() {
        let result = rewrite(b"root:x:1::\n", "root", &mut |_| Err("no".to_owned()), None);
        assert_eq!(result, Err("no".to_owned()));
    }
}

//! Where the update comes from: the argument of `agentupdate`, in either of
//! the forms Nova has sent (legacy-agent.md §3.6).

use guestward_sdk::{EXCERPT_CHARS, excerpt};
use serde_json::Value;

/// The update's URL and the checksums it must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub url: String,
    /// Lower-case hex, compared case-sensitively as the legacy agent did.
    pub md5: String,
    /// Optional (dict form only): checked too when given.
    pub sha256: Option<String>,
}

impl Source {
    /// Parse the request's value: the string `"<url>,<md5>"` (split at the
    /// first comma, as Nova has sent since 2013) or the older dict
    /// `{"url": …, "md5sum": …}`, which may also carry `"sha256"`.
    pub fn parse(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(text) => {
                let (url, md5) = text.split_once(',').ok_or("need more than 1 value to unpack")?;
                Ok(Self {
                    url: url.to_owned(),
                    md5: md5.to_owned(),
                    sha256: None,
                })
            }
            Value::Object(fields) => {
                let text = |key: &str| fields.get(key).and_then(Value::as_str).map(str::to_owned);
                let missing = || "Missing URL or MD5 sum in dictionary arguments".to_owned();
                Ok(Self {
                    url: text("url").ok_or_else(missing)?,
                    md5: text("md5sum").ok_or_else(missing)?,
                    sha256: text("sha256"),
                })
            }
            _ => Err("Invalid arguments".to_owned()),
        }
    }

    /// The file name the URL ends with; like the legacy agent, a URL whose
    /// last segment has no `.` is refused before anything is fetched.
    pub fn file_name(&self) -> Result<&str, String> {
        let name = self.url.rsplit('/').next().unwrap_or_default();
        if name.contains('.') {
            Ok(name)
        } else {
            Err("Invalid URL".to_owned())
        }
    }
}

/// Check the downloaded bytes against the given sums.
pub fn verify(source: &Source, body: &[u8]) -> Result<(), String> {
    use md5::Digest as _;
    let md5 = hex::encode(md5::Md5::digest(body));
    if md5 != source.md5 {
        let given = excerpt(&source.md5, EXCERPT_CHARS);
        return Err(format!("MD5 sums do not match ({given} != {md5})"));
    }
    if let Some(given) = &source.sha256 {
        let sha256 = hex::encode(sha2::Sha256::digest(body));
        if !given.eq_ignore_ascii_case(&sha256) {
            let given = excerpt(given, EXCERPT_CHARS);
            return Err(format!("SHA-256 sums do not match ({given} != {sha256})"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Source, verify};

    #[test]
    fn the_string_form_splits_at_the_first_comma() {
        let source = Source::parse(&json!("http://h/a,b.tar.gz,abc")).unwrap();
        assert_eq!(source.url, "http://h/a");
        assert_eq!(source.md5, "b.tar.gz,abc");
    }

    #[test]
    fn argument_errors_keep_the_legacy_texts() {
        let error = |value| Source::parse(&value).unwrap_err();
        assert_eq!(error(json!(5)), "Invalid arguments");
        assert_eq!(error(json!(null)), "Invalid arguments");
        assert_eq!(
            error(json!({"url": "x"})),
            "Missing URL or MD5 sum in dictionary arguments"
        );
        assert_eq!(
            error(json!({"md5sum": "x"})),
            "Missing URL or MD5 sum in dictionary arguments"
        );
        assert_eq!(error(json!("http://h/x.tar")), "need more than 1 value to unpack");
    }

    #[test]
    fn the_dict_form_may_carry_a_sha256() {
        let source = Source::parse(&json!({"url": "u", "md5sum": "m", "sha256": "s"})).unwrap();
        assert_eq!(source.sha256.as_deref(), Some("s"));
    }

    #[test]
    fn a_url_must_end_in_a_name_with_a_dot() {
        let source = |url: &str| Source {
            url: url.to_owned(),
            md5: String::new(),
            sha256: None,
        };
        assert_eq!(source("http://h/dir/agent.tar.gz").file_name().unwrap(), "agent.tar.gz");
        assert_eq!(
            source("http://h.example/dir/agent").file_name().unwrap_err(),
            "Invalid URL"
        );
        assert_eq!(source("http://h.example/").file_name().unwrap_err(), "Invalid URL");
    }

    #[test]
    fn sums_are_checked_like_the_legacy_agent() {
        // md5("abc") and sha256("abc").
        let md5 = "900150983cd24fb0d6963f7d28e17f72";
        let sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let source = |md5: &str, sha256: Option<&str>| Source {
            url: String::new(),
            md5: md5.to_owned(),
            sha256: sha256.map(str::to_owned),
        };
        verify(&source(md5, Some(sha256)), b"abc").unwrap();
        // MD5 compared case-sensitively, as before.
        assert_eq!(
            verify(&source(&md5.to_uppercase(), None), b"abc").unwrap_err(),
            format!("MD5 sums do not match ({} != {md5})", md5.to_uppercase())
        );
        assert!(
            verify(&source(md5, Some(&"0".repeat(64))), b"abc")
                .unwrap_err()
                .starts_with("SHA-256 sums do not match")
        );
        // A requester's huge sum is quoted short, so the reply fits its
        // limit and says what went wrong.
        for (md5, sha256) in [(&*"f".repeat(100_000), None), (md5, Some(&*"f".repeat(100_000)))] {
            let text = verify(&source(md5, sha256), b"abc").unwrap_err();
            assert!(text.len() < 400, "{} bytes", text.len());
        }
    }
}

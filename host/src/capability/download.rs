//! `download`: GET over HTTP(S) into memory, from the URL prefixes the
//! policy grants, capped in size, bounded by the call's deadline.
//!
//! URLs are compared after normalisation (host case, default ports, `..`
//! and `%2e%2e` segments), and prefixes end in `/`, so neither a look-alike
//! host nor a path trick leaves a grant. A path segment that would become a
//! separator or a dot segment once a server decodes it (`..%2f`, `%5c`,
//! `%2E%2E%2F`) is refused outright: many servers decode before they
//! resolve, and would serve a file outside the prefix. Redirects are
//! followed by hand, each checked against the grants the same way. TLS
//! certificates are checked against the system's trust store. The blocking client runs on tokio's blocking pool.

use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use ureq::tls::{RootCerts, TlsConfig};
use url::Url;
use wasmtime::component::{HasSelf, Linker};

use super::{CallInfo, Capability, Refusals, nothing_granted};
use crate::policy::{PolicyError, SectionErrors};
use crate::wit::download::{self as wit, Error};

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;
/// The longest URL a component may fetch (and a redirect may lead to): what
/// browsers and sitemaps accept. Error texts quote the URL, percent-encoded
/// (up to three times as long), and must fit a reply.
const MAX_URL_BYTES: usize = 2048;

/// The `download` capability: nothing shared between calls.
#[derive(Debug, Default)]
pub struct Download;

/// The URL prefixes a component may fetch from.
#[derive(Debug, PartialEq, Eq)]
pub struct DownloadGrant {
    prefixes: Vec<String>,
}

impl DownloadGrant {
    /// The normalised URL, if it lies inside a grant.
    fn check(&self, url: &str, component: &str) -> Result<Url, Error> {
        // First, and without quoting the URL: error texts may end up in
        // the component's reply, which has a size limit.
        if url.len() > MAX_URL_BYTES {
            let text = format!("a URL is at most {MAX_URL_BYTES} bytes, not {}", url.len());
            return Err(Error::Failed(text));
        }
        let parsed = Url::parse(url).map_err(|error| Error::Failed(format!("{url:?} is not a URL: {error}")))?;
        if let Some(segment) = smuggled_segment(&parsed) {
            return Err(Error::NotGranted(format!(
                "{parsed}: the path segment {segment:?} hides a separator or a dot segment in percent-encoding"
            )));
        }
        let allowed = matches!(parsed.scheme(), "http" | "https")
            && parsed.username().is_empty()
            && parsed.password().is_none()
            && self
                .prefixes
                .iter()
                .any(|prefix| parsed.as_str().starts_with(prefix.as_str()));
        if allowed {
            Ok(parsed)
        } else {
            Err(Error::NotGranted(format!(
                "{parsed} is outside the download grants of component {component}"
            )))
        }
    }
}

/// The first path segment that a server decoding the path would read as
/// more than one segment (an encoded `/` or `\`) or as `.`/`..`.
fn smuggled_segment(url: &Url) -> Option<String> {
    url.path_segments()?
        .find(|segment| {
            let decoded: Vec<u8> = percent_encoding::percent_decode_str(segment).collect();
            decoded.contains(&b'/') || decoded.contains(&b'\\') || decoded == b"." || decoded == b".."
        })
        .map(str::to_owned)
}

/// One call's downloads.
#[derive(Debug)]
pub struct CallDownload {
    grant: Option<Arc<DownloadGrant>>,
    component: String,
    max_bytes: u64,
    deadline: Duration,
    refusals: Refusals,
}

impl Capability for Download {
    const NAME: &'static str = "download";
    /// URL prefixes, each ending in `/`.
    type Config = Vec<Spanned<String>>;
    type Grant = DownloadGrant;
    type CallState = CallDownload;

    fn grant(prefixes: Vec<Spanned<String>>, errors: &SectionErrors<'_>) -> Result<Option<DownloadGrant>, PolicyError> {
        let prefixes = prefixes
            .iter()
            .map(|prefix| {
                normalize_url_prefix(prefix.get_ref()).map_err(|message| errors.at(prefix.span().start, message))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(DownloadGrant { prefixes }))
    }

    fn describe(grant: &DownloadGrant) -> Vec<String> {
        nothing_granted(grant.prefixes.clone(), "URL")
    }

    fn call_state(&self, grant: Option<&Arc<DownloadGrant>>, call: &CallInfo<'_>) -> CallDownload {
        CallDownload {
            grant: grant.cloned(),
            component: call.component.to_owned(),
            max_bytes: call.limits.download_bytes,
            deadline: call.limits.deadline,
            refusals: call.refusals.clone(),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut CallDownload,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallDownload>>(linker, get)
    }
}

/// A URL prefix: `http` or `https`, a host, no credentials, query or
/// fragment, a path ending in `/` (so that `https://a.example/` never
/// matches `https://a.example.evil/`); normalised as URLs are compared.
fn normalize_url_prefix(text: &str) -> Result<String, String> {
    let url = Url::parse(text).map_err(|error| format!("{text:?}: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{text:?}: only http and https URLs with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?}: no credentials, query or fragment in a prefix"));
    }
    if !url.path().ends_with('/') {
        return Err(format!("{text:?}: a prefix ends with '/'"));
    }
    Ok(url.to_string())
}

impl wit::Host for CallDownload {
    async fn fetch(&mut self, url: String, max_bytes: u64) -> Result<Vec<u8>, Error> {
        let Some(grant) = self.grant.clone() else {
            self.refusals.note(Download::NAME);
            return Err(Error::NotGranted(format!(
                "component {} has no download grant",
                self.component
            )));
        };
        let component = self.component.clone();
        let limit = max_bytes.min(self.max_bytes);
        let deadline = self.deadline;
        tracing::info!(component, "downloading");
        let outcome = tokio::task::spawn_blocking(move || fetch(&grant, &component, &url, limit, deadline))
            .await
            .unwrap_or_else(|error| Err(Error::Failed(format!("download failed: {error}"))));
        self.refusals.watch(Download::NAME, outcome)
    }
}

/// GET `url`, following granted redirects, keeping at most `limit` bytes.
fn fetch(grant: &DownloadGrant, component: &str, url: &str, limit: u64, deadline: Duration) -> Result<Vec<u8>, Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(deadline))
        .tls_config(TlsConfig::builder().root_certs(RootCerts::PlatformVerifier).build())
        .build()
        .into();
    let mut current = grant.check(url, component)?;
    for _ in 0..=MAX_REDIRECTS {
        let mut response = agent
            .get(current.as_str())
            .call()
            .map_err(|error| Error::Failed(format!("{current}: {error}")))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get("location")
                .and_then(|value| value.to_str().ok())
                .ok_or_else(|| Error::Failed(format!("{current}: HTTP {status} without a Location")))?;
            let next = current
                .join(location)
                .map_err(|error| Error::Failed(format!("{current}: bad redirect {location:?}: {error}")))?;
            current = grant.check(next.as_str(), component)?;
            continue;
        }
        if !status.is_success() {
            return Err(Error::Failed(format!("{current}: HTTP {status}")));
        }
        return response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|error| match error {
                ureq::Error::BodyExceedsLimit(_) => Error::TooLarge(format!("{current} is larger than {limit} bytes")),
                other => Error::Failed(format!("{current}: {other}")),
            });
    }
    Err(Error::Failed(format!("{url}: more than {MAX_REDIRECTS} redirects")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> DownloadGrant {
        DownloadGrant {
            prefixes: vec![
                "https://updates.example.com/agent/".into(),
                "http://127.0.0.1:8080/".into(),
            ],
        }
    }

    #[test]
    fn urls_must_lie_under_a_granted_prefix_after_normalisation() {
        let grant = grant();
        for url in [
            "https://updates.example.com/agent/bundle.tar",
            "HTTPS://UPDATES.example.com:443/agent/x",
            "http://127.0.0.1:8080/anything",
        ] {
            assert!(grant.check(url, "c").is_ok(), "{url}");
        }
        for url in [
            "https://updates.example.com/agent",
            "https://updates.example.com/agent/../secret",
            "https://updates.example.com/agent/%2e%2e/secret",
            "https://updates.example.com.evil.org/agent/x",
            "https://user@updates.example.com/agent/x",
            "http://updates.example.com/agent/x",
            "http://127.0.0.1:8081/x",
            "file:///etc/shadow",
        ] {
            assert!(matches!(grant.check(url, "c"), Err(Error::NotGranted(_))), "{url}");
        }
        assert!(matches!(grant.check("not a url", "c"), Err(Error::Failed(_))));
    }

    #[test]
    fn encoded_separators_and_dot_segments_are_refused() {
        let grant = grant();
        for url in [
            "https://updates.example.com/agent/..%2fsecret",
            "https://updates.example.com/agent/..%2Fsecret",
            "https://updates.example.com/agent/%2E%2E%2Fsecret",
            "https://updates.example.com/agent/%2e%2E%2f..%2fetc/shadow",
            "https://updates.example.com/agent/..%5csecret",
            "https://updates.example.com/agent/..%5Csecret",
            "https://updates.example.com/agent/a%2fb",
            "https://updates.example.com/agent/.%2e/secret",
            "https://updates.example.com/agent/x/%2e%2e/%2e%2e/secret",
            "http://127.0.0.1:8080/..%2f..%2fetc/passwd",
        ] {
            let error = grant.check(url, "c").unwrap_err();
            assert!(matches!(error, Error::NotGranted(_)), "{url}: {error:?}");
        }
        // Other encoded characters are fine.
        for url in [
            "https://updates.example.com/agent/bundle%201.2.tar",
            "https://updates.example.com/agent/%41gent.tar",
            "https://updates.example.com/agent/a..b/c.tar",
        ] {
            assert!(grant.check(url, "c").is_ok(), "{url}");
        }
        // Invalid escapes stay as they are: `%2e%2E%zz%4` decodes to
        // `..%zz%4`, a plain name, not a dot segment.
        assert!(
            grant
                .check("https://updates.example.com/agent/%2e%2E%zz%4", "c")
                .is_ok()
        );
    }

    #[test]
    fn prefixes_are_normalised_and_must_end_in_a_slash() {
        let policy = crate::capability::Policy::parse(
            "[component.d]\ndownload = [\"HTTPS://Updates.Example.com:443/agent/\"]\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            policy.component("d").grants.download.unwrap().prefixes,
            ["https://updates.example.com/agent/"]
        );
        for bad in [
            "https://example.com/agent",
            "ftp://example.com/",
            "https://user@example.com/",
            "https://e.com/?x=1",
            "/x/",
        ] {
            let text = format!("[component.d]\ndownload = [{bad:?}]\n");
            assert!(crate::capability::Policy::parse(&text, "t").is_err(), "{bad}");
        }
    }
}

//! `download`: only granted URL prefixes (redirects included), capped in
//! size, failures reported as such.

use std::collections::HashMap;

use guestward_tests::AgentBuilder;
use guestward_tests::http::{HttpServer, Response};

use crate::answer;
use crate::protocol::PROBE_POLICY;

fn server() -> HttpServer {
    let mut routes = HashMap::new();
    routes.insert("/granted/file".to_owned(), Response::Body(b"bundle bytes".to_vec()));
    routes.insert("/granted/big".to_owned(), Response::Body(vec![b'x'; 4096]));
    routes.insert(
        "/granted/cut".to_owned(),
        Response::Truncated {
            body: b"half".to_vec(),
            announced: 1000,
        },
    );
    routes.insert(
        "/granted/inside".to_owned(),
        Response::Redirect("/granted/file".to_owned()),
    );
    routes.insert(
        "/granted/outside".to_owned(),
        Response::Redirect("/secret/file".to_owned()),
    );
    routes.insert("/secret/file".to_owned(), Response::Body(b"secret".to_vec()));
    routes.insert(
        "/granted/encoded-outside".to_owned(),
        Response::Redirect("/granted/..%2fsecret/file".to_owned()),
    );
    HttpServer::start(routes)
}

fn fetch(agent: &guestward_tests::Agent, url: &str, max: u64) -> String {
    agent.call("fetch", &serde_json::json!({"url": url, "max": max}).to_string())
}

#[test]
fn downloads_stay_inside_their_grants() {
    let server = server();
    let policy = PROBE_POLICY.replace("download = [", &format!("download = [{:?}, ", server.url("/granted/")));
    let agent = AgentBuilder::new().component("probe").policy(&policy).start();
    assert_eq!(
        fetch(&agent, &server.url("/granted/file"), 1000),
        answer("12 bytes: bundle bytes", "0")
    );
    assert_eq!(
        fetch(&agent, &server.url("/granted/inside"), 1000),
        answer("12 bytes: bundle bytes", "0")
    );
    for refused in [
        server.url("/secret/file"),
        server.url("/granted/../secret/file"),
        server.url("/granted/outside"),
        "https://updates.example.com.evil.org/agent/x".to_owned(),
        "file:///etc/passwd".to_owned(),
    ] {
        let reply = fetch(&agent, &refused, 1000);
        assert!(reply.contains("NotGranted"), "{refused}: {reply}");
        assert!(!reply.contains("secret\""), "{reply}");
    }
    let too_big = fetch(&agent, &server.url("/granted/big"), 100);
    assert!(too_big.contains("TooLarge"), "{too_big}");
    let cut = fetch(&agent, &server.url("/granted/cut"), 10_000);
    assert!(cut.contains("Failed"), "{cut}");
    let missing = fetch(&agent, &server.url("/granted/missing"), 100);
    assert!(missing.contains("Failed") && missing.contains("404"), "{missing}");
}

#[test]
fn a_component_without_a_download_grant_cannot_import_it() {
    let policy = PROBE_POLICY.replace("download = [\"https://updates.example.com/agent/\"]", "");
    let agent = AgentBuilder::new().component("probe").policy(&policy).start();
    assert!(
        agent.log().contains("imports guestward:command/download@1.1.0"),
        "{}",
        agent.log()
    );
}

#[test]
fn encoded_separators_and_dot_segments_cannot_leave_a_grant() {
    // The server decodes the path before resolving it, as many do: each of
    // these reaches /secret/file unless the agent refuses it.
    let server = server();
    let policy = PROBE_POLICY.replace("download = [", &format!("download = [{:?}, ", server.url("/granted/")));
    let agent = AgentBuilder::new().component("probe").policy(&policy).start();
    for refused in [
        "/granted/..%2fsecret/file",
        "/granted/..%2Fsecret/file",
        "/granted/%2E%2E%2Fsecret/file",
        "/granted/%2e%2e%2fsecret/file",
        "/granted/..%5csecret/file",
        "/granted/..%5Csecret%5cfile",
        "/granted/.%2e/secret/file",
        "/granted/x/..%2f..%2fsecret/file",
        "/granted/encoded-outside",
    ] {
        let reply = fetch(&agent, &server.url(refused), 1000);
        assert!(reply.contains("NotGranted"), "{refused}: {reply}");
        assert!(!reply.contains("secret\""), "{refused}: {reply}");
    }
    // Encoded characters that are not separators stay allowed.
    assert!(
        fetch(&agent, &server.url("/granted/fil%65"), 1000).contains("12 bytes: bundle bytes"),
        "a plain encoded letter is not a separator"
    );
}

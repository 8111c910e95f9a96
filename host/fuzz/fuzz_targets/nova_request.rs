//! Whatever the hypervisor writes to `data/host/<id>`, parsing never panics,
//! and every outcome encodes to an answer of exactly the legacy shape: valid
//! JSON, ASCII only, `message` then `returncode`.
#![no_main]

use guestward::protocol::nova;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let reply = match nova::parse(data) {
        Ok(request) => nova::unknown_command(&request.name),
        Err(reply) => reply,
    };
    let answer = nova::encode(&reply);
    assert!(answer.is_ascii());
    assert!(answer.starts_with("{\"message\": \""));
    let decoded: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(decoded["message"].as_str(), Some(reply.message.as_str()));
    assert_eq!(decoded["returncode"].as_str(), Some(reply.code.as_str()));
});

//! `guest-info`: the agent's version and every QGA command it has loaded,
//! each enabled unless the operator turned it off.

use guestward_sdk::{agent, qga};
use serde_json::{Value, json};

/// Commands qemu-ga's schema marks `success-response: false`: they answer
/// nothing when they succeed.
const NO_SUCCESS_RESPONSE: &[&str] = &[
    "guest-shutdown",
    "guest-suspend-disk",
    "guest-suspend-ram",
    "guest-suspend-hybrid",
];

pub fn guest_info() -> Value {
    let disabled = agent::disabled_commands();
    let supported: Vec<Value> = agent::commands()
        .iter()
        .filter_map(|name| {
            let execute = name.strip_prefix(qga::PREFIX)?;
            Some(json!({
                "enabled": !disabled.contains(name),
                "name": execute,
                "success-response": !NO_SUCCESS_RESPONSE.contains(&execute),
            }))
        })
        .collect();
    json!({ "version": agent::version(), "supported_commands": supported })
}

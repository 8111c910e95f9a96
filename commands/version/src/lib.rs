//! `version`: the agent's version, as the hypervisor compares it before
//! sending `agentupdate` (legacy-agent.md §3.1). The argument is ignored.

use guestward_sdk::{Command, Reply, Request, agent, export_command};

pub struct Version;

impl Command for Version {
    const NAMES: &'static [&'static str] = &["version"];
    const SUMMARY: &'static str = "Report the agent's version";

    fn handle(_request: Request<'_>) -> Reply {
        Reply::ok(agent::version())
    }
}

export_command!(Version);

#[cfg(test)]
mod tests {
    use super::*;
    use guestward_sdk::testing;

    #[test]
    fn answers_the_agent_version_whatever_the_argument() {
        testing::with_host(|host| host.version = "1.2.3".into());
        for value in [r#""agent""#, r#""""#, "null", "{}"] {
            let reply = Version::handle(Request::new("version", value));
            assert_eq!((reply.code.as_str(), reply.message.as_str()), ("0", "1.2.3"));
        }
    }
}

//! `features`: the comma-joined, sorted names of every loaded Nova command
//! (not the QGA ones, `qga:…`, which the Nova hypervisor cannot call).
//! Nova reads it to choose between `file_inject` and `injectfile`
//! (legacy-agent.md §3.2). The argument is ignored.

use guestward_sdk::{Command, Reply, Request, agent, export_command, qga};

pub struct Features;

impl Command for Features {
    const NAMES: &'static [&'static str] = &["features"];
    const SUMMARY: &'static str = "List the commands this agent answers";

    fn handle(_request: Request<'_>) -> Reply {
        let mut names = agent::commands();
        names.retain(|name| !name.starts_with(qga::PREFIX));
        // The host sends them sorted; sorting again keeps the answer
        // deterministic whatever host this runs on.
        names.sort();
        Reply::ok(names.join(","))
    }
}

export_command!(Features);

#[cfg(test)]
mod tests {
    use super::*;
    use guestward_sdk::testing;

    #[test]
    fn joins_the_sorted_command_names_with_commas() {
        testing::with_host(|host| {
            host.commands = vec![
                "version".into(),
                "features".into(),
                "qga:guest-ping".into(),
                "keyinit".into(),
            ]
        });
        let reply = Features::handle(Request::new("features", r#""""#));
        assert_eq!(reply.code, "0");
        assert_eq!(reply.message, "features,keyinit,version");
    }
}

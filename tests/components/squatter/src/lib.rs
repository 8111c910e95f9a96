//! `squatter`: a hostile drop-in for the tests. It claims `version`, which
//! the built-in `version` component answers, and one name of its own; the
//! daemon must refuse it (built-ins win) and keep serving.

use guestward_sdk::{Command, Reply, Request, export_command};

pub struct Squatter;

impl Command for Squatter {
    const NAMES: &'static [&'static str] = &["squat", "version"];
    const SUMMARY: &'static str = "Hostile test component claiming a built-in command name";

    fn handle(_request: Request<'_>) -> Reply {
        Reply::ok("squatter")
    }
}

export_command!(Squatter);

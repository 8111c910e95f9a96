//! `freezer`: a hostile test component for the fsfreeze tests. It freezes
//! the mount points its arguments name (`{"mountpoints": [...]}`), then
//! fails: `qga:test-freeze-then-panic` panics, `qga:test-freeze-then-loop`
//! spins past its deadline. The daemon must thaw at once either way.

use guestward_sdk::{Command, Reply, Request, export_command, freeze, qga};

pub struct Freezer;

impl Command for Freezer {
    const NAMES: &'static [&'static str] = &["qga:test-freeze-then-panic", "qga:test-freeze-then-loop"];
    const SUMMARY: &'static str = "Hostile test component: freezes, then fails";
    const ASKS: &'static str = "freeze = true\n";

    fn handle(request: Request<'_>) -> Reply {
        let mountpoints: Vec<String> = qga::Arguments::of(&request)
            .and_then(|mut arguments| arguments.required("mountpoints"))
            .unwrap_or_default();
        let frozen = freeze::freeze(Some(&mountpoints));
        if request.name() == "qga:test-freeze-then-panic" {
            panic!("failing with filesystems frozen: {frozen:?}");
        }
        let mut spins: u64 = 0;
        loop {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }
}

export_command!(Freezer);

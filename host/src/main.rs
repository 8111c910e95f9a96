//! The `guestward` binary: the command line ([`cli`]) over the library,
//! which does everything else.

mod cli;

fn main() -> std::process::ExitCode {
    harden_process();
    cli::main()
}

/// The daemon holds secrets in memory (keyinit's keys, passwords in flight,
/// activation keys): never write them to a core file, and keep other
/// processes of the same user from reading its memory (`ptrace`,
/// `/proc/<pid>/mem`; its `/proc` files become root's). Done first, before
/// any secret exists; a failure is reported, not fatal (some sandboxes
/// forbid `prctl`).
fn harden_process() {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};

    let no_core = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(error) = setrlimit(Resource::Core, no_core) {
        eprintln!("guestward: warning: cannot turn core dumps off (RLIMIT_CORE): {error}");
    }
    if let Err(error) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        eprintln!("guestward: warning: cannot make the process non-dumpable (PR_SET_DUMPABLE): {error}");
    }
}

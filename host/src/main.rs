//! The `guestward` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    guestward::cli::main()
}

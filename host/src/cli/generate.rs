//! `guestward generate`: man pages and shell completions from the command
//! line's own definition, so they never disagree with `--help`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap_complete::Shell;

#[derive(Debug, clap::Subcommand)]
pub enum Generated {
    /// Man pages: guestward.8 and one page per subcommand
    /// (guestward-serve.8, …), written into DIR.
    Man {
        /// Where to write the pages.
        dir: PathBuf,
    },
    /// The completion script of SHELL, on stdout.
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// The daemon runs as root from /usr/sbin: its pages are in section 8.
const SECTION: &str = "8";

pub fn generate(what: Generated, command: clap::Command) -> anyhow::Result<ExitCode> {
    match what {
        Generated::Man { dir } => write_man_pages(command, &dir)?,
        Generated::Completion { shell } => {
            let mut command = command;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "guestward", &mut script);
            std::io::stdout()
                .write_all(&script)
                .context("cannot write the completion script")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One page for `command` and each of its subcommands, recursively, named
/// as man(1) finds them: `guestward-policy-check.8`.
fn write_man_pages(mut command: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Building gives each subcommand its display name, `guestward-policy-check`.
    command.build();
    write_page(&command, dir)
}

fn write_page(command: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    let name = command.get_display_name().unwrap_or_else(|| command.get_name());
    let path = dir.join(format!("{name}.{SECTION}"));
    let mut text = Vec::new();
    clap_mangen::Man::new(command.clone())
        .section(SECTION)
        .manual("Guestward")
        .source(concat!("guestward ", env!("CARGO_PKG_VERSION")))
        .render(&mut text)?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    // (clap's own `help` subcommands need no page.)
    let pages = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help");
    for sub in pages {
        write_page(sub, dir)?;
    }
    Ok(())
}

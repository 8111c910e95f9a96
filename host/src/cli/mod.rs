//! The `guestward` command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use std::sync::Arc;

use guestward::capability::xenstore::Xenstore;
use guestward::capability::{Capabilities, Policy};
use guestward::config::{self, ConfigFile};
use guestward::daemon::{self, DaemonSettings};
use guestward::exchange::qga::{self, QgaOptions, RpcFilter};
use guestward::exchange::socket;
use guestward::exchange::xenstore::ExchangeOptions;
use guestward::protocol::{Reply, nova};
use guestward::root::Root;
use guestward::runtime::{ComponentSource, Runtime, RuntimeOptions};
use guestward::status::StatusReport;
use guestward::trust::{self, TrustStore};
use guestward::xenstore::{Endpoint, XsClient};

use self::audit_file::AuditFile;

/// Guestward: a guest agent whose every command runs in a WebAssembly sandbox.
#[derive(Debug, Parser)]
#[command(name = "guestward", version, about, propagate_version = true)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace) or a tracing filter;
    /// the GUESTWARD_LOG environment variable overrides it.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: answer requests from XenStore and the local socket.
    Serve(Box<ServeArgs>),
    /// Send one request to a running agent over its local socket.
    Call {
        /// The agent's local socket.
        #[arg(long, default_value = config::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// The command name (`version`, `features`, …).
        name: String,
        /// The value: JSON if it parses as JSON, else taken as a string.
        value: Option<String>,
    },
    /// What the running agent is doing: its exchanges, its components and
    /// their grants, and each command's calls, failures and durations.
    Status {
        /// The agent's local socket.
        #[arg(long, default_value = config::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one command of one component in the sandbox, without a daemon.
    Run {
        /// The component (`.wasm`).
        #[arg(required_unless_present = "replay")]
        component: Option<PathBuf>,
        /// The command name.
        #[arg(required_unless_present = "replay")]
        name: Option<String>,
        /// The value: JSON if it parses as JSON, else taken as a string.
        value: Option<String>,
        /// Resolve every file under DIR instead of `/`.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The network interfaces, as a JSON file, instead of the machine's.
        #[arg(long)]
        interfaces: Option<PathBuf>,
        /// The policy to grant from (default: /etc/guestward/policy.toml
        /// if it exists, else the built-in policy).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Directory of policy drop-ins added on top of the policy.
        #[arg(long, default_value = config::DEFAULT_POLICY_DIR)]
        policy_dir: PathBuf,
        /// A xenbus device or xenstored socket for the `xenstore` interface.
        #[arg(long, conflicts_with = "xenstore_data")]
        xenstore: Option<PathBuf>,
        /// XenStore keys for the `xenstore` interface from a JSON file
        /// (`{"vm-data/hostname": "web", ...}`, keys relative to the
        /// domain) instead of a xenstored.
        #[arg(long)]
        xenstore_data: Option<PathBuf>,
        /// Run a reproducer written by `guestward fuzz` as the fuzzer ran it.
        #[arg(long, conflicts_with_all = ["component", "name", "value", "root", "interfaces", "xenstore", "xenstore_data"])]
        replay: Option<PathBuf>,
    },
    /// Fuzz a component in the sandbox: run it on mutated inputs and report
    /// traps, panics, limits hit and bad replies, each with a reproducer.
    Fuzz(fuzz::FuzzArgs),
    /// Write the man pages or a shell's completions, generated from this
    /// command line's own definition (`make install` uses it).
    Generate {
        #[command(subcommand)]
        what: generate::Generated,
    },
    /// Make a key pair for signing components: NAME.key (private, 0600)
    /// and NAME.pub (for the trusted-keys directory of the machines).
    Keygen {
        /// The key's name.
        name: String,
        /// Where to write the two files.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Sign components: write COMPONENT.wasm.sig next to each. A signature
    /// covers the component's bytes and its name (the file stem).
    Sign {
        /// The private key file (from `keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Sign for this component name instead of the file stem (the name
        /// it will be installed as; one component only).
        #[arg(long)]
        name: Option<String>,
        /// The components (`.wasm`).
        #[arg(required = true)]
        components: Vec<PathBuf>,
    },
    /// Say whether the daemon would run each component, under its name,
    /// and why.
    Verify {
        /// The trusted public keys.
        #[arg(long, default_value = trust::DEFAULT_TRUSTED_KEYS)]
        trusted_keys: PathBuf,
        /// The policy whose `signers` apply (default: the operator policy,
        /// else the built-in one).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Accept v1 signatures, which do not name the component.
        #[arg(long)]
        accept_v1_signatures: bool,
        /// The components (`.wasm`).
        #[arg(required = true)]
        components: Vec<PathBuf>,
    },
    /// Check a policy file and show what each component would be granted.
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Compile components into the cache, so that the daemon's first start
    /// is warm (`make install` and packages run this). Nothing is run; the
    /// daemon still checks every artifact when it loads it.
    Compile {
        /// Directory of command components (default: the built-in commands).
        #[arg(long)]
        commands: Option<PathBuf>,
        /// Another directory of command components (repeatable).
        #[arg(long)]
        extra_commands: Vec<PathBuf>,
        /// Directory of policy drop-ins added on top of the policy.
        #[arg(long, default_value = config::DEFAULT_POLICY_DIR)]
        policy_dir: PathBuf,
        /// Compiled-component cache (default /var/cache/guestward).
        #[arg(long, default_value = config::DEFAULT_CACHE)]
        cache: PathBuf,
        /// The policy the daemon runs with (its memory limits shape the engine).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Create a command crate NAME that builds, tests and signs out of the box.
    New {
        /// The command's name (and the crate's).
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        path: Option<PathBuf>,
        /// Depend on the SDK at PATH (with its version) instead of crates.io.
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Show what a component answers, imports and needs granted.
    Inspect {
        /// The component (`.wasm`).
        component: PathBuf,
        /// The policy to compare its imports with.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyAction {
    /// Validate FILE (default: the operator policy, else the built-in one)
    /// and show, for each component of the commands directory, what it
    /// would be granted, or why it would be refused.
    Check {
        file: Option<PathBuf>,
        /// Directory of policy drop-ins added on top of FILE.
        #[arg(long, default_value = config::DEFAULT_POLICY_DIR)]
        policy_dir: PathBuf,
        /// Directory of command components (default: the built-in commands).
        #[arg(long)]
        commands: Option<PathBuf>,
        /// The trusted public keys.
        #[arg(long, default_value = trust::DEFAULT_TRUSTED_KEYS)]
        trusted_keys: PathBuf,
        /// Accept v1 signatures, which do not name the component.
        #[arg(long)]
        accept_v1_signatures: bool,
    },
    /// Print the effective policy: FILE (default: the operator policy, else
    /// the built-in one) with the drop-ins of the policy directory on top,
    /// each entry with the file it comes from.
    Show {
        file: Option<PathBuf>,
        /// Directory of policy drop-ins added on top of FILE.
        #[arg(long, default_value = config::DEFAULT_POLICY_DIR)]
        policy_dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Configuration file (default: /etc/guestward/guestward.toml if it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The xenbus device or a xenstored socket (default: the guest's xenbus
    /// device when there is one; otherwise only the local socket is served).
    #[arg(long)]
    xenstore: Option<PathBuf>,
    /// Directory of command components (default: the built-in commands;
    /// this replaces them).
    #[arg(long)]
    commands: Option<PathBuf>,
    /// Another directory of command components, loaded beside the built-in
    /// ones (repeatable).
    #[arg(long)]
    extra_commands: Vec<PathBuf>,
    /// Operator policy (default: /etc/guestward/policy.toml if it exists,
    /// else the built-in policy).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Directory of policy drop-ins added on top of the policy (default
    /// /etc/guestward/policy.d).
    #[arg(long)]
    policy_dir: Option<PathBuf>,
    /// Act on DIR as if it were `/`: every file resolves inside it.
    #[arg(long)]
    root: Option<PathBuf>,
    /// The network interfaces, as a JSON file
    /// (`[{"name":"eth0","mac":"bc:76:4e:20:5e:b2","up":true}]`), instead
    /// of the machine's own: for `--root`.
    #[arg(long)]
    interfaces: Option<PathBuf>,
    /// Local socket (default /run/guestward/guestward.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Serve no local socket.
    #[arg(long, conflicts_with = "socket")]
    no_socket: bool,
    /// The virtio-serial port of the QEMU guest agent protocol (default
    /// /dev/virtio-ports/org.qemu.guest_agent.0 when it exists).
    #[arg(long)]
    qga_device: Option<PathBuf>,
    /// Serve no QGA port.
    #[arg(long, conflicts_with = "qga_device")]
    no_qga_device: bool,
    /// Also serve the QEMU guest agent protocol on this unix socket.
    #[arg(long)]
    qga_socket: Option<PathBuf>,
    /// Only these QGA commands run (comma-separated, as qemu-ga's
    /// `--allow-rpcs`).
    #[arg(long, value_delimiter = ',')]
    qga_allow_rpcs: Option<Vec<String>>,
    /// These QGA commands never run (comma-separated, as qemu-ga's
    /// `--block-rpcs`).
    #[arg(long, value_delimiter = ',')]
    qga_block_rpcs: Vec<String>,
    /// Thaw frozen filesystems after SECONDS when the host never thaws
    /// them (default 600).
    #[arg(long, value_name = "SECONDS")]
    freeze_timeout_seconds: Option<u64>,
    /// Compiled-component cache (default /var/cache/guestward).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Compile components at every start instead of caching them.
    #[arg(long, conflicts_with = "cache")]
    no_cache: bool,
    /// Runtime state that outlives a crash but not a reboot: a tmpfs
    /// (default /run/guestward, inside the root under --root).
    #[arg(long)]
    runtime_dir: Option<PathBuf>,
    /// Also append the audit records (one JSON line per call) to FILE.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Public keys whose signatures are trusted (default
    /// /etc/guestward/trusted-keys).
    #[arg(long)]
    trusted_keys: Option<PathBuf>,
    /// Run components from DIR even when unsigned (repeatable): for
    /// development directories only.
    #[arg(long)]
    allow_unsigned: Vec<PathBuf>,
    /// Accept v1 signatures, which sign a component's bytes but not its
    /// name (so a v1-signed component can be run under any name): only
    /// while re-signing older components.
    #[arg(long)]
    accept_v1_signatures: bool,
}

mod audit_file;
mod fuzz;
mod generate;
mod keys;
mod new;
mod policy_check;

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = init_logging(&cli) {
        return fail(&error);
    }
    // Two workers whatever the number of CPUs: enough for a busy command
    // not to hold up the exchanges, and a 64-vCPU guest does not pay 64
    // thread stacks and malloc arenas for an agent that is idle.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error.into()),
    };
    let code = match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => fail(&error),
    };
    if let Some(audit) = AUDIT_FILE.get() {
        audit.drain(AUDIT_DRAIN);
    }
    code
}

/// The audit file's writer, for the records still queued at exit.
static AUDIT_FILE: std::sync::OnceLock<AuditFile> = std::sync::OnceLock::new();

/// How long exit waits for queued audit records.
const AUDIT_DRAIN: Duration = Duration::from_secs(2);

/// The command's output, on stdout (logs go to stderr).
pub(crate) fn print_line(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn fail(error: &anyhow::Error) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "guestward: error: {}", error_chain(error));
    ExitCode::from(2)
}

/// An error and its causes on one line, without repeating a cause whose
/// text a message before it already includes (an OS error is often both
/// a typed error's source and part of its message).
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

/// Logs to stderr (text or JSON); with `serve --audit-log FILE`, the audit
/// records also go to FILE as JSON lines (mode 0600).
fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let default = match cli.command {
        Command::Serve(_) => "info",
        // An author running a command sees its own logs and output.
        Command::Run { .. } => "warn,guestward::command=info,guestward::component=debug",
        // The fuzzer reports what the calls' warnings would say, once per
        // finding instead of once per input.
        Command::Fuzz(_) => "error",
        _ => "warn",
    };
    let filter = std::env::var("GUESTWARD_LOG")
        .ok()
        .or_else(|| cli.log_level.clone())
        .unwrap_or_else(|| default.to_owned());
    let filter =
        tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let stderr = match (journal(), cli.log_format) {
        (Some(journal), _) => journal.with_filter(filter).boxed(),
        (None, LogFormat::Text) => stderr.with_filter(filter).boxed(),
        (None, LogFormat::Json) => stderr.json().with_filter(filter).boxed(),
    };
    let audit_log = match &cli.command {
        Command::Serve(args) => match &args.audit_log {
            Some(path) => Some(path.clone()),
            None => ConfigFile::load(args.config.as_deref())?.audit_log,
        },
        _ => None,
    };
    let mut still_opening = None;
    let audit = match &audit_log {
        Some(path) => {
            let (writer, opened) =
                AuditFile::open(path).with_context(|| format!("cannot open the audit log {}", path.display()))?;
            if opened == audit_file::Opened::Waiting {
                still_opening = Some(path);
            }
            let only_audit = tracing_subscriber::filter::Targets::new()
                .with_target(guestward::runtime::AUDIT_TARGET, tracing::Level::INFO);
            let _ = AUDIT_FILE.set(writer.clone());
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(writer)
                    .with_filter(only_audit),
            )
        }
        _ => None,
    };
    tracing_subscriber::registry().with(stderr).with(audit).init();
    if let Some(path) = still_opening {
        tracing::warn!(
            audit_log = %path.display(),
            "the audit log's filesystem takes no writes yet (frozen?): its records wait until it does"
        );
    }
    Ok(())
}

/// The journal, when systemd connected our stderr to it: every event
/// becomes a native entry whose fields (`COMPONENT`, `COMMAND`, `REQUEST`,
/// `CODE`, …) `journalctl` can match on, instead of a line of text.
fn journal() -> Option<tracing_journald::Layer> {
    let stream = std::env::var("JOURNAL_STREAM").ok()?;
    let stderr = rustix::fs::fstat(std::io::stderr()).ok()?;
    if !is_journal_stream(&stream, stderr.st_dev, stderr.st_ino) {
        return None;
    }
    let journal = tracing_journald::layer().ok()?;
    // Syslog's meaning of the levels (the crate's default makes info a
    // notice): `journalctl -p notice` shows warnings and worse.
    let priorities = tracing_journald::PriorityMappings {
        info: tracing_journald::Priority::Informational,
        debug: tracing_journald::Priority::Debug,
        ..tracing_journald::PriorityMappings::new()
    };
    Some(
        journal
            .with_field_prefix(None)
            .with_syslog_identifier("guestward".to_owned())
            .with_priority_mappings(priorities),
    )
}

/// `JOURNAL_STREAM` (`DEV:INODE`) names stderr: systemd sets it for the
/// service, and a process that inherited it with stderr elsewhere (a
/// terminal, a file) must not take it for its own.
fn is_journal_stream(stream: &str, dev: u64, ino: u64) -> bool {
    let Some((stream_dev, stream_ino)) = stream.split_once(':') else {
        return false;
    };
    stream_dev.parse() == Ok(dev) && stream_ino.parse() == Ok(ino)
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => {
            daemon::serve(serve_settings(*args)?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Call { socket, name, value } => {
            let answer = socket::call(&socket, &request_json(&name, value.as_deref())).await?;
            print_line(&answer);
            let reply: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
            Ok(exit_code(reply["returncode"].as_str().unwrap_or("")))
        }
        Command::Status { socket, json } => {
            let answer = socket::call(&socket, guestward::status::REQUEST).await?;
            let report: StatusReport = serde_json::from_str(&answer)
                .with_context(|| format!("the agent at {} did not answer with a status", socket.display()))?;
            match json {
                true => print_line(&serde_json::to_string_pretty(&report)?),
                false => print_line(report.to_string().trim_end()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            component,
            name,
            value,
            root,
            interfaces,
            policy,
            policy_dir,
            xenstore,
            xenstore_data,
            replay,
        } => match (replay, component, name) {
            (Some(file), _, _) => fuzz::replay(&file, policy).await,
            (None, Some(component), Some(name)) => {
                let machine = Machine { root, interfaces };
                let xenstore = match (xenstore, xenstore_data) {
                    (_, Some(file)) => XenstoreSource::Data(file),
                    (Some(path), None) => XenstoreSource::Connect(path),
                    (None, None) => XenstoreSource::None,
                };
                let policy = load_policy(policy.as_deref(), &policy_dir)?;
                run_one(&component, &name, value.as_deref(), machine, &policy, xenstore).await
            }
            _ => anyhow::bail!("run needs a component and a command name, or --replay FILE"),
        },
        Command::Fuzz(args) => fuzz::run(args).await,
        Command::Inspect { component, policy } => inspect(&component, policy).await,
        Command::Compile {
            commands,
            extra_commands,
            policy_dir,
            cache,
            policy,
        } => {
            let mut dirs = vec![commands.unwrap_or_else(config::default_commands_dir)];
            dirs.extend(extra_commands);
            compile(&dirs, &cache, &load_policy(policy.as_deref(), &policy_dir)?).await
        }
        Command::Generate { what } => generate::generate(what, <Cli as clap::CommandFactory>::command()),
        Command::Keygen { name, dir } => keys::keygen(&name, &dir),
        Command::New { name, path, sdk_path } => {
            new::new(&name, path, sdk_path.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign { key, name, components } => keys::sign(&key, name.as_deref(), &components),
        Command::Verify {
            trusted_keys,
            policy,
            accept_v1_signatures,
            components,
        } => {
            let policy = load_policy(policy.as_deref(), Path::new(config::DEFAULT_POLICY_DIR))?;
            let trust = trust_store(&trusted_keys, &[], accept_v1_signatures, &policy)?;
            keys::verify(&trust, &components)
        }
        Command::Policy {
            action:
                PolicyAction::Check {
                    file,
                    policy_dir,
                    commands,
                    trusted_keys,
                    accept_v1_signatures,
                },
        } => {
            let policy = load_policy(file.as_deref(), &policy_dir)?;
            let commands = commands.unwrap_or_else(config::default_commands_dir);
            let trust = trust_store(&trusted_keys, &[], accept_v1_signatures, &policy)?;
            policy_check::check(policy, &commands, trust).await
        }
        Command::Policy {
            action: PolicyAction::Show { file, policy_dir },
        } => {
            policy_check::show(&load_policy(file.as_deref(), &policy_dir)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve_settings(args: ServeArgs) -> anyhow::Result<DaemonSettings> {
    let file = ConfigFile::load(args.config.as_deref())?;
    let xenstore = args
        .xenstore
        .or(file.xenstore.clone())
        .map(|path| Endpoint::at(&path))
        .or_else(Endpoint::detect);
    let commands = match args.commands.or(file.commands.clone()) {
        Some(dir) => {
            // Said out loud: an operator adding commands wants
            // `extra-commands`, and may not know this drops the built-ins.
            tracing::info!(
                commands = %dir.display(),
                "the commands directory replaces the built-in commands (extra-commands adds to them)"
            );
            dir
        }
        None => config::default_commands_dir(),
    };
    let mut extra_commands = args.extra_commands;
    extra_commands.extend(file.extra_commands.iter().cloned());
    let policy_file = args.policy.or(file.policy.clone());
    let policy_dir = args
        .policy_dir
        .or(file.policy_dir.clone())
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_POLICY_DIR));
    let policy = load_policy(policy_file.as_deref(), &policy_dir)?;
    let root = args.root.or(file.root.clone()).unwrap_or_else(|| PathBuf::from("/"));
    let socket = args
        .socket
        .or(file.socket.clone())
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_SOCKET));
    let cache = args
        .cache
        .or(file.cache.clone())
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CACHE));
    let runtime_dir = runtime_dir(args.runtime_dir.or(file.runtime_dir.clone()), &root);
    // An empty path in the file turns the feature off, as the flags do.
    let unless = |off: bool, path: PathBuf| (!off && !path.as_os_str().is_empty()).then_some(path);
    let trusted_keys = args
        .trusted_keys
        .or(file.trusted_keys.clone())
        .unwrap_or_else(|| PathBuf::from(trust::DEFAULT_TRUSTED_KEYS));
    let mut allow_unsigned = args.allow_unsigned;
    allow_unsigned.extend(file.allow_unsigned.iter().cloned());
    let accept_v1 = args.accept_v1_signatures || file.accept_v1_signatures;
    let trust = trust_store(&trusted_keys, &allow_unsigned, accept_v1, &policy)?;
    let qga = QgaOptions {
        device: match args.qga_device.or(file.qga_device.clone()) {
            Some(device) => unless(args.no_qga_device, device),
            // QEMU's port, served when it appears (udev makes it after an
            // early start; never for a scratch root).
            None => Some(PathBuf::from(qga::DEFAULT_DEVICE)).filter(|_| !args.no_qga_device && root == Path::new("/")),
        },
        socket: args
            .qga_socket
            .or(file.qga_socket.clone())
            .and_then(|path| unless(false, path)),
        filter: RpcFilter {
            allow: args
                .qga_allow_rpcs
                .or(file.qga_allow_rpcs.clone())
                .map(|names| names.into_iter().collect()),
            block: args
                .qga_block_rpcs
                .into_iter()
                .chain(file.qga_block_rpcs.iter().cloned())
                .collect(),
        },
    };
    Ok(DaemonSettings {
        qga,
        trust,
        xenstore,
        commands,
        extra_commands,
        policy,
        policy_file,
        policy_dir,
        root,
        interfaces: args.interfaces.or(file.interfaces.clone()),
        socket: unless(args.no_socket, socket),
        cache: unless(args.no_cache, cache),
        runtime_dir,
        xenstore_timeout: file.xenstore_timeout(),
        freeze_timeout: args
            .freeze_timeout_seconds
            .map_or(file.freeze_timeout(), |seconds| Duration::from_secs(seconds.max(1))),
        exchange: ExchangeOptions {
            rescan: file.rescan(),
            drain: file.drain(),
            ..ExchangeOptions::default()
        },
    })
}

/// The runtime directory named, else the default inside `root`: a
/// scratch root keeps its state inside, never in the machine's.
fn runtime_dir(named: Option<PathBuf>, root: &Path) -> PathBuf {
    named.unwrap_or_else(|| root.join(config::DEFAULT_RUNTIME_DIR.trim_start_matches('/')))
}

/// The trusted keys, with the policy's signer pins.
fn trust_store(
    keys: &Path,
    allow_unsigned: &[PathBuf],
    accept_v1: bool,
    policy: &Policy,
) -> anyhow::Result<TrustStore> {
    let store = TrustStore::load(Some(keys), allow_unsigned)?
        .accept_v1_signatures(accept_v1)
        .with_signers(policy.signers());
    if accept_v1 {
        tracing::warn!("accepting v1 signatures: they do not bind a component's name");
    }
    Ok(store)
}

/// `guestward compile`: every component of the `dirs` into `cache`.
async fn compile(dirs: &[PathBuf], cache: &Path, policy: &Policy) -> anyhow::Result<ExitCode> {
    let options = RuntimeOptions {
        cache_dir: Some(cache.to_owned()),
        ..RuntimeOptions::for_policy(policy)
    };
    let runtime = Runtime::new(&options, Capabilities::new(Arc::new(Root::host()?), None, None))?;
    let mut components = Vec::new();
    for dir in dirs {
        components.extend(Runtime::read_dir(dir)?);
    }
    anyhow::ensure!(!components.is_empty(), "no components in {}", dirs[0].display());
    let mut failed = 0;
    for component in &components {
        let path = component.path.display();
        match runtime.compile_into_cache(component, policy).await {
            Ok(()) => print_line(&format!("compiled {path}")),
            Err(error) => {
                failed += 1;
                print_line(&format!("cannot compile {path}: {error:#}"));
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `path`, else the default operator policy if it exists, else the
/// built-in one; then the drop-ins of `dir` on top.
fn load_policy(path: Option<&Path>, dir: &Path) -> anyhow::Result<Policy> {
    let mut policy = match path {
        Some(path) => Policy::load(path)?,
        None if Path::new(config::DEFAULT_POLICY).exists() => Policy::load(Path::new(config::DEFAULT_POLICY))?,
        None => Policy::builtin(),
    };
    policy.add_layers_from(dir)?;
    Ok(policy)
}

/// `{"name": NAME, "value": VALUE}` with VALUE as JSON if it parses.
fn request_json(name: &str, value: Option<&str>) -> String {
    let mut request = serde_json::Map::new();
    request.insert("name".into(), name.into());
    if let Some(value) = value {
        let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
        request.insert("value".into(), value);
    }
    serde_json::Value::Object(request).to_string()
}

fn exit_code(code: &str) -> ExitCode {
    if Reply::new(code, "").is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What `run` and `inspect` act on: `/` or a `--root`, and where the
/// network interfaces come from.
#[derive(Debug, Default)]
struct Machine {
    root: Option<PathBuf>,
    interfaces: Option<PathBuf>,
}

/// Where `run` reads XenStore keys.
#[derive(Debug, Default)]
enum XenstoreSource {
    #[default]
    None,
    /// A xenbus device or xenstored socket.
    Connect(PathBuf),
    /// A JSON file of keys and values.
    Data(PathBuf),
}

async fn runtime_for(policy: &Policy, machine: Machine, xenstore: XenstoreSource) -> anyhow::Result<Runtime> {
    let root =
        Root::open(&machine.root.unwrap_or_else(|| PathBuf::from("/")))?.with_interfaces_file(machine.interfaces);
    let client = match &xenstore {
        XenstoreSource::Connect(path) => Some(XsClient::connect(Endpoint::at(path)).await?),
        XenstoreSource::None | XenstoreSource::Data(_) => None,
    };
    let mut capabilities = Capabilities::new(Arc::new(root), client, None);
    if let XenstoreSource::Data(file) = &xenstore {
        capabilities.xenstore = Xenstore::from_data(xenstore_data(file)?);
    }
    Runtime::new(&RuntimeOptions::for_policy(policy), capabilities)
}

/// A JSON object of XenStore keys (relative to the domain) and string
/// values.
fn xenstore_data(file: &Path) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a JSON object of XenStore keys and string values",
            file.display()
        )
    })
}

async fn run_one(
    path: &Path,
    name: &str,
    value: Option<&str>,
    machine: Machine,
    policy: &Policy,
    xenstore: XenstoreSource,
) -> anyhow::Result<ExitCode> {
    let runtime = runtime_for(policy, machine, xenstore).await?;
    let bytes = ComponentSource::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let component = runtime.load_bytes(&bytes, policy).await?;
    runtime.capabilities().agent.set_commands(component.info.names.clone());
    let request = request_json(name, value);
    let reply = match nova::parse(request.as_bytes()) {
        Ok(request) if component.info.names.contains(&request.name) => {
            runtime
                .call(&component, &request.name, request.value.get(), "run")
                .await
        }
        Ok(request) => nova::unknown_command(&request.name),
        Err(reply) => reply,
    };
    print_line(&nova::encode(&reply));
    Ok(exit_code(&reply.code))
}

async fn inspect(path: &Path, policy: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let policy = load_policy(policy.as_deref(), Path::new(config::DEFAULT_POLICY_DIR))?;
    let runtime = runtime_for(&Policy::parse("", "inspect")?, Machine::default(), XenstoreSource::None).await?;
    let bytes = ComponentSource::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let inspection = runtime
        .inspect(&bytes, &policy)
        .await
        .with_context(|| format!("cannot inspect {}", path.display()))?;
    print_line(inspection.to_string().trim_end());
    Ok(if inspection.refusal.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stream_that_is_stderr_counts_as_the_journal() {
        assert!(is_journal_stream("64769:1234", 64769, 1234));
        assert!(!is_journal_stream("64769:1234", 64769, 1235));
        assert!(!is_journal_stream("64768:1234", 64769, 1234));
        for garbage in ["", "64769", "64769:", ":1234", "a:b", "64769:1234:5", " 64769:1234"] {
            assert!(!is_journal_stream(garbage, 64769, 1234), "{garbage:?}");
        }
    }

    #[test]
    fn values_are_json_when_they_parse() {
        assert_eq!(request_json("version", None), r#"{"name":"version"}"#);
        assert_eq!(
            request_json("keyinit", Some("123")),
            r#"{"name":"keyinit","value":123}"#
        );
        assert_eq!(
            request_json("version", Some("agent")),
            r#"{"name":"version","value":"agent"}"#
        );
        assert_eq!(request_json("x", Some(r#"{"a":1}"#)), r#"{"name":"x","value":{"a":1}}"#);
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let os = std::io::Error::from_raw_os_error(2);
        let error = anyhow::Error::new(std::io::Error::new(os.kind(), format!("x.wasm: cannot read: {os}")))
            .context("cannot inspect x.wasm");
        assert_eq!(
            error_chain(&error),
            "cannot inspect x.wasm: x.wasm: cannot read: No such file or directory (os error 2)"
        );
        let error = anyhow::Error::new(os).context("cannot read x.wasm");
        assert_eq!(
            error_chain(&error),
            "cannot read x.wasm: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn the_runtime_directory_is_the_machines_or_inside_a_scratch_root() {
        assert_eq!(runtime_dir(None, Path::new("/")), Path::new("/run/guestward"));
        assert_eq!(
            runtime_dir(None, Path::new("/tmp/r")),
            Path::new("/tmp/r/run/guestward")
        );
        assert_eq!(
            runtime_dir(Some(PathBuf::from("/run/x")), Path::new("/tmp/r")),
            Path::new("/run/x")
        );
    }

    #[test]
    fn the_command_line_parses() {
        Cli::try_parse_from(["guestward", "serve", "--root", "/tmp/r", "--no-socket", "--no-cache"]).unwrap();
        assert!(Cli::try_parse_from(["guestward", "serve", "--socket", "/s", "--no-socket"]).is_err());
        Cli::try_parse_from(["guestward", "call", "version"]).unwrap();
        Cli::try_parse_from(["guestward", "run", "v.wasm", "version", "--root", "/x"]).unwrap();
        Cli::try_parse_from(["guestward", "inspect", "v.wasm"]).unwrap();
        Cli::try_parse_from(["guestward", "run", "--replay", "f.json"]).unwrap();
        assert!(Cli::try_parse_from(["guestward", "run", "v.wasm"]).is_err());
        Cli::try_parse_from(["guestward", "fuzz", "v.wasm", "version", "--runs", "5", "--seed", "1"]).unwrap();
        assert!(Cli::try_parse_from(["guestward", "fuzz", "v.wasm", "--runs", "5", "--time", "1"]).is_err());
    }
}

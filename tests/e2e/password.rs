//! keyinit and password: Nova's Diffie-Hellman password change end to end,
//! with the hypervisor side done as Nova does it (the real `openssl enc`),
//! and every resulting hash checked by an independent implementation
//! (libxcrypt's crypt(3), through Debian's Python).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use guestward_tests::{Agent, AgentBuilder};
use num_bigint::BigUint;

use crate::{Guest, answer};

/// The Nova agent protocol's Diffie-Hellman group (legacy-agent.md §3.3).
fn prime() -> BigUint {
    (BigUint::from(1u8) << 107u32) - 1u8
}

/// The hypervisor's half of the exchange, as Nova's `SimpleDH` does it.
struct Hypervisor {
    private: BigUint,
}

impl Hypervisor {
    fn new(seed: u64) -> Self {
        // An 80-bit private key, as Nova's (10 random bytes).
        Self {
            private: (BigUint::from(seed) << 16u32) + BigUint::from(0xbeefu32),
        }
    }

    fn public(&self) -> String {
        BigUint::from(5u8).modpow(&self.private, &prime()).to_string()
    }

    fn shared(&self, agent_public: &str) -> String {
        let theirs: BigUint = agent_public.parse().expect("the agent's public key is decimal");
        theirs.modpow(&self.private, &prime()).to_string()
    }
}

/// `openssl enc -aes-128-cbc -md md5 -nosalt -a -A -pass pass:<shared>`
/// over `password + "\n"`, exactly as Nova runs it.
fn nova_encrypt(shared: &str, password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["enc", "-aes-128-cbc", "-md", "md5", "-nosalt", "-a", "-A"])
        .arg(format!("-pass=pass:{shared}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end_matches('\n')
        .to_owned()
}

/// crypt(3) from libxcrypt (Debian's Python): does `password` match `hash`?
fn libxcrypt_verifies(password: &str, hash: &str) -> bool {
    let output = Command::new("/usr/bin/python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt,sys; sys.exit(0 if crypt.crypt(sys.argv[1], sys.argv[2]) == sys.argv[2] else 1)",
        ])
        .args([password, hash])
        .status()
        .expect("/usr/bin/python3");
    output.success()
}

fn message(answer: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(answer).unwrap();
    value["message"].as_str().unwrap().to_owned()
}

const SHADOW: &str = "# managed by hand\n\
bin:*:17000:0:99999:7:::\n\
root:ROOT_HASH:17000:0:99999:7:::\n\
daemon:*:17000:0:99999:7:::\n\
broken line\n\
alice:$6$saltsalt$Qf2Fhk8FiZq9P3rW0m0qwh1mJ6ZVh1q3kb3J9R3o2ZpY6l/JfE8N1j1P0gK8wL3qHBSjzN2n4WbRJ9gO6y9Ea.:17000:0:99999:7:::";

/// A root with `/etc/shadow` (root's hash `root_hash`, mode 0640) and,
/// optionally, `/etc/login.defs`.
fn prepare(agent: &Agent, root_hash: &str, login_defs: Option<&str>) -> String {
    let etc = agent.root().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let shadow = SHADOW.replace("ROOT_HASH", root_hash);
    std::fs::write(etc.join("shadow"), &shadow).unwrap();
    std::fs::set_permissions(etc.join("shadow"), std::fs::Permissions::from_mode(0o640)).unwrap();
    if let Some(text) = login_defs {
        std::fs::write(etc.join("login.defs"), text).unwrap();
    }
    shadow
}

fn root_hash(root: &Path) -> String {
    let shadow = std::fs::read_to_string(root.join("etc/shadow")).unwrap();
    let line = shadow
        .lines()
        .find(|line| line.starts_with("root:"))
        .expect("a root line");
    line.split(':').nth(1).unwrap().to_owned()
}

/// Nova's whole flow over the local socket: keyinit, then password.
fn change_password(agent: &Agent, password: &str) -> String {
    let hypervisor = Hypervisor::new(0x0123_4567_89ab_cdef);
    let reply = agent.call("keyinit", &format!("\"{}\"", hypervisor.public()));
    assert!(reply.ends_with(r#""returncode": "D0"}"#), "{reply}");
    let ciphertext = nova_encrypt(&hypervisor.shared(&message(&reply)), password);
    agent.call("password", &format!("\"{ciphertext}\""))
}

fn password_agent() -> Agent {
    AgentBuilder::new().start()
}

#[test]
fn the_nova_flow_through_xenstore_sets_the_root_password() {
    let guest = Guest::start(AgentBuilder::new());
    let before = prepare(
        &guest.agent,
        "$6$oldsaltt$Xl2P8d1yfyZ3tKjYQ3l0qVhHqYb2c0Xo8lUoXJm3Yb9aF0cYV0zD1R9mQ9Q0t6u1u2u3u4u5u6u7u8u9u0u1u2",
        None,
    );
    let owner = std::fs::metadata(guest.agent.root().join("etc/shadow")).unwrap().uid();
    let hypervisor = Hypervisor::new(0xfeed_face_cafe);
    let reply = guest.dom0.call(
        "k1",
        &format!(r#"{{"name":"keyinit","value":"{}"}}"#, hypervisor.public()),
    );
    assert!(reply.ends_with(r#""returncode": "D0"}"#), "{reply}");
    let ciphertext = nova_encrypt(&hypervisor.shared(&message(&reply)), "N3w-pa55 word");
    let reply = guest
        .dom0
        .call("p1", &format!(r#"{{"name":"password","value":"{ciphertext}"}}"#));
    assert_eq!(reply, answer("", "0"));

    let hash = root_hash(&guest.agent.root());
    assert!(
        hash.starts_with("$6$") && hash.split('$').nth(2).unwrap().len() == 8,
        "{hash}"
    );
    assert!(libxcrypt_verifies("N3w-pa55 word", &hash), "{hash}");
    // Every other line byte for byte; mode and owner kept.
    let after = std::fs::read_to_string(guest.agent.root().join("etc/shadow")).unwrap();
    let other = |text: &str| {
        text.lines()
            .filter(|line| !line.starts_with("root:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(other(&after), other(&before));
    assert_eq!(after.ends_with('\n'), before.ends_with('\n'));
    let meta = std::fs::metadata(guest.agent.root().join("etc/shadow")).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o640, owner));

    // The key is wiped on success: a second password needs a new keyinit.
    let again = guest
        .dom0
        .call("p2", &format!(r#"{{"name":"password","value":"{ciphertext}"}}"#));
    assert_eq!(again, answer("Password without key exchange", "500"));
}

#[test]
fn each_hash_scheme_and_its_parameters_are_kept() {
    let cases = [
        (
            "$y$j9T$abcdefghijklmnopqrstu.$0123456789012345678901234567890123456789012",
            "$y$j9T$",
        ),
        ("$6$rounds=10000$abcdefghijklmnop$hash", "$6$rounds=10000$"),
        ("$5$abcdefghijklmnop$hash", "$5$"),
        (
            "$2b$05$abcdefghijklmnopqrstuu0123456789012345678901234567890",
            "$2b$05$",
        ),
        (
            "$2y$04$abcdefghijklmnopqrstuu0123456789012345678901234567890",
            "$2y$04$",
        ),
        ("$1$abcdefgh$hash", "$1$"),
    ];
    for (old, prefix) in cases {
        let agent = password_agent();
        prepare(&agent, old, None);
        assert_eq!(change_password(&agent, "Tr0ub4dor&3"), answer("", "0"), "{old}");
        let hash = root_hash(&agent.root());
        assert!(hash.starts_with(prefix), "{old} became {hash}");
        assert_ne!(hash, old);
        assert!(libxcrypt_verifies("Tr0ub4dor&3", &hash), "libxcrypt rejects {hash}");
    }
}

#[test]
fn locked_and_empty_hashes_get_the_systems_default_scheme() {
    let cases = [
        ("!", Some("# Debian 12\nENCRYPT_METHOD YESCRYPT\n"), "$y$"),
        ("*", Some("ENCRYPT_METHOD SHA512\n"), "$6$"),
        ("", Some("ENCRYPT_METHOD MD5\n"), "$6$"),
        ("!$6$old$hash", None, "$6$"),
    ];
    for (old, login_defs, prefix) in cases {
        let agent = password_agent();
        prepare(&agent, old, login_defs);
        assert_eq!(change_password(&agent, "pw"), answer("", "0"), "{old:?}");
        let hash = root_hash(&agent.root());
        assert!(hash.starts_with(prefix), "{old:?} with {login_defs:?} became {hash}");
        assert!(libxcrypt_verifies("pw", &hash), "{hash}");
    }
}

#[test]
fn legacy_error_texts_are_exact() {
    let agent = password_agent();
    prepare(&agent, "$1$abcdefgh$hash", None);
    assert_eq!(
        agent.call("password", r#""kjadfkjaf""#),
        answer("Couldn't decode base64 data", "500")
    );
    assert_eq!(
        agent.call("password", r#""AAAAAAAAAAAAAAAAAAAAAA==""#),
        answer("Password without key exchange", "500")
    );
    assert_eq!(
        agent.call("keyinit", r#""abc""#),
        answer("invalid literal for long() with base 10: 'abc'", "500")
    );
    // A ciphertext made with another key: the padding check fails, and the
    // key is kept for a retry.
    let hypervisor = Hypervisor::new(7);
    let reply = agent.call("keyinit", &hypervisor.public());
    assert!(
        reply.ends_with(r#""returncode": "D0"}"#),
        "a JSON number works too: {reply}"
    );
    let wrong = nova_encrypt("123456789", "pw");
    assert_eq!(
        agent.call("password", &format!("\"{wrong}\"")),
        answer("Invalid password data received", "500")
    );
    let right = nova_encrypt(&hypervisor.shared(&message(&reply)), "pw");
    assert_eq!(agent.call("password", &format!("\"{right}\"")), answer("", "0"));
    assert!(libxcrypt_verifies("pw", &root_hash(&agent.root())));
}

#[test]
fn freebsd_rewrites_master_passwd_and_rebuilds_the_database() {
    let agent = password_agent();
    let etc = agent.root().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("master.passwd"),
        "root:$6$abcdefgh$old:0:0::0:0:Charlie &:/root:/bin/csh\ntoor:*:0:0::0:0:Bourne-again Superuser:/root:\n",
    )
    .unwrap();
    assert_eq!(change_password(&agent, "bsd"), answer("", "0"));
    let text = std::fs::read_to_string(etc.join("master.passwd")).unwrap();
    let hash = text.lines().next().unwrap().split(':').nth(1).unwrap();
    assert!(libxcrypt_verifies("bsd", hash), "{hash}");
    assert!(text.ends_with("toor:*:0:0::0:0:Bourne-again Superuser:/root:\n"));
    // Under --root the pwd_mkdb run is recorded, not carried out.
    let actions = std::fs::read_to_string(agent.root().join(".guestward/actions.log")).unwrap();
    assert!(
        actions.contains(r#"["/usr/sbin/pwd_mkdb","-p","/etc/master.passwd"]"#),
        "{actions}"
    );
}

#[test]
fn no_password_file_is_an_error() {
    let agent = password_agent();
    assert_eq!(
        change_password(&agent, "pw"),
        answer("Unknown password file format", "500")
    );
}

#[test]
fn no_secret_reaches_the_log_even_at_trace_level() {
    let agent = AgentBuilder::new().log_level("trace").start();
    prepare(&agent, "$6$abcdefgh$old", None);
    let password = "Sup3r-S3cret-Passw0rd";
    let hypervisor = Hypervisor::new(0x5eed);
    let reply = agent.call("keyinit", &format!("\"{}\"", hypervisor.public()));
    let shared = hypervisor.shared(&message(&reply));
    let ciphertext = nova_encrypt(&shared, password);
    assert_eq!(agent.call("password", &format!("\"{ciphertext}\"")), answer("", "0"));
    let log = agent.log();
    assert!(log.contains("TRACE"), "the log is at trace level");
    for secret in [password, &ciphertext, &shared, &hypervisor.private.to_string()] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
}

#[test]
fn killing_the_agent_while_it_sets_the_password_never_breaks_the_shadow_file() {
    use std::io::Write;
    use std::time::{Duration, Instant};

    const OLD_HASH: &str = "$y$j9T$abcdefghijklmnopqrstu.$0123456789012345678901234567890123456789012";
    // How long one password change takes here, to spread the kills over it.
    let agent = password_agent();
    prepare(&agent, OLD_HASH, None);
    let started = Instant::now();
    assert_eq!(change_password(&agent, "calibration"), answer("", "0"));
    let span = started.elapsed();
    drop(agent);

    let mut seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut next_random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut old, mut new) = (0, 0);
    for round in 0..40 {
        let agent = password_agent();
        let before = prepare(&agent, OLD_HASH, None);
        let password = format!("new-{round}");
        let hypervisor = Hypervisor::new(round);
        let reply = agent.call("keyinit", &format!("\"{}\"", hypervisor.public()));
        let ciphertext = nova_encrypt(&hypervisor.shared(&message(&reply)), &password);
        let mut stream = std::os::unix::net::UnixStream::connect(agent.socket()).unwrap();
        writeln!(stream, r#"{{"name":"password","value":"{ciphertext}"}}"#).unwrap();
        let delay = Duration::from_nanos(next_random() % (span.as_nanos() as u64 * 3 / 2 + 1));
        std::thread::sleep(delay);
        agent.kill();

        let after = std::fs::read_to_string(agent.root().join("etc/shadow"))
            .unwrap_or_else(|error| panic!("round {round}: /etc/shadow is gone: {error}"));
        if after == before {
            old += 1;
            continue;
        }
        let hash = root_hash(&agent.root());
        assert!(
            libxcrypt_verifies(&password, &hash),
            "round {round}: neither old nor new: {after}"
        );
        assert_eq!(
            after.replace(&hash, OLD_HASH),
            before,
            "round {round}: other lines changed"
        );
        new += 1;
    }
    println!("40 kills within {span:?} of the request: {old} left the old file, {new} the new one");
}

/// `files.lock` is an open file description lock: another component of the
/// same daemon holding `/etc/.pwd.lock` keeps `password` waiting, as an
/// outside `passwd` would (with per-process locks both held it at once).
#[test]
fn password_waits_for_the_lock_another_component_holds() {
    use std::time::{Duration, Instant};

    const HOLD_MS: u64 = 3000;
    let policy = format!(
        "{}\n[component.probe]\nfiles = [{{ path = \"/etc/.pwd.lock\", access = \"read-write\" }}]\n\
         xenstore = [\"vm-data\"]\nprograms = []\ndownload = []\n",
        guestward::policy::DEFAULT_POLICY
    );
    let agent = AgentBuilder::new().component("probe").policy(&policy).start();
    prepare(&agent, "$6$abcdefgh$old", None);
    let lock = agent.root().join("etc/.pwd.lock");
    std::thread::scope(|scope| {
        let holder = scope.spawn(|| {
            agent.call(
                "lock",
                &format!(r#"{{"path":"/etc/.pwd.lock","timeout-ms":0,"hold-ms":{HOLD_MS}}}"#),
            )
        });
        // Once the probe holds it, an outside lockf(3) is refused.
        let deadline = Instant::now() + Duration::from_secs(30);
        let probe_holds_it = || lock.exists() && !lockf_succeeds(&lock);
        while !probe_holds_it() {
            assert!(Instant::now() < deadline, "the probe never took the lock");
            std::thread::sleep(Duration::from_millis(20));
        }
        let asked = Instant::now();
        assert_eq!(change_password(&agent, "waited"), answer("", "0"));
        let waited = asked.elapsed();
        assert_eq!(holder.join().unwrap(), answer("locked", "0"));
        assert!(
            waited >= Duration::from_millis(HOLD_MS / 2),
            "password got the lock while the probe held it (answered after {waited:?})"
        );
    });
    assert!(libxcrypt_verifies("waited", &root_hash(&agent.root())));
}

/// Whether another process can take a `lockf(3)` write lock on `path` now.
fn lockf_succeeds(path: &Path) -> bool {
    Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import fcntl,sys; f=open(sys.argv[1],'w'); fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)",
        ])
        .arg(path)
        .status()
        .is_ok_and(|status| status.success())
}

//! The capability under `--root`, where freezing is simulated and
//! recorded: the state machine, the grants and the daemon's own thaws.
//! Real filesystems are frozen by the end-to-end tests (a loop mount).

use std::time::{Duration, Instant};

use super::*;
use crate::policy::Limits;
use crate::root::ACTIONS_LOG;

const MOUNTINFO_TEXT: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 0:21 / /proc rw,relatime shared:12 - proc proc rw
40 22 254:2 / /srv rw,relatime - xfs /dev/vdb rw
43 22 254:1 /srv /var/srv rw,relatime shared:1 - ext4 /dev/vda1 rw
";

struct Machine {
    dir: tempfile::TempDir,
    freeze: Freeze,
}

impl Machine {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/self")).unwrap();
        std::fs::write(dir.path().join(MOUNTINFO), MOUNTINFO_TEXT).unwrap();
        let freeze = Freeze::new(Arc::new(Root::open(dir.path()).unwrap()));
        Self { dir, freeze }
    }

    /// As the daemon starts: recording freezes in the root's runtime
    /// directory.
    async fn recording() -> Self {
        let machine = Self::new();
        machine.freeze.record_in(&machine.runtime_dir()).await;
        machine
    }

    fn runtime_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("run/guestward")
    }

    fn call(&self, granted: bool) -> CallFreeze {
        let limits = Limits::default();
        let info = CallInfo {
            component: "fsfreeze",
            command: "qga:guest-fsfreeze-freeze",
            request_id: "t",
            limits: &limits,
            deadline: Instant::now() + Duration::from_secs(5),
            refusals: &Refusals::default(),
        };
        self.freeze
            .call_state(granted.then(|| Arc::new(FreezeGrant)).as_ref(), &info)
    }

    fn actions(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join(ACTIONS_LOG))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

async fn status(call: &mut CallFreeze) -> FreezeStatus {
    wit::Host::status(call).await
}

#[tokio::test]
async fn a_freeze_takes_each_device_once_last_mounted_first_and_a_thaw_undoes_it() {
    let machine = Machine::new();
    let mut call = machine.call(true);
    assert_eq!(status(&mut call).await, FreezeStatus::Thawed);
    assert_eq!(wit::Host::freeze(&mut call, None).await.unwrap(), 2);
    assert_eq!(status(&mut call).await, FreezeStatus::Frozen);
    assert!(machine.freeze.frozen_flag().is_frozen());
    // /var/srv and / are one device: the last mounted stands for it.
    assert_eq!(
        machine.actions(),
        [serde_json::json!({"action": "fsfreeze-freeze", "mountpoints": ["/var/srv", "/srv"]})]
    );
    let again = wit::Host::freeze(&mut machine.call(true), None).await;
    assert!(matches!(again, Err(Error::AlreadyFrozen(_))), "{again:?}");
    assert_eq!(wit::Host::thaw(&mut call).await.unwrap(), 2);
    assert_eq!(status(&mut call).await, FreezeStatus::Thawed);
    assert_eq!(wit::Host::thaw(&mut call).await.unwrap(), 0);
    assert_eq!(
        machine.actions()[1]["mountpoints"],
        serde_json::json!(["/var/srv", "/srv"])
    );
}

#[tokio::test]
async fn a_list_freezes_exact_mount_points_only_and_ignores_the_rest() {
    let machine = Machine::new();
    let mut call = machine.call(true);
    for missed in [vec!["/srv/"], vec!["/nonexistent"], vec!["/proc"], vec![]] {
        let list = missed.iter().map(|dir| (*dir).to_owned()).collect();
        assert_eq!(wit::Host::freeze(&mut call, Some(list)).await.unwrap(), 0, "{missed:?}");
        assert_eq!(status(&mut call).await, FreezeStatus::Thawed, "{missed:?}");
    }
    let list = vec!["/srv".to_owned(), "/srv".to_owned(), "/elsewhere".to_owned()];
    assert_eq!(wit::Host::freeze(&mut call, Some(list)).await.unwrap(), 1);
    assert_eq!(
        machine.actions().last().unwrap()["mountpoints"],
        serde_json::json!(["/srv"])
    );
}

#[tokio::test]
async fn an_ungranted_call_is_refused_and_noted() {
    let machine = Machine::new();
    let mut call = machine.call(false);
    let error = wit::Host::freeze(&mut call, None).await.unwrap_err();
    assert!(
        matches!(&error, Error::NotGranted(text) if text == "component fsfreeze may not freeze filesystems"),
        "{error:?}"
    );
    assert!(matches!(wit::Host::thaw(&mut call).await, Err(Error::NotGranted(_))));
    assert_eq!(call.refusals.list(), ["freeze"]);
    assert!(machine.actions().is_empty());
}

#[tokio::test]
async fn nobody_thawing_thaws_after_the_timeout() {
    let machine = Machine::new();
    machine.freeze.set_timeout(Duration::from_millis(100));
    assert_eq!(wit::Host::freeze(&mut machine.call(true), None).await.unwrap(), 2);
    let until = Instant::now() + Duration::from_secs(10);
    while machine.freeze.frozen_flag().is_frozen() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!machine.freeze.frozen_flag().is_frozen());
    let thaw = machine.actions().pop().unwrap();
    assert_eq!(thaw["action"], "fsfreeze-thaw");
    assert!(thaw["reason"].as_str().unwrap().contains("nobody thawed"), "{thaw}");
}

#[tokio::test]
async fn a_timer_of_an_earlier_freeze_leaves_a_later_one_alone() {
    let machine = Machine::new();
    machine.freeze.set_timeout(Duration::from_millis(300));
    let mut call = machine.call(true);
    assert_eq!(wit::Host::freeze(&mut call, None).await.unwrap(), 2);
    assert_eq!(wit::Host::thaw(&mut call).await.unwrap(), 2);
    machine.freeze.set_timeout(Duration::from_secs(60));
    assert_eq!(wit::Host::freeze(&mut call, None).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(machine.freeze.frozen_flag().is_frozen());
}

#[tokio::test]
async fn a_failed_call_thaws_what_it_froze_and_nothing_else() {
    let machine = Machine::new();
    let mut froze = machine.call(true);
    assert_eq!(wit::Host::freeze(&mut froze, None).await.unwrap(), 2);
    // Another call failing (even one that tried to freeze) leaves it.
    let mut other = machine.call(true);
    assert!(wit::Host::freeze(&mut other, None).await.is_err());
    machine.freeze.thaw_after_failure(&other, "crashed").await;
    machine.freeze.thaw_after_failure(&machine.call(true), "deadline").await;
    assert!(machine.freeze.frozen_flag().is_frozen());
    machine.freeze.thaw_after_failure(&froze, "deadline").await;
    assert!(!machine.freeze.frozen_flag().is_frozen());
    let thaw = machine.actions().pop().unwrap();
    assert_eq!(thaw["reason"], "the call that froze them ended: deadline");
    // A freeze the failed call had not started yet never starts.
    let late = wit::Host::freeze(&mut froze, None).await;
    assert!(matches!(late, Err(Error::Failed(_))), "{late:?}");
    assert!(!machine.freeze.frozen_flag().is_frozen());
}

#[tokio::test]
async fn shutdown_and_the_last_reference_thaw() {
    let machine = Machine::new();
    assert_eq!(wit::Host::freeze(&mut machine.call(true), None).await.unwrap(), 2);
    machine.freeze.thaw_at_shutdown().await;
    assert!(!machine.freeze.frozen_flag().is_frozen());
    assert_eq!(machine.actions().pop().unwrap()["reason"], "the agent is stopping");

    let machine = Machine::new();
    assert_eq!(wit::Host::freeze(&mut machine.call(true), None).await.unwrap(), 2);
    let Machine { dir, freeze } = machine;
    drop(freeze);
    let log = std::fs::read_to_string(dir.path().join(ACTIONS_LOG)).unwrap();
    assert!(log.lines().last().unwrap().contains("the agent is stopping"), "{log}");
}

impl Machine {
    /// The freeze recorded for a successor.
    fn marker(&self) -> Option<marker::FreezeRecord> {
        Marker::in_dir(&self.runtime_dir()).read().unwrap()
    }

    /// The daemon killed (nothing thaws) and started again on the same
    /// root, taking over what it left.
    async fn killed_and_restarted(self, timeout: Duration) -> Self {
        let Machine { dir, freeze } = self;
        std::mem::forget(freeze);
        let freeze = Freeze::new(Arc::new(Root::open(dir.path()).unwrap()));
        freeze.set_timeout(timeout);
        let machine = Self { dir, freeze };
        machine.freeze.record_in(&machine.runtime_dir()).await;
        machine
    }
}

#[tokio::test]
async fn a_freeze_is_recorded_for_a_successor_until_it_is_thawed() {
    let machine = Machine::recording().await;
    assert_eq!(machine.marker(), None);
    let mut call = machine.call(true);
    assert_eq!(
        wit::Host::freeze(&mut call, Some(vec!["/nonexistent".to_owned()]))
            .await
            .unwrap(),
        0
    );
    assert_eq!(machine.marker(), None, "nothing frozen, nothing recorded");
    assert_eq!(wit::Host::freeze(&mut call, None).await.unwrap(), 2);
    let record = machine.marker().unwrap();
    assert_eq!(record.mountpoints, ["/var/srv", "/srv"]);
    let remaining = record.remaining();
    assert!(remaining <= crate::config::DEFAULT_FREEZE_TIMEOUT && remaining > Duration::from_secs(500));
    let marker = machine.runtime_dir().join(marker::MARKER);
    let mode = |path: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
    };
    assert_eq!((mode(&marker), mode(marker.parent().unwrap())), (0o600, 0o700));
    assert_eq!(wit::Host::thaw(&mut call).await.unwrap(), 2);
    assert_eq!(machine.marker(), None);
    // The daemon's own thaws forget it too.
    assert_eq!(wit::Host::freeze(&mut call, None).await.unwrap(), 2);
    machine.freeze.thaw_at_shutdown().await;
    assert_eq!(machine.marker(), None);
}

#[tokio::test]
async fn an_instance_started_after_a_kill_takes_the_freeze_over_until_the_host_thaws() {
    let machine = Machine::recording().await;
    assert_eq!(wit::Host::freeze(&mut machine.call(true), None).await.unwrap(), 2);
    let machine = machine.killed_and_restarted(Duration::from_secs(60)).await;
    let mut call = machine.call(true);
    assert_eq!(status(&mut call).await, FreezeStatus::Frozen);
    assert!(machine.freeze.frozen_flag().is_frozen());
    let again = wit::Host::freeze(&mut call, None).await;
    assert!(matches!(again, Err(Error::AlreadyFrozen(_))), "{again:?}");
    // A failing call of the new instance did not freeze them: it thaws
    // nothing.
    machine.freeze.thaw_after_failure(&machine.call(true), "deadline").await;
    assert!(machine.freeze.frozen_flag().is_frozen());
    assert_eq!(wit::Host::thaw(&mut call).await.unwrap(), 2);
    assert_eq!(status(&mut call).await, FreezeStatus::Thawed);
    assert_eq!(machine.marker(), None);
    let thaw = machine.actions().pop().unwrap();
    assert_eq!(
        thaw,
        serde_json::json!({"action": "fsfreeze-thaw", "mountpoints": ["/var/srv", "/srv"]})
    );
    // And a restart after that finds nothing to take over.
    let machine = machine.killed_and_restarted(Duration::from_secs(60)).await;
    assert!(!machine.freeze.frozen_flag().is_frozen());
}

#[tokio::test]
async fn a_taken_over_freeze_keeps_the_deadline_it_was_frozen_with() {
    let machine = Machine::new();
    // (Recorded by hand: a killed instance's own timer would not run.)
    let record = marker::FreezeRecord::due_in(vec!["/srv".to_owned()], Duration::from_millis(300));
    Marker::in_dir(&machine.runtime_dir()).write(&record).unwrap();
    // The successor's own timeout is long: the recorded deadline rules.
    let machine = machine.killed_and_restarted(Duration::from_secs(3600)).await;
    let until = Instant::now() + Duration::from_secs(10);
    while machine.freeze.frozen_flag().is_frozen() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!machine.freeze.frozen_flag().is_frozen());
    let thaw = machine.actions().pop().unwrap();
    assert!(
        thaw["reason"]
            .as_str()
            .unwrap()
            .contains("the deadline they were frozen with"),
        "{thaw}"
    );
    assert_eq!(machine.marker(), None);
}

#[tokio::test]
async fn a_marker_that_cannot_be_read_thaws_what_a_host_thaw_would() {
    let machine = Machine::new();
    let marker = machine.runtime_dir().join(marker::MARKER);
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(&marker, "{\"mountpoints\": [\"/srv\"").unwrap();
    let machine = machine.killed_and_restarted(Duration::from_secs(60)).await;
    assert!(!machine.freeze.frozen_flag().is_frozen());
    assert!(!marker.exists());
    assert_eq!(machine.actions().pop().unwrap()["action"], "fsfreeze-thaw");
    // A symlink is not followed.
    std::os::unix::fs::symlink("/etc/hostname", &marker).unwrap();
    assert!(Marker::in_dir(&machine.runtime_dir()).read().is_err());
}

#[tokio::test]
async fn a_root_without_a_mount_table_has_nothing_to_freeze_and_a_symlinked_one_is_refused() {
    let machine = Machine::new();
    std::fs::remove_file(machine.dir.path().join(MOUNTINFO)).unwrap();
    assert_eq!(wit::Host::freeze(&mut machine.call(true), None).await.unwrap(), 0);
    std::os::unix::fs::symlink("/proc/self/mountinfo", machine.dir.path().join(MOUNTINFO)).unwrap();
    let refused = wit::Host::freeze(&mut machine.call(true), None).await;
    assert!(
        matches!(&refused, Err(Error::Failed(text)) if text.starts_with("failed to read /proc/self/mountinfo: ")),
        "{refused:?}"
    );
}

#[test]
fn os_errors_read_as_qemu_ga_writes_them() {
    let error = std::io::Error::from(Errno::PERM);
    assert_eq!(strerror(&error), "Operation not permitted");
}

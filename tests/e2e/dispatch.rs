//! The dispatcher in-process, as the installer drives it: replacing a
//! component drops the old one's lane and, with it, the old compiled code.

use std::sync::Arc;

use guestward::capability::{Capabilities, Policy};
use guestward::dispatch::Dispatcher;
use guestward::protocol::nova;
use guestward::root::Root;
use guestward::runtime::{ComponentSource, Registry, Runtime, RuntimeOptions};
use guestward_tests::artifacts;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_updated_fifty_times_keeps_one_lane_and_drops_the_old_code() {
    let root = tempfile::tempdir().unwrap();
    let policy = Policy::builtin();
    let capabilities = Capabilities::new(Arc::new(Root::open(root.path()).unwrap()), None, None);
    let runtime = Arc::new(Runtime::new(&RuntimeOptions::for_policy(&policy), capabilities).unwrap());
    let bytes = ComponentSource::read(&artifacts::component("version")).unwrap();
    let first = runtime.load_bytes(&bytes, &policy).await.unwrap();
    let dispatcher = Dispatcher::new(runtime.clone(), Registry::build(vec![first]));
    let mut replaced = Vec::new();
    for round in 0..50 {
        // What the installer does with an update: load, swap the registry.
        let update = runtime.load_bytes(&bytes, &policy).await.unwrap();
        let registry = dispatcher.registry().with_replaced(vec![update]).unwrap();
        replaced.push(Arc::downgrade(&dispatcher.registry().components()[0]));
        dispatcher.replace_registry(registry);
        let request = nova::parse(br#"{"name": "version", "value": "agent"}"#).unwrap();
        let reply = dispatcher.submit(request, &format!("r{round}")).unwrap().await.unwrap();
        assert_eq!(reply.code, "0", "{reply:?}");
        assert_eq!(dispatcher.lane_count(), 1, "lanes after update {round}");
    }
    // An old lane ends once its queue is empty; give the tasks a moment.
    for _ in 0..100 {
        if replaced.iter().all(|old| old.upgrade().is_none()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let alive = replaced.iter().filter(|old| old.upgrade().is_some()).count();
    panic!("{alive} of 50 replaced components are still alive");
}

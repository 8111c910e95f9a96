//! Our XenStore client against the real xenstored: as dom0 on its socket,
//! and as a guest through the ring bridge.

use std::time::Duration;

use guestward::xenstore::{Endpoint, Errno, Error, XsClient, wire};
use guestward_tests::{GuestBridge, Xenstored};

use crate::DOMID;

struct Setup {
    dom0: XsClient,
    guest: XsClient,
    bridge: GuestBridge,
    _xenstored: Xenstored,
}

async fn setup() -> Setup {
    Xenstored::require_tools().unwrap_or_else(|missing| panic!("{missing}"));
    let xenstored = Xenstored::start().unwrap();
    let bridge = xenstored.guest(DOMID).unwrap();
    let dom0 = XsClient::connect(Endpoint::Socket(xenstored.socket().to_owned()))
        .await
        .unwrap();
    let guest = XsClient::connect(Endpoint::at(bridge.socket())).await.unwrap();
    Setup {
        dom0,
        guest,
        bridge,
        _xenstored: xenstored,
    }
}

fn home(relative: &str) -> String {
    format!("/local/domain/{DOMID}/{relative}")
}

#[tokio::test]
async fn reads_writes_and_lists_with_relative_paths_as_a_guest() {
    let setup = setup().await;
    setup
        .dom0
        .write(&home("vm-data/hostname"), b"test-server")
        .await
        .unwrap();
    assert_eq!(setup.guest.read("vm-data/hostname").await.unwrap(), b"test-server");
    setup.guest.write("data/guest/a", b"1").await.unwrap();
    setup.guest.write("data/guest/b", b"").await.unwrap();
    assert_eq!(setup.guest.directory("data/guest").await.unwrap(), ["a", "b"]);
    assert_eq!(setup.dom0.read(&home("data/guest/a")).await.unwrap(), b"1");
    setup.guest.rm("data/guest/a").await.unwrap();
    setup.guest.rm("data/guest/a").await.unwrap(); // removing a missing key is fine
    setup.guest.mkdir("data/host").await.unwrap();
    assert_eq!(
        setup.guest.get_domain_path(DOMID).await.unwrap(),
        home("").trim_end_matches('/')
    );
}

#[tokio::test]
async fn errors_are_typed() {
    let setup = setup().await;
    let missing = setup.guest.read("data/nothing-here").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    let denied = setup.guest.read("/local/domain/0/name").await;
    assert!(
        matches!(
            denied,
            Err(Error::Errno {
                errno: Errno::EACCES,
                ..
            })
        ),
        "{denied:?}"
    );
    let denied = setup.guest.write("vm-data/hostname", b"x").await;
    assert!(
        matches!(
            denied,
            Err(Error::Errno {
                errno: Errno::EACCES,
                ..
            })
        ),
        "{denied:?}"
    );
    let invalid = setup.dom0.read("a//b").await;
    assert!(
        matches!(
            invalid,
            Err(Error::Errno {
                errno: Errno::EINVAL,
                ..
            })
        ),
        "{invalid:?}"
    );
}

#[tokio::test]
async fn payloads_are_capped_at_4080_bytes_and_the_connection_survives() {
    // As dom0: guests have a node-size quota (2048 bytes by default).
    let setup = setup().await;
    let path = home("data/big");
    let room = wire::PAYLOAD_MAX - path.len() - 1;
    setup.dom0.write(&path, &vec![b'a'; room]).await.unwrap();
    assert_eq!(setup.dom0.read(&path).await.unwrap().len(), room);
    let too_big = setup.dom0.write(&path, &vec![b'a'; room + 1]).await;
    assert!(matches!(too_big, Err(Error::TooLarge { .. })), "{too_big:?}");
    assert_eq!(setup.dom0.read(&path).await.unwrap().len(), room);
}

#[tokio::test]
async fn a_guest_over_its_node_size_quota_gets_enospc() {
    let setup = setup().await;
    let refused = setup.guest.write("data/guest/big", &[b'a'; 3000]).await;
    assert!(
        matches!(
            refused,
            Err(Error::Errno {
                errno: Errno::ENOSPC,
                ..
            })
        ),
        "{refused:?}"
    );
    setup.guest.write("data/guest/big", &[b'a'; 1000]).await.unwrap();
}

#[tokio::test]
async fn transactions_apply_all_at_once_or_report_a_conflict() {
    let setup = setup().await;
    let transaction = setup.guest.transaction().await.unwrap();
    transaction.write("data/guest/t1", b"1").await.unwrap();
    transaction.write("data/guest/t2", b"2").await.unwrap();
    assert!(
        setup.guest.read("data/guest/t1").await.unwrap_err().is_not_found(),
        "invisible before commit"
    );
    assert!(transaction.commit().await.unwrap());
    assert_eq!(setup.guest.read("data/guest/t2").await.unwrap(), b"2");

    let transaction = setup.guest.transaction().await.unwrap();
    assert_eq!(transaction.read("data/guest/t1").await.unwrap(), b"1");
    transaction.write("data/guest/t1", b"mine").await.unwrap();
    setup.dom0.write(&home("data/guest/t1"), b"theirs").await.unwrap();
    assert!(
        !transaction.commit().await.unwrap(),
        "a conflicting write must make the commit fail"
    );
    assert_eq!(setup.guest.read("data/guest/t1").await.unwrap(), b"theirs");

    let transaction = setup.guest.transaction().await.unwrap();
    transaction.write("data/guest/t3", b"3").await.unwrap();
    transaction.abort().await.unwrap();
    assert!(setup.guest.read("data/guest/t3").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn watches_fire_at_once_and_on_every_change() {
    let setup = setup().await;
    let mut watch = setup.guest.watch("data/host").await.unwrap();
    assert_eq!(next(&mut watch).await, "data/host");
    setup.dom0.write(&home("data/host/42"), b"{}").await.unwrap();
    assert_eq!(next(&mut watch).await, "data/host/42");
    setup.dom0.rm(&home("data/host/42")).await.unwrap();
    assert_eq!(next(&mut watch).await, "data/host/42");
}

#[tokio::test]
async fn after_a_dropped_connection_the_client_reconnects_and_watches_fire_again() {
    let setup = setup().await;
    let mut watch = setup.guest.watch("data/host").await.unwrap();
    assert_eq!(next(&mut watch).await, "data/host");
    setup.bridge.drop_client();
    // The watch is registered again on the new connection, which fires it.
    assert_eq!(next(&mut watch).await, "data/host");
    setup.dom0.write(&home("data/host/after"), b"{}").await.unwrap();
    assert_eq!(next(&mut watch).await, "data/host/after");
    assert_eq!(setup.guest.read("data/host/after").await.unwrap(), b"{}");
}

#[tokio::test]
async fn requests_made_while_disconnected_wait_for_the_connection() {
    let setup = setup().await;
    setup.guest.write("data/guest/x", b"1").await.unwrap();
    setup.bridge.pause();
    setup.guest.drop_connection();
    let guest = setup.guest.clone();
    let pending = tokio::spawn(async move { guest.read("data/guest/x").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished(), "answered while disconnected?");
    setup.bridge.resume();
    let value = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(value, b"1");
}

#[tokio::test]
async fn permissions_can_be_read_and_set_by_dom0() {
    let setup = setup().await;
    setup.dom0.write(&home("vm-data/p"), b"v").await.unwrap();
    setup.dom0.set_perms(&home("vm-data/p"), &["n0", "r5"]).await.unwrap();
    assert_eq!(setup.dom0.get_perms(&home("vm-data/p")).await.unwrap(), ["n0", "r5"]);
}

async fn next(watch: &mut guestward::xenstore::Watch) -> String {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a watch event within 10 s")
        .expect("the client is alive")
}

//! Leader election against the mock API server: the Lease is read, created,
//! renewed conditionally, taken over and released, request by request.

use super::*;
use crate::kube::leader::{self, Elector, LeaseConfig, Role};

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/dynoscope-operator";

fn elector(client: Client) -> Elector {
    Elector::new(
        Api::namespaced(client, "ops"),
        LeaseConfig::new("dynoscope-operator", "pod-a", Duration::from_secs(15)),
    )
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_750_000_000 + seconds).unwrap()
}

fn lease(holder: Option<&str>, renewed: i64, version: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "dynoscope-operator", "namespace": "ops", "resourceVersion": version},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": at(0).to_string(), "renewTime": at(renewed).to_string(),
                 "leaseTransitions": 2}
    })
}

fn not_found() -> Value {
    api_error(
        404,
        "NotFound",
        "leases.coordination.k8s.io \"dynoscope-operator\" not found",
    )
}

#[tokio::test]
async fn leader_acquires_a_missing_lease() {
    let (client, mut server) = mock_client();
    let mut elector = elector(client);
    let api = async {
        server
            .expect(Method::GET, LEASE, StatusCode::NOT_FOUND, |_| not_found())
            .await;
        let created = server
            .expect(
                Method::POST,
                "/apis/coordination.k8s.io/v1/namespaces/ops/leases?",
                StatusCode::CREATED,
                Clone::clone,
            )
            .await;
        assert_eq!(created["spec"]["holderIdentity"], "pod-a");
        assert_eq!(created["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(created["spec"]["leaseTransitions"], 0);
        assert_eq!(created["metadata"]["name"], "dynoscope-operator");
    };
    let (role, ()) = tokio::join!(elector.step(at(1)), api);
    assert_eq!(role.unwrap(), Role::Leader);
}

#[tokio::test]
async fn leader_renews_its_lease_conditionally() {
    let (client, mut server) = mock_client();
    let mut elector = elector(client);
    let api = async {
        server
            .expect(Method::GET, LEASE, StatusCode::OK, |_| {
                lease(Some("pod-a"), 0, "41")
            })
            .await;
        let renewed = server
            .expect(
                Method::PUT,
                &format!("{LEASE}?"),
                StatusCode::OK,
                Clone::clone,
            )
            .await;
        assert_eq!(renewed["spec"]["holderIdentity"], "pod-a");
        assert_eq!(
            renewed["spec"]["renewTime"],
            json!(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                at(4)
            ))
        );
        assert_eq!(renewed["spec"]["leaseTransitions"], 2);
        // The write only succeeds if nobody wrote the Lease since it was read.
        assert_eq!(renewed["metadata"]["resourceVersion"], "41");
    };
    let (role, ()) = tokio::join!(elector.step(at(4)), api);
    assert_eq!(role.unwrap(), Role::Leader);
}

#[tokio::test]
async fn leader_loses_when_another_replica_took_the_lease() {
    let (client, mut server) = mock_client();
    let mut elector = elector(client);
    // Another replica holds a live Lease: follow, and write nothing.
    let api = async {
        server
            .expect(Method::GET, LEASE, StatusCode::OK, |_| {
                lease(Some("pod-b"), 3, "42")
            })
            .await;
        server.expect_nothing().await;
    };
    let (role, ()) = tokio::join!(elector.step(at(4)), api);
    assert_eq!(
        role.unwrap(),
        Role::Follower {
            holder: Some("pod-b".into())
        }
    );

    // Our renewal raced with another replica's write: the API server says 409.
    let (client, mut server) = mock_client();
    let mut elector = self::elector(client);
    let api = async {
        server
            .expect(Method::GET, LEASE, StatusCode::OK, |_| {
                lease(Some("pod-a"), 0, "43")
            })
            .await;
        server
            .expect(
                Method::PUT,
                &format!("{LEASE}?"),
                StatusCode::CONFLICT,
                |_| api_error(409, "Conflict", "the object has been modified"),
            )
            .await;
    };
    let (role, ()) = tokio::join!(elector.step(at(5)), api);
    assert_eq!(role.unwrap(), Role::Follower { holder: None });
}

#[tokio::test]
async fn follower_takes_over_a_lease_left_unrenewed() {
    let (client, mut server) = mock_client();
    let mut elector = elector(client);
    let api = async {
        // Seen at 0 and still the same record 15 s later, by our own clock.
        server
            .expect(Method::GET, LEASE, StatusCode::OK, |_| {
                lease(Some("pod-b"), 0, "50")
            })
            .await;
        server
            .expect(Method::GET, LEASE, StatusCode::OK, |_| {
                lease(Some("pod-b"), 0, "50")
            })
            .await;
        let taken = server
            .expect(
                Method::PUT,
                &format!("{LEASE}?"),
                StatusCode::OK,
                Clone::clone,
            )
            .await;
        assert_eq!(taken["spec"]["holderIdentity"], "pod-a");
        assert_eq!(taken["spec"]["leaseTransitions"], 3);
        assert_eq!(taken["metadata"]["resourceVersion"], "50");
    };
    let steps = async {
        let first = elector.step(at(100)).await.unwrap();
        let second = elector.step(at(115)).await.unwrap();
        (first, second)
    };
    let ((first, second), ()) = tokio::join!(steps, api);
    assert_eq!(
        first,
        Role::Follower {
            holder: Some("pod-b".into())
        }
    );
    assert_eq!(second, Role::Leader);
}

#[tokio::test]
async fn the_election_loop_leads_then_releases_on_shutdown() {
    let (client, mut server) = mock_client();
    let mut config = LeaseConfig::new("dynoscope-operator", "pod-a", Duration::from_secs(15));
    config.retry_period = Duration::from_millis(20);
    let elector = Elector::new(Api::namespaced(client, "ops"), config);
    let (leading_tx, mut leading) = tokio::sync::watch::channel(false);
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(Metrics::default());
    let election = tokio::spawn(leader::run(elector, leading_tx, shutdown, metrics.clone()));

    server
        .expect(Method::GET, LEASE, StatusCode::NOT_FOUND, |_| not_found())
        .await;
    server
        .expect(
            Method::POST,
            "/apis/coordination.k8s.io/v1/namespaces/ops/leases?",
            StatusCode::CREATED,
            Clone::clone,
        )
        .await;
    leading.wait_for(|l| *l).await.unwrap();
    assert!(metrics.is_leader());
    // Someone else holds it now (we were partitioned): stop reconciling.
    server
        .expect(Method::GET, LEASE, StatusCode::OK, |_| {
            lease(Some("pod-b"), 0, "60")
        })
        .await;
    leading.wait_for(|l| !*l).await.unwrap();
    assert!(!metrics.is_leader());
    // It expires later and we take it back: GET (same record) … eventually PUT.
    // Meanwhile SIGTERM: a follower has nothing to release.
    shutdown_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), election)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_election_loop_releases_the_lease_it_holds() {
    let (client, mut server) = mock_client();
    let mut config = LeaseConfig::new("dynoscope-operator", "pod-a", Duration::from_secs(15));
    config.retry_period = Duration::from_secs(60);
    let elector = Elector::new(Api::namespaced(client, "ops"), config);
    let (leading_tx, mut leading) = tokio::sync::watch::channel(false);
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let election = tokio::spawn(leader::run(
        elector,
        leading_tx,
        shutdown,
        Arc::new(Metrics::default()),
    ));
    server
        .expect(Method::GET, LEASE, StatusCode::OK, |_| {
            lease(Some("pod-a"), 0, "70")
        })
        .await;
    server
        .expect(
            Method::PUT,
            &format!("{LEASE}?"),
            StatusCode::OK,
            Clone::clone,
        )
        .await;
    leading.wait_for(|l| *l).await.unwrap();
    shutdown_tx.send(true).unwrap();
    server
        .expect(Method::GET, LEASE, StatusCode::OK, |_| {
            lease(Some("pod-a"), 1, "71")
        })
        .await;
    let released = server
        .expect(
            Method::PUT,
            &format!("{LEASE}?"),
            StatusCode::OK,
            Clone::clone,
        )
        .await;
    assert!(released["spec"]["holderIdentity"].is_null(), "{released}");
    assert_eq!(released["spec"]["leaseDurationSeconds"], 1);
    tokio::time::timeout(Duration::from_secs(5), election)
        .await
        .unwrap()
        .unwrap();
    assert!(!*leading.borrow());
}

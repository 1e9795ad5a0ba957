//! The Kubernetes watcher against the stub API server (`zt_tests::kube_api`), which speaks
//! the list and watch protocol over real HTTP: lists and pages, chunked watch streams,
//! bookmarks, 410 Gone, dropped connections and server errors. Objects are shaped as the
//! API server sends them (`tests/fixtures/kubernetes/`), managed fields and all.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use zt_agent::kubernetes::{
    Cluster, Resource, connection,
    http::Endpoint,
    watch::{WatchEnd, WatchStats, Watcher},
};
use zt_tests::{Scratch, StubApiServer, kube_api};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/kubernetes/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The stub's endpoint, read from the kubeconfig it hands out (the scratch directory goes
/// once it is read: the token is in the file, not referenced by it).
fn endpoint(stub: &StubApiServer) -> Endpoint {
    let scratch = Scratch::new("kube-watch").unwrap();
    let path = scratch.write("kubeconfig", stub.kubeconfig()).unwrap();
    connection::from_kubeconfig(&path).unwrap()
}

fn pod(name: &str, ip: &str, labels: Value) -> Value {
    let mut p = fixture("pod");
    p["metadata"]["name"] = json!(name);
    p["metadata"]["labels"] = labels;
    p["status"]["podIP"] = json!(ip);
    p["status"]["podIPs"] = json!([{"ip": ip}]);
    p
}

struct Setup {
    stub: StubApiServer,
    cluster: Arc<Cluster>,
    stats: Arc<WatchStats>,
    rt: tokio::runtime::Runtime,
}

fn setup() -> Setup {
    let stub = StubApiServer::local().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    Setup { stub, cluster: Arc::default(), stats: Arc::default(), rt }
}

impl Setup {
    fn watcher(&self, resource: Resource) -> Watcher {
        Watcher::new(endpoint(&self.stub), resource, self.cluster.clone(), self.stats.clone())
    }

    /// Starts a watcher for `resource` that lists and watches for ever.
    fn run(&self, resource: Resource) {
        let w = self.watcher(resource);
        self.rt.spawn(w.run());
    }

    fn text_of(&self, resource: Resource, key: &str) -> Option<String> {
        let prefix = format!("kubernetes:{}/{key}", resource.name());
        self.cluster.take().0.into_iter().find(|(n, _)| *n == prefix).map(|(_, t)| t)
    }

    fn wait(&self, what: &str, f: impl Fn(&Setup) -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("timed out waiting for {what}; requests: {:?}", self.stub.requests());
    }
}

#[test]
fn a_list_then_a_watch_follow_adds_updates_and_deletes() {
    let s = setup();
    s.stub.apply(kube_api::PODS, pod("a", "198.18.2.1", json!({"app": "web"})));
    s.run(Resource::Pods);
    s.wait("the listed pod", |s| s.cluster.len(Resource::Pods) == 1);
    s.wait("the watch", |s| s.stub.requests().iter().any(|r| r.contains("watch=1")));
    s.stub.apply(kube_api::PODS, pod("b", "198.18.2.2", json!({"app": "db"})));
    s.wait("the added pod", |s| s.cluster.len(Resource::Pods) == 2);
    s.stub.apply(kube_api::PODS, pod("b", "198.18.2.2", json!({"app": "cache"})));
    s.wait("the modified pod", |s| s.text_of(Resource::Pods, "shop/b").is_some_and(|t| t.contains("cache")));
    s.stub.delete(kube_api::PODS, "shop/a");
    s.wait("the deleted pod", |s| s.cluster.len(Resource::Pods) == 1);
    assert_eq!(s.stats.lists.load(Ordering::Relaxed), 1, "no relist was needed");
    let text = s.text_of(Resource::Pods, "shop/b").unwrap();
    assert!(!text.contains("managedFields") && text.contains("\"http\""), "trimmed, named ports kept: {text}");
}

#[test]
fn the_watch_asks_for_bookmarks_from_the_listed_version() {
    let s = setup();
    s.stub.apply(kube_api::NAMESPACES, fixture("namespace"));
    let listed = s.stub.version();
    s.run(Resource::Namespaces);
    let req = s.stub.wait_for_request(|r| r.contains("watch=1"), Duration::from_secs(5)).expect("a watch request");
    assert!(req.starts_with("/api/v1/namespaces?"), "{req}");
    assert!(req.contains("allowWatchBookmarks=true"), "{req}");
    assert!(req.contains(&format!("resourceVersion={listed}")), "{req}");
    assert!(s.stub.requests()[0].contains("limit="), "lists are paged: {:?}", s.stub.requests());
}

#[test]
fn a_bookmark_advances_the_resource_version_to_resume_from() {
    let s = setup();
    let mut w = s.watcher(Resource::NetworkPolicies);
    w.watch_timeout = Duration::from_secs(1);
    s.rt.block_on(w.list()).unwrap();
    let listed = w.resource_version().unwrap().to_string();
    let bookmarked = {
        let stub = &s.stub;
        std::thread::scope(|scope| {
            let h = scope.spawn(|| {
                stub.wait_for_request(|r| r.contains("watch=1"), Duration::from_secs(5)).expect("watching");
                stub.bookmark()
            });
            let end = s.rt.block_on(w.watch()).unwrap();
            assert_eq!(end, WatchEnd::Closed, "the server's timeout ends the watch");
            h.join().unwrap()
        })
    };
    assert_ne!(listed, bookmarked.to_string());
    assert_eq!(w.resource_version(), Some(bookmarked.to_string().as_str()));
    assert_eq!(s.stats.bookmarks.load(Ordering::Relaxed), 1);
    assert_eq!(s.cluster.len(Resource::NetworkPolicies), 0, "a bookmark is no object");
}

#[test]
fn a_410_gone_event_makes_the_watcher_list_again() {
    let s = setup();
    s.stub.apply(kube_api::PODS, pod("a", "198.18.2.1", json!({"app": "web"})));
    s.run(Resource::Pods);
    s.wait("the watch", |s| s.stub.requests().iter().any(|r| r.contains("watch=1")));
    s.stub.expire_watches();
    // Changed while the watcher had no history to resume from: only a list finds it.
    s.stub.apply(kube_api::PODS, pod("b", "198.18.2.2", json!({"app": "db"})));
    s.stub.delete(kube_api::PODS, "shop/a");
    s.wait("the relisted set", |s| s.cluster.len(Resource::Pods) == 1 && s.text_of(Resource::Pods, "shop/b").is_some());
    assert!(s.stats.gone.load(Ordering::Relaxed) >= 1);
    assert!(s.stats.lists.load(Ordering::Relaxed) >= 2, "listed again after 410");
}

#[test]
fn a_resume_from_a_compacted_version_gets_410_and_lists_again() {
    let s = setup();
    let mut w = s.watcher(Resource::Pods);
    s.rt.block_on(w.list()).unwrap();
    s.stub.apply(kube_api::PODS, pod("a", "198.18.2.1", json!({})));
    s.stub.compact();
    assert_eq!(s.rt.block_on(w.watch()).unwrap(), WatchEnd::Gone);
    assert_eq!(w.resource_version(), None, "the old version is forgotten");
    s.rt.block_on(w.list()).unwrap();
    assert_eq!(s.cluster.len(Resource::Pods), 1);
}

#[test]
fn a_dropped_watch_resumes_from_the_last_version_without_a_list() {
    let s = setup();
    s.run(Resource::Pods);
    s.wait("the watch", |s| s.stub.requests().iter().any(|r| r.contains("watch=1")));
    let seen = s.stub.apply(kube_api::PODS, pod("a", "198.18.2.1", json!({})));
    s.wait("the pod", |s| s.cluster.len(Resource::Pods) == 1);
    s.stub.drop_watches();
    s.wait("a second watch", |s| s.stub.requests().iter().filter(|r| r.contains("watch=1")).count() >= 2);
    let resumed = s.stub.requests().into_iter().filter(|r| r.contains("watch=1")).nth(1).unwrap();
    assert!(resumed.contains(&format!("resourceVersion={seen}")), "{resumed}");
    s.stub.apply(kube_api::PODS, pod("b", "198.18.2.2", json!({})));
    s.wait("the pod added after the drop", |s| s.cluster.len(Resource::Pods) == 2);
    assert_eq!(s.stats.lists.load(Ordering::Relaxed), 1, "a drop needs no relist");
}

#[test]
fn server_errors_are_retried_with_backoff_until_the_list_succeeds() {
    let s = setup();
    s.stub.apply(kube_api::NAMESPACES, fixture("namespace"));
    s.stub.fail_next(&[500, 503, 429]);
    let started = Instant::now();
    s.run(Resource::Namespaces);
    s.wait("the list after the errors", |s| s.cluster.len(Resource::Namespaces) == 1);
    assert_eq!(s.stats.errors.load(Ordering::Relaxed), 3);
    // 125-250 ms, 250-500 ms, 500-1000 ms.
    assert!(started.elapsed() >= Duration::from_millis(800), "backed off: {:?}", started.elapsed());
}

#[test]
fn events_split_across_chunks_are_joined() {
    let s = setup();
    s.stub.split_events(true);
    s.run(Resource::NetworkPolicies);
    s.wait("the watch", |s| s.stub.requests().iter().any(|r| r.contains("watch=1")));
    s.stub.apply(kube_api::NETWORK_POLICIES, fixture("networkpolicy"));
    s.wait("the policy", |s| s.cluster.len(Resource::NetworkPolicies) == 1);
    assert_eq!(s.stats.errors.load(Ordering::Relaxed), 0);
}

#[test]
fn a_long_list_is_read_page_by_page() {
    let s = setup();
    for i in 0..1200 {
        s.stub.apply(
            kube_api::PODS,
            pod(&format!("p{i}"), &format!("198.18.{}.{}", 4 + i / 250, 1 + i % 250), json!({})),
        );
    }
    let mut w = s.watcher(Resource::Pods);
    s.rt.block_on(w.list()).unwrap();
    assert_eq!(s.cluster.len(Resource::Pods), 1200);
    let pages = s.stub.requests().iter().filter(|r| r.contains("continue=")).count();
    assert_eq!(pages, 2, "500 + 500 + 200: {:?}", s.stub.requests());
}

#[test]
fn unauthorized_answers_name_the_token() {
    let stub = StubApiServer::local().unwrap();
    let scratch = Scratch::new("kube-watch").unwrap();
    let without_user = stub
        .kubeconfig()
        .replace("users:\n- name: agent\n  user: {token: stub-token}\n", "")
        .replace(", user: agent", "");
    let path = scratch.write("kubeconfig", without_user).unwrap();
    let endpoint = connection::from_kubeconfig(&path).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut w = Watcher::new(endpoint, Resource::Pods, Arc::default(), Arc::default());
    let e = rt.block_on(w.list()).unwrap_err().to_string();
    assert_eq!(e, "list /api/v1/pods: HTTP 401: Unauthorized; check the token");
}

#[test]
fn a_silent_watch_is_given_up_after_its_timeout_and_grace() {
    let s = setup();
    let mut w = s.watcher(Resource::Pods);
    w.watch_timeout = Duration::from_secs(1);
    w.watch_grace = Duration::from_millis(300);
    s.rt.block_on(w.list()).unwrap();
    s.stub.stall_watches(true);
    let started = Instant::now();
    let end = s.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), w.watch()).await });
    let end = end.expect("the watch did not hang").unwrap();
    assert_eq!(end, WatchEnd::Closed);
    assert!(started.elapsed() >= Duration::from_millis(1300), "{:?}", started.elapsed());
    assert!(w.resource_version().is_some(), "resumed from where it was, not relisted");
}

//! A stub Kubernetes API server that speaks the real list and watch protocol over
//! HTTP/1.1, for testing `zt-agent run --kubernetes` where no API server can run.
//!
//! What it does as the API server does:
//! - **List** `GET <collection>[?limit=N&continue=T]`: `{"kind": "<Kind>List", "metadata":
//!   {"resourceVersion", "continue"}, "items": [...]}`, items without `kind`/`apiVersion`
//!   (the API server leaves them out of list items too).
//! - **Watch** `GET <collection>?watch=1&resourceVersion=RV[&allowWatchBookmarks=true]
//!   [&timeoutSeconds=S]`: a chunked response of JSON lines `{"type": "ADDED" | "MODIFIED" |
//!   "DELETED" | "BOOKMARK" | "ERROR", "object": …}`, starting with every change after `RV`.
//!   One global resource version counts every change, as etcd's revision does.
//! - **410 Gone**: after [`StubApiServer::compact`], a watch from a version older than the
//!   compaction gets a `200` with one `ERROR` event whose `Status` has `code: 410`, as the
//!   API server answers "too old resource version".
//!
//! And what tests need to break it: [`StubApiServer::drop_watches`] cuts every open watch
//! mid-stream, [`StubApiServer::expire_watches`] sends the 410 ERROR event to open
//! watches, [`StubApiServer::fail_next`] answers the next requests with an error status,
//! [`StubApiServer::split_events`] writes every event across two chunks. Every request's
//! path is logged ([`StubApiServer::requests`]).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// The collections the stub serves, with the kind of their objects.
pub const COLLECTIONS: [(&str, &str, &str); 4] = [
    ("/api/v1/namespaces", "v1", "Namespace"),
    ("/api/v1/pods", "v1", "Pod"),
    ("/apis/networking.k8s.io/v1/networkpolicies", "networking.k8s.io/v1", "NetworkPolicy"),
    ("/apis/zt.dev/v1/policies", "zt.dev/v1", "Policy"),
];
pub const NAMESPACES: &str = COLLECTIONS[0].0;
pub const PODS: &str = COLLECTIONS[1].0;
pub const NETWORK_POLICIES: &str = COLLECTIONS[2].0;
pub const POLICIES: &str = COLLECTIONS[3].0;

struct Change {
    version: u64,
    collection: &'static str,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    version: u64,
    objects: BTreeMap<&'static str, BTreeMap<String, Value>>,
    changes: Vec<Change>,
    /// Watches from versions below this get 410.
    oldest: u64,
    /// Bumped to make every open watch stop: (generation, send 410 first).
    cut: (u64, bool),
    /// Bookmarks waiting to be sent: the version they carry, per generation.
    bookmark: u64,
    fail: Vec<u16>,
    split: bool,
    stall: bool,
    requests: Vec<String>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    stop: AtomicBool,
}

/// The running stub; stops on drop.
pub struct StubApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

fn key_of(object: &Value) -> String {
    let meta = &object["metadata"];
    match meta["namespace"].as_str() {
        Some(ns) => format!("{ns}/{}", meta["name"].as_str().unwrap_or("")),
        None => meta["name"].as_str().unwrap_or("").to_string(),
    }
}

fn collection(path: &str) -> Option<(&'static str, &'static str, &'static str)> {
    COLLECTIONS.iter().copied().find(|(p, _, _)| *p == path)
}

impl StubApiServer {
    /// Serves on `listener` (bind it inside a network namespace to serve there).
    pub fn start(listener: TcpListener) -> std::io::Result<StubApiServer> {
        let addr = listener.local_addr()?;
        let mut state = State { version: 1, ..State::default() };
        for (path, _, _) in COLLECTIONS {
            state.objects.insert(path, BTreeMap::new());
        }
        let shared = Arc::new(Shared { state: Mutex::new(state), wake: Condvar::new(), stop: AtomicBool::new(false) });
        let acceptor = shared.clone();
        listener.set_nonblocking(true)?;
        thread::Builder::new().name("stub-apiserver".into()).spawn(move || {
            while !acceptor.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let shared = acceptor.clone();
                        thread::spawn(move || {
                            let _ = stream.set_nonblocking(false);
                            let _ = serve(stream, &shared);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        })?;
        Ok(StubApiServer { addr, shared })
    }

    /// Serves on a fresh port of 127.0.0.1.
    pub fn local() -> std::io::Result<StubApiServer> {
        StubApiServer::start(TcpListener::bind("127.0.0.1:0")?)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig that points at the stub over plain HTTP with a token.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: stub\ncontexts:\n- name: stub\n  context: {{cluster: stub, user: agent}}\nclusters:\n- name: stub\n  cluster: {{server: 'http://{}'}}\nusers:\n- name: agent\n  user: {{token: stub-token}}\n",
            self.addr
        )
    }

    fn change(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.shared.state.lock().unwrap();
        f(&mut s);
        drop(s);
        self.shared.wake.notify_all();
    }

    /// Creates or replaces `object` in `collection` (ADDED or MODIFIED); returns its new
    /// resource version.
    pub fn apply(&self, collection_path: &'static str, mut object: Value) -> u64 {
        let mut version = 0;
        self.change(|s| {
            s.version += 1;
            version = s.version;
            object["metadata"]["resourceVersion"] = json!(version.to_string());
            let key = key_of(&object);
            let (_, api_version, kind) = collection(collection_path).expect("a served collection");
            let existed = s.objects.get_mut(collection_path).unwrap().insert(key, object.clone()).is_some();
            object["apiVersion"] = json!(api_version);
            object["kind"] = json!(kind);
            s.changes.push(Change {
                version,
                collection: collection_path,
                kind: if existed { "MODIFIED" } else { "ADDED" },
                object,
            });
        });
        version
    }

    /// Deletes the object `key` (`namespace/name` or `name`) of `collection` (DELETED).
    pub fn delete(&self, collection_path: &'static str, key: &str) {
        self.change(|s| {
            let Some(mut object) = s.objects.get_mut(collection_path).unwrap().remove(key) else { return };
            s.version += 1;
            object["metadata"]["resourceVersion"] = json!(s.version.to_string());
            let (_, api_version, kind) = collection(collection_path).expect("a served collection");
            object["apiVersion"] = json!(api_version);
            object["kind"] = json!(kind);
            let version = s.version;
            s.changes.push(Change { version, collection: collection_path, kind: "DELETED", object });
        });
    }

    /// Moves the version on without a change (as other resources' writes do) and sends a
    /// BOOKMARK with it to every watch that allows bookmarks; returns the version.
    pub fn bookmark(&self) -> u64 {
        let mut version = 0;
        self.change(|s| {
            s.version += 1;
            version = s.version;
            s.bookmark = version;
        });
        version
    }

    /// Forgets the change history: a watch from an older version gets 410 Gone.
    pub fn compact(&self) {
        self.change(|s| {
            s.oldest = s.version + 1;
            s.changes.clear();
        });
    }

    /// Cuts every open watch connection mid-stream, without a last chunk.
    pub fn drop_watches(&self) {
        self.change(|s| s.cut = (s.cut.0 + 1, false));
    }

    /// Compacts and sends every open watch an ERROR event with a 410 Status, then ends it.
    pub fn expire_watches(&self) {
        self.change(|s| {
            s.oldest = s.version + 1;
            s.changes.clear();
            s.cut = (s.cut.0 + 1, true);
        });
    }

    /// Answers the next requests with these HTTP statuses, one each.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.change(|s| s.fail.extend_from_slice(statuses));
    }

    /// Writes each watch event across two chunks (a client must join them).
    pub fn split_events(&self, split: bool) {
        self.change(|s| s.split = split);
    }

    /// Makes new watches hang silently: headers, then nothing, whatever `timeoutSeconds`
    /// says (a dead connection as a client sees it).
    pub fn stall_watches(&self, stall: bool) {
        self.change(|s| s.stall = stall);
    }

    /// Every request's path and query so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    /// Waits until some request matches `predicate`.
    pub fn wait_for_request(&self, predicate: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(r) = self.requests().into_iter().find(|r| predicate(r)) {
                return Some(r);
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// The current resource version.
    pub fn version(&self) -> u64 {
        self.shared.state.lock().unwrap().version
    }
}

impl Drop for StubApiServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
    }
}

fn query(path: &str) -> (&str, BTreeMap<&str, &str>) {
    match path.split_once('?') {
        None => (path, BTreeMap::new()),
        Some((p, q)) => (p, q.split('&').filter_map(|kv| kv.split_once('=')).collect()),
    }
}

fn respond(stream: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let text = body.to_string();
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

fn serve(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorized = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if line.to_ascii_lowercase().starts_with("authorization: bearer ") {
            authorized = true;
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or("").to_string();
    let failure = {
        let mut s = shared.state.lock().unwrap();
        s.requests.push(target.clone());
        (!s.fail.is_empty()).then(|| s.fail.remove(0))
    };
    if let Some(code) = failure {
        return respond(&mut stream, code, &status(code, "InternalError", "injected failure"));
    }
    if !authorized {
        return respond(&mut stream, 401, &status(401, "Unauthorized", "Unauthorized"));
    }
    let (path, params) = query(&target);
    let Some((path, api_version, kind)) = collection(path) else {
        return respond(&mut stream, 404, &status(404, "NotFound", "the server could not find the requested resource"));
    };
    if params.get("watch").is_some_and(|w| *w == "1" || *w == "true") {
        watch(stream, shared, path, &params)
    } else {
        list(&mut stream, shared, path, api_version, kind, &params)
    }
}

fn list(
    stream: &mut TcpStream,
    shared: &Shared,
    path: &'static str,
    api_version: &str,
    kind: &str,
    params: &BTreeMap<&str, &str>,
) -> std::io::Result<()> {
    let s = shared.state.lock().unwrap();
    let all: Vec<&Value> = s.objects[path].values().collect();
    let start: usize = params.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    let limit: usize = params.get("limit").and_then(|l| l.parse().ok()).filter(|l| *l > 0).unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(all.len());
    let mut metadata = json!({"resourceVersion": s.version.to_string()});
    if end < all.len() {
        metadata["continue"] = json!(end.to_string());
    }
    let body = json!({"kind": format!("{kind}List"), "apiVersion": api_version, "metadata": metadata, "items": all[start.min(end)..end]});
    drop(s);
    respond(stream, 200, &body)
}

fn chunk(stream: &mut TcpStream, line: &str, split: bool) -> std::io::Result<()> {
    let bytes = format!("{line}\n");
    let parts: Vec<&[u8]> = if split {
        vec![&bytes.as_bytes()[..bytes.len() / 2], &bytes.as_bytes()[bytes.len() / 2..]]
    } else {
        vec![bytes.as_bytes()]
    };
    for part in parts {
        write!(stream, "{:x}\r\n", part.len())?;
        stream.write_all(part)?;
        stream.write_all(b"\r\n")?;
        stream.flush()?;
    }
    Ok(())
}

fn watch(
    mut stream: TcpStream,
    shared: &Shared,
    path: &'static str,
    params: &BTreeMap<&str, &str>,
) -> std::io::Result<()> {
    let mut from: u64 = params.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let bookmarks = params.get("allowWatchBookmarks").is_some_and(|b| *b == "true" || *b == "1");
    let deadline =
        params.get("timeoutSeconds").and_then(|t| t.parse().ok()).map(|t| Instant::now() + Duration::from_secs(t));
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")?;
    let mut s = shared.state.lock().unwrap();
    if s.stall {
        drop(s);
        while !shared.stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(50));
        }
        return Ok(());
    }
    let cut = s.cut.0;
    let mut bookmark_sent = s.bookmark;
    let gone = json!({"type": "ERROR", "object": status(410, "Expired", &format!("too old resource version: {from} ({})", s.oldest))});
    if from < s.oldest.saturating_sub(1) {
        chunk(&mut stream, &gone.to_string(), false)?;
        return stream.write_all(b"0\r\n\r\n");
    }
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if s.cut.0 != cut {
            if s.cut.1 {
                let gone = json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version")});
                chunk(&mut stream, &gone.to_string(), s.split)?;
                return stream.write_all(b"0\r\n\r\n");
            }
            // Dropped: no last chunk, the connection just goes.
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        let split = s.split;
        let mut lines = Vec::new();
        for c in s.changes.iter().filter(|c| c.version > from && c.collection == path) {
            lines.push(json!({"type": c.kind, "object": c.object}).to_string());
        }
        if let Some(last) = s.changes.last() {
            from = from.max(last.version);
        }
        if bookmarks && s.bookmark != bookmark_sent {
            bookmark_sent = s.bookmark;
            lines.push(
                json!({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": bookmark_sent.to_string()}}})
                    .to_string(),
            );
        }
        if !lines.is_empty() {
            drop(s);
            for line in &lines {
                chunk(&mut stream, line, split)?;
            }
            s = shared.state.lock().unwrap();
            continue;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            drop(s);
            return stream.write_all(b"0\r\n\r\n");
        }
        s = shared.wake.wait_timeout(s, Duration::from_millis(100)).unwrap().0;
    }
}

//! The ZeroMQ transport: a real principal served on real sockets (tcp on 127.0.0.1 and ipc in
//! temp dirs), faces talking to it through `ZmqClient` and through raw sockets.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{Harness, workflow};
use bytes::Bytes;
use futures::StreamExt;
use opsconsole::principal::PrincipalHandle;
use opsconsole::protocol::api::{
    ApiErrorKind, BoxFuture, Client, ClientError, ClientExt, PROTOCOL_VERSION, Request, Response,
};
use opsconsole::protocol::zmq::{Endpoints, ZmqClient, ZmqError, serve};
use opsconsole::protocol::{Event, RunId, RunState, Stream, TaskState};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use zeromq::{DealerSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

/// Upper bound of every wait; only reached when something is broken.
const WAIT: Duration = Duration::from_secs(60);

/// Request timeout of the clients of a healthy principal.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {WAIT:?}"))
}

/// Forwards `Client` to a principal shared with the test, so that `serve` can hold it while
/// the test still calls it in-process and shuts it down at the end.
struct Shared(Arc<PrincipalHandle>);

impl Client for Shared {
    fn call(&self, request: Request) -> BoxFuture<'_, Result<Response, ClientError>> {
        self.0.call(request)
    }
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.subscribe()
    }
}

/// A principal in a temp data dir, served over ZeroMQ.
struct Served {
    harness: Harness,
    principal: Arc<PrincipalHandle>,
    endpoints: Endpoints,
    stop: CancellationToken,
}

impl Served {
    async fn start(docs: &[&str], listen: impl FnOnce(&Path) -> Endpoints) -> Served {
        Self::start_with(Harness::new(docs, 4), listen).await
    }

    async fn start_with(mut harness: Harness, listen: impl FnOnce(&Path) -> Endpoints) -> Served {
        let principal = Arc::new(harness.principal.take().expect("a running principal"));
        let stop = CancellationToken::new();
        let endpoints = serve(
            &listen(harness.dir.path()),
            Arc::new(Shared(principal.clone())),
            stop.clone(),
        )
        .await
        .expect("serving");
        Served {
            harness,
            principal,
            endpoints,
            stop,
        }
    }

    async fn client(&self) -> ZmqClient {
        ZmqClient::connect(&self.endpoints, CALL_TIMEOUT)
            .await
            .expect("valid endpoints")
    }

    /// Stops serving and waits until the server has let go of the principal.
    async fn stop_serving(&self) {
        self.stop.cancel();
        within("the server releasing the principal", async {
            while Arc::strong_count(&self.principal) > 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    /// Stops serving, then stops the principal.
    async fn shutdown(self) {
        self.stop_serving().await;
        let Served {
            harness, principal, ..
        } = self;
        let principal = Arc::try_unwrap(principal).unwrap_or_else(|_| panic!("still shared"));
        within("principal shutdown", principal.shutdown()).await;
        drop(harness);
    }
}

fn tcp_any_port() -> impl FnOnce(&Path) -> Endpoints {
    |_| Endpoints::from_listen("tcp://127.0.0.1:0").expect("listen address")
}

/// A TCP port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {endpoint}"))
}

fn talk_docs() -> Vec<String> {
    vec![
        workflow("talk", "", &[("t", r#"{ run: "seq 1 25" }"#)]),
        workflow("warm", "", &[("w", r#"{ run: "true" }"#)]),
    ]
}

/// Triggers short runs until events arrive, so that the SUB socket's subscription has
/// certainly reached the publisher (ZeroMQ's "slow joiner": a subscription takes effect a
/// moment after connecting, and events before that are not delivered).
async fn until_subscribed(client: &ZmqClient, events: &mut broadcast::Receiver<Event>) {
    for _ in 0..100 {
        let id = within("warm-up trigger", client.trigger("warm", BTreeMap::new()))
            .await
            .expect("warm-up accepted");
        let got = tokio::time::timeout(Duration::from_millis(300), events.recv()).await;
        within("warm-up run", client.wait(id))
            .await
            .expect("warm-up answered");
        if got.is_ok() {
            return;
        }
    }
    panic!("no event arrived over the SUB socket");
}

/// Everything a face does, over `served`'s sockets, checked against the in-process answers.
async fn round_trip(served: &Served) {
    let client = served.client().await;
    let mut events = client.subscribe();
    until_subscribed(&client, &mut events).await;

    let id = within("trigger", client.trigger("talk", BTreeMap::new()))
        .await
        .expect("trigger accepted");
    let outcome = within("wait", client.wait(id))
        .await
        .expect("wait answered")
        .expect("run known");
    assert_eq!(outcome.run_id, id);
    assert_eq!(outcome.state, RunState::Succeeded);
    assert!(outcome.failed_tasks.is_empty());

    let status = within("status", client.status()).await.expect("status");
    assert_eq!(status.pid, std::process::id());
    assert_eq!(status.slots, 4);
    let mut names: Vec<_> = status.workflows.iter().map(|w| w.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["talk", "warm"]);
    assert!(status.workflows.iter().all(|w| w.active_runs.is_empty()));
    let local = served.principal.status().await.expect("in-process status");
    assert_eq!(status.started_at, local.started_at);
    assert_eq!(status.workflows, local.workflows);

    // History answers carry a list of runs.
    let history = Request::History {
        workflow: Some("talk".into()),
        limit: 10,
    };
    let Ok(Response::Runs { runs }) = within("history", client.call(history.clone())).await else {
        panic!("history answered with runs");
    };
    let Ok(Response::Runs { runs: local_runs }) = served.principal.call(history).await else {
        panic!("in-process history");
    };
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run_id, id);
    assert_eq!(runs[0].workflow, "talk");
    assert_eq!(runs[0].state, RunState::Succeeded);
    let without_duration = |mut r: opsconsole::protocol::history::RunSummary| {
        r.duration_secs = r.duration_secs.map(|d| (d * 1000.0).round());
        r
    };
    assert_eq!(
        runs.into_iter().map(without_duration).collect::<Vec<_>>(),
        local_runs
            .into_iter()
            .map(without_duration)
            .collect::<Vec<_>>()
    );

    // Output in pages of 10.
    let mut lines = Vec::new();
    let mut pages = 0;
    loop {
        let page = Request::Logs {
            run_id: id,
            task: None,
            stream: None,
            offset: lines.len(),
            limit: 10,
            from_end: false,
        };
        let Ok(Response::Lines {
            lines: got, more, ..
        }) = within("logs", client.call(page)).await
        else {
            panic!("a page of lines");
        };
        pages += 1;
        lines.extend(got.into_iter().map(|l| l.line));
        if !more {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(lines, (1..=25).map(|i| i.to_string()).collect::<Vec<_>>());
    let stderr = Request::Logs {
        run_id: id,
        task: Some("t".into()),
        stream: Some(Stream::Stderr),
        offset: 0,
        limit: 10,
        from_end: false,
    };
    assert!(matches!(
        within("stderr logs", client.call(stderr)).await,
        Ok(Response::Lines { lines, more: false, .. }) if lines.is_empty()
    ));

    // Errors travel as they do in-process.
    let missing = Request::Logs {
        run_id: RunId(999_999),
        task: None,
        stream: None,
        offset: 0,
        limit: 10,
        from_end: false,
    };
    assert!(matches!(
        within("missing logs", client.call(missing)).await,
        Ok(Response::Error(e)) if e.kind == ApiErrorKind::NotFound
    ));
    let unknown = within("unknown trigger", client.trigger("nope", BTreeMap::new())).await;
    assert!(
        matches!(&unknown, Err(ClientError::Api(e)) if e.kind == ApiErrorKind::InvalidInput && e.message.contains("nope")),
        "{unknown:?}"
    );
    // A run the principal does not know ends with no outcome.
    assert_eq!(
        within("wait unknown", client.wait(RunId(999_999)))
            .await
            .expect("answered"),
        None
    );
    assert!(
        !within("cancel unknown", client.cancel(RunId(999_999)))
            .await
            .expect("answered")
    );

    // The run's events arrived over the SUB socket, in order.
    let mut created = false;
    let mut task_states = Vec::new();
    let mut run_states = Vec::new();
    let mut logged = Vec::new();
    within("the run's events", async {
        while !(run_states
            .last()
            .is_some_and(|s: &RunState| s.is_terminal())
            && logged.len() >= 25)
        {
            match events.recv().await {
                Ok(Event::RunCreated {
                    run_id, workflow, ..
                }) if run_id == id => {
                    assert_eq!(&*workflow, "talk");
                    created = true;
                }
                Ok(Event::TaskState { key, state, .. }) if key.run_id == id => {
                    assert_eq!(&*key.task, "t");
                    task_states.push(state);
                }
                Ok(Event::RunState { run_id, state, .. }) if run_id == id => run_states.push(state),
                Ok(Event::Logs(batch)) if batch.key.run_id == id => {
                    assert_eq!(batch.stream, Stream::Stdout);
                    logged.extend(batch.lines.iter().map(|l| l.text.clone()));
                }
                Ok(_) => {}
                Err(e) => panic!("event stream: {e}"),
            }
        }
    })
    .await;
    assert!(created, "RunCreated published");
    assert!(task_states.contains(&TaskState::Running), "{task_states:?}");
    assert_eq!(task_states.last(), Some(&TaskState::Succeeded));
    assert_eq!(run_states.last(), Some(&RunState::Succeeded));
    assert_eq!(logged, (1..=25).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_answers_and_events_round_trip_over_tcp() {
    let docs = talk_docs();
    let docs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let served = Served::start(&docs, tcp_any_port()).await;
    let (requests, events) = (
        port_of(&served.endpoints.requests),
        port_of(&served.endpoints.events),
    );
    assert!(requests != 0 && events != 0 && requests != events);
    assert!(served.endpoints.requests.starts_with("tcp://127.0.0.1:"));

    round_trip(&served).await;
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_answers_and_events_round_trip_over_ipc() {
    let docs = talk_docs();
    let docs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let served = Served::start(&docs, Endpoints::for_data_dir).await;
    let dir = served.harness.dir.path().to_path_buf();
    assert_eq!(served.endpoints, Endpoints::for_data_dir(&dir));
    let socket = dir.join("principal.sock");
    let events = dir.join("principal.sock.events");
    assert!(socket.exists() && events.exists());

    round_trip(&served).await;

    // Stopping removes both socket files.
    served.stop_serving().await;
    within("socket files removed", async {
        while socket.exists() || events.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bind_conflicts_are_explained_and_stale_ipc_sockets_replaced() {
    let docs = talk_docs();
    let docs: Vec<&str> = docs.iter().map(String::as_str).collect();

    // A principal that died left its socket file behind; nobody listens on it.
    let harness = Harness::new(&docs, 4);
    let stale = harness.dir.path().join("principal.sock");
    // Made with mknod rather than a bound and dropped listener: a process that another test
    // forks meanwhile could hold such a listener's descriptor until it execs.
    nix::sys::stat::mknod(
        &stale,
        nix::sys::stat::SFlag::S_IFSOCK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        0,
    )
    .expect("make a socket file");
    assert!(stale.exists());
    let served = Served::start_with(harness, Endpoints::for_data_dir).await;
    let client = served.client().await;
    within("status over the replaced socket", client.status())
        .await
        .expect("status");

    // A second principal on the same data dir is refused, not allowed to steal the socket.
    let again = serve(
        &served.endpoints,
        Arc::new(Shared(served.principal.clone())),
        CancellationToken::new(),
    )
    .await;
    match again {
        Err(ZmqError::Bind { endpoint, reason }) => {
            assert_eq!(endpoint, served.endpoints.requests);
            assert!(reason.contains("another process is listening"), "{reason}");
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    within("status after the refused bind", client.status())
        .await
        .expect("the first principal still serves");

    // The same for a TCP port in use.
    let tcp = Served::start(&docs, tcp_any_port()).await;
    let again = serve(
        &tcp.endpoints,
        Arc::new(Shared(tcp.principal.clone())),
        CancellationToken::new(),
    )
    .await;
    match again {
        Err(e @ ZmqError::Bind { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&tcp.endpoints.requests), "{text}");
            assert!(text.contains("in use"), "{text}");
        }
        other => panic!("expected a bind error, got {other:?}"),
    }

    // Nonsense is refused before any socket is opened.
    let bad = Endpoints {
        requests: "tcp://127.0.0.1:notaport".into(),
        events: "tcp://127.0.0.1:1".into(),
    };
    let refused = serve(
        &bad,
        Arc::new(Shared(tcp.principal.clone())),
        CancellationToken::new(),
    )
    .await;
    assert!(
        matches!(&refused, Err(ZmqError::InvalidEndpoint { endpoint, .. }) if endpoint == &bad.requests),
        "{refused:?}"
    );
    assert!(ZmqClient::connect(&bad, CALL_TIMEOUT).await.is_err());

    drop(client);
    served.shutdown().await;
    tcp.shutdown().await;
}

/// Reads answers from a raw DEALER until the one with `until` arrives; returns them by id.
async fn answers_until(raw: &mut DealerSocket, until: u64, into: &mut HashMap<u64, Value>) {
    within("raw answers", async {
        while !into.contains_key(&until) {
            let message = raw.recv().await.expect("an answer");
            assert_eq!(message.len(), 1, "one frame per answer");
            let frame = message.get(0).expect("frame");
            let envelope: Value = serde_json::from_slice(frame).expect("answers are JSON");
            assert_eq!(envelope["v"], json!(PROTOCOL_VERSION));
            let id = envelope["id"].as_u64().expect("answers carry the id");
            assert!(
                into.insert(id, envelope["body"].clone()).is_none(),
                "one answer per id"
            );
        }
    })
    .await;
}

fn frame(text: impl Into<Bytes>) -> ZmqMessage {
    ZmqMessage::from(text.into())
}

async fn send(raw: &mut DealerSocket, message: ZmqMessage) {
    within("raw send", raw.send(message)).await.expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_frames_are_dropped_or_refused_and_the_server_keeps_serving() {
    let docs = talk_docs();
    let docs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let served = Served::start(&docs, tcp_any_port()).await;
    let mut raw = DealerSocket::new();
    within("raw connect", raw.connect(&served.endpoints.requests))
        .await
        .expect("connect");

    let v = PROTOCOL_VERSION;
    // Garbage: no id to answer under.
    send(&mut raw, frame(&b"\x00\xff\xfe not json at all"[..])).await;
    // Truncated JSON: the id was read before the damage, so it is answered.
    send(
        &mut raw,
        frame(format!(r#"{{"v":{v},"id":7,"body":{{"op":"sta"#)),
    )
    .await;
    // Another protocol version.
    send(
        &mut raw,
        frame(r#"{"v":999,"id":8,"body":{"op":"status"}}"#),
    )
    .await;
    // (A message larger than MAX_FRAME closes the connection instead: tests/zmq_hostile.rs.)
    // Two frames: not a request.
    let two = ZmqMessage::try_from(vec![
        Bytes::from(format!(r#"{{"v":{v},"id":12,"body":{{"op":"status"}}}}"#)),
        Bytes::from_static(b"extra"),
    ])
    .expect("two frames");
    send(&mut raw, two).await;
    // Well-formed JSON, but not a request.
    send(
        &mut raw,
        frame(format!(r#"{{"v":{v},"id":13,"body":{{"op":"launch"}}}}"#)),
    )
    .await;
    // Valid.
    send(
        &mut raw,
        frame(format!(r#"{{"v":{v},"id":10,"body":{{"op":"status"}}}}"#)),
    )
    .await;

    let mut answers = HashMap::new();
    answers_until(&mut raw, 10, &mut answers).await;
    // Once more, so that anything still on its way for the dropped ids would have arrived.
    send(
        &mut raw,
        frame(format!(r#"{{"v":{v},"id":11,"body":{{"op":"status"}}}}"#)),
    )
    .await;
    answers_until(&mut raw, 11, &mut answers).await;
    answers_until(&mut raw, 13, &mut answers).await;
    answers_until(&mut raw, 8, &mut answers).await;
    answers_until(&mut raw, 7, &mut answers).await;

    let mut ids: Vec<_> = answers.keys().copied().collect();
    ids.sort_unstable();
    assert_eq!(ids, [7, 8, 10, 11, 13], "answers: {answers:?}");
    for id in [7, 8, 13] {
        assert_eq!(answers[&id]["reply"], "error", "{id}: {}", answers[&id]);
        assert_eq!(answers[&id]["kind"], "invalid_input", "{id}");
    }
    let message = |id: u64| {
        answers[&id]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(message(7).contains("malformed"), "{}", message(7));
    assert!(message(8).contains("version 999"), "{}", message(8));
    for id in [10, 11] {
        assert_eq!(answers[&id]["reply"], "status");
        assert_eq!(answers[&id]["pid"], json!(std::process::id()));
    }

    // And a proper client is served as ever.
    let client = served.client().await;
    within("status after bad frames", client.status())
        .await
        .expect("status");
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vanished_long_poll_costs_nothing_and_never_blocks_other_calls() {
    let docs = [
        workflow("long", "", &[("sleep", r#"{ run: "sleep 30" }"#)]),
        workflow("quick", "", &[("q", r#"{ run: "true" }"#)]),
    ];
    let docs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let served = Served::start(&docs, tcp_any_port()).await;
    let long = served
        .principal
        .trigger("long", BTreeMap::new())
        .await
        .expect("long run");

    // A client that waits for the long run and goes away without its answer.
    {
        let gone = served.client().await;
        let waited = tokio::time::timeout(Duration::from_millis(500), gone.wait(long)).await;
        assert!(waited.is_err(), "the long run ended early: {waited:?}");
    }
    // A raw peer that does the same and disconnects.
    {
        let mut raw = DealerSocket::new();
        within("raw connect", raw.connect(&served.endpoints.requests))
            .await
            .expect("connect");
        let wait = format!(
            r#"{{"v":{PROTOCOL_VERSION},"id":1,"body":{{"op":"wait_run","run_id":{}}}}}"#,
            long.0
        );
        within("raw send", raw.send(frame(wait)))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let client = Arc::new(served.client().await);
    // This client's own long poll does not hold up its other calls either.
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.wait(long).await })
    };
    for _ in 0..20 {
        within("status", client.status()).await.expect("status");
    }
    let quick = within("quick trigger", client.trigger("quick", BTreeMap::new()))
        .await
        .expect("quick accepted");
    let quick = within("quick wait", client.wait(quick))
        .await
        .expect("answered")
        .expect("known");
    assert_eq!(quick.state, RunState::Succeeded);
    assert!(!waiter.is_finished(), "the long poll answered early");

    // Ending the long run answers every waiter; those that vanished are skipped.
    assert!(
        within("cancel", client.cancel(long))
            .await
            .expect("answered")
    );
    let outcome = within("long poll", waiter)
        .await
        .expect("waiter task")
        .expect("answered")
        .expect("known");
    assert_eq!(outcome.run_id, long);
    assert_eq!(outcome.state, RunState::Cancelled);
    within("status after", client.status())
        .await
        .expect("still serving");

    drop(client);
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_get_ten_thousand_correct_answers() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 1250;
    let docs = talk_docs();
    let docs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let served = Served::start(&docs, tcp_any_port()).await;
    let pid = std::process::id();

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let client = served.client().await;
        tasks.spawn(async move {
            let answers: Vec<_> = futures::stream::iter(0..PER_CLIENT)
                .map(|_| client.status())
                .buffer_unordered(32)
                .collect()
                .await;
            let correct = answers
                .iter()
                .filter(|a| matches!(a, Ok(s) if s.pid == pid && s.slots == 4 && s.workflows.len() == 2))
                .count();
            let first_wrong = answers
                .into_iter()
                .find(|a| !matches!(a, Ok(s) if s.pid == pid))
                .map(|a| format!("{a:?}"));
            (correct, first_wrong)
        });
    }
    let mut correct = 0;
    within("10,000 status calls", async {
        while let Some(done) = tasks.join_next().await {
            let (n, wrong) = done.expect("client task");
            assert_eq!(wrong, None);
            correct += n;
        }
    })
    .await;
    assert_eq!(correct, CLIENTS * PER_CLIENT);
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_to_where_nothing_listens_fail_as_unreachable() {
    let quick = Duration::from_millis(500);
    let tcp = Endpoints {
        requests: format!("tcp://127.0.0.1:{}", free_port()),
        events: format!("tcp://127.0.0.1:{}", free_port()),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let ipc = Endpoints::for_data_dir(dir.path());
    for endpoints in [tcp, ipc] {
        let client = ZmqClient::connect(&endpoints, quick)
            .await
            .expect("connecting does not wait for the principal");
        let status = within("status to nowhere", client.status()).await;
        assert!(
            matches!(&status, Err(ClientError::Unreachable(why)) if why.contains(&endpoints.requests)),
            "{status:?}"
        );
        // A long poll has no deadline of its own, but without a connection there is no wait.
        let waited = within("wait to nowhere", client.wait(RunId(1))).await;
        assert!(
            matches!(waited, Err(ClientError::Unreachable(_))),
            "{waited:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_recovers_when_the_principal_serves_again() {
    let docs = talk_docs();
    let docs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let served = Served::start(&docs, Endpoints::for_data_dir).await;
    // Short, because the call while the principal is down waits it out: the crate keeps
    // retrying a missing socket until its connect timeout, which is the request timeout.
    let client = ZmqClient::connect(&served.endpoints, Duration::from_secs(1))
        .await
        .expect("connect");
    within("status", client.status()).await.expect("status");

    served.stop_serving().await;
    let socket = served.harness.dir.path().join("principal.sock");
    within("socket removed", async {
        while socket.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let down = within("status while down", client.status()).await;
    assert!(matches!(down, Err(ClientError::Unreachable(_))), "{down:?}");

    // Served again on the same socket: the same client reconnects by itself.
    let stop = CancellationToken::new();
    serve(
        &served.endpoints,
        Arc::new(Shared(served.principal.clone())),
        stop.clone(),
    )
    .await
    .expect("serving again");
    // A connect attempt begun while the socket was missing may still run out its 1 s; the
    // client then connects afresh on the next call. Either way it recovers by itself.
    let status = within("status after restart", async {
        let mut tries = 0;
        loop {
            tries += 1;
            match client.status().await {
                Err(ClientError::Unreachable(why)) if tries < 5 => {
                    eprintln!("attempt {tries} after the restart: {why}");
                }
                other => return other,
            }
        }
    })
    .await
    .expect("reconnected");
    assert_eq!(status.pid, std::process::id());

    stop.cancel();
    drop(client);
    served.shutdown().await;
}

/// What a fake principal saw: which connection (identity) sent which request.
#[derive(Debug)]
struct Seen {
    peer: Bytes,
    id: u64,
    op: String,
}

/// A fake principal that never answers its first connection (as a hung process or a peer
/// gone without closing the connection would) and answers later ones with `body(op)`. Every
/// request it sees goes to the returned channel.
async fn half_dead_principal(
    body: fn(&str) -> Value,
) -> (
    String,
    mpsc::UnboundedReceiver<Seen>,
    tokio::task::JoinHandle<()>,
) {
    let mut router = RouterSocket::new();
    let bound = router.bind("tcp://127.0.0.1:0").await.expect("bind");
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let fake = tokio::spawn(async move {
        let mut first_peer: Option<Bytes> = None;
        loop {
            let message = router.recv().await.expect("recv");
            let peer = message.get(0).expect("identity").clone();
            let envelope: Value =
                serde_json::from_slice(message.get(1).expect("frame")).expect("JSON");
            let id = envelope["id"].as_u64().expect("id");
            let op = envelope["body"]["op"].as_str().expect("op").to_string();
            let _ = seen_tx.send(Seen {
                peer: peer.clone(),
                id,
                op: op.clone(),
            });
            if first_peer.get_or_insert_with(|| peer.clone()) == &peer {
                continue;
            }
            let answer = json!({"v": PROTOCOL_VERSION, "id": id, "body": body(&op)});
            let mut message = frame(serde_json::to_vec(&answer).expect("encode"));
            message.push_front(peer);
            router.send(message).await.expect("send");
        }
    });
    (bound.to_string(), seen, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unanswered_request_replaces_the_socket_and_repeats_long_polls() {
    let (bound, mut seen, fake) = half_dead_principal(|op| match op {
        "wait_run" => json!({"reply": "run_ended", "outcome": {
            "run_id": 5, "state": "succeeded", "failed_tasks": []}}),
        _ => json!({"reply": "cancelled", "found": true}),
    })
    .await;
    let endpoints = Endpoints {
        requests: bound,
        events: format!("tcp://127.0.0.1:{}", free_port()),
    };
    let client = Arc::new(
        ZmqClient::connect(&endpoints, Duration::from_millis(500))
            .await
            .expect("connect"),
    );

    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.wait(RunId(5)).await })
    };
    let first_wait = within("the long poll reaching the fake", seen.recv())
        .await
        .expect("seen");
    assert_eq!(first_wait.op, "wait_run");

    // Unanswered: fails after the request timeout, and the socket is replaced.
    let cancelled = within("unanswered cancel", client.cancel(RunId(1))).await;
    assert!(
        matches!(&cancelled, Err(ClientError::Unreachable(why)) if why.contains("did not answer")),
        "{cancelled:?}"
    );
    // The long poll was sent again, on the new socket, and answered there.
    let outcome = within("long poll", waiter)
        .await
        .expect("waiter task")
        .expect("answered")
        .expect("known");
    assert_eq!(outcome.run_id, RunId(5));
    assert_eq!(outcome.state, RunState::Succeeded);
    assert!(
        within("answered cancel", client.cancel(RunId(2)))
            .await
            .expect("answered")
    );

    let mut log = Vec::new();
    while let Ok(s) = seen.try_recv() {
        // Heartbeats probing the waiting long poll's connection may interleave.
        if s.op != "status" {
            log.push(s);
        }
    }
    // First socket: the long poll and the cancel it never answered.
    assert_eq!(log[0].op, "cancel", "{log:?}");
    assert_eq!(log[0].peer, first_wait.peer);
    // New socket, new identity: the long poll again (same id), then the next cancel.
    assert_eq!(log.len(), 3, "{log:?}");
    assert_ne!(log[1].peer, first_wait.peer);
    assert_eq!((log[1].op.as_str(), log[1].id), ("wait_run", first_wait.id));
    assert_eq!(log[2].op, "cancel");
    assert_eq!(log[2].peer, log[1].peer);

    fake.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_poll_alone_notices_a_silent_principal_through_heartbeats() {
    let (bound, mut seen, fake) = half_dead_principal(|op| match op {
        "wait_run" => json!({"reply": "run_ended", "outcome": {
            "run_id": 9, "state": "failed", "failed_tasks": ["x"]}}),
        _ => json!({"reply": "error", "kind": "internal", "message": "fake"}),
    })
    .await;
    let endpoints = Endpoints {
        requests: bound,
        events: format!("tcp://127.0.0.1:{}", free_port()),
    };
    let client = ZmqClient::connect(&endpoints, Duration::from_millis(300))
        .await
        .expect("connect");
    // Nothing else is asked: only the heartbeat can find out that the first socket is dead.
    let outcome = within(
        "long poll answered after a reconnect",
        client.wait(RunId(9)),
    )
    .await
    .expect("answered")
    .expect("known");
    assert_eq!(outcome.state, RunState::Failed);
    let mut log = Vec::new();
    while let Ok(s) = seen.try_recv() {
        log.push(s);
    }
    let first_peer = log[0].peer.clone();
    assert!(
        log.iter().any(|s| s.peer == first_peer && s.op == "status"),
        "the silent connection was probed: {log:?}"
    );
    assert_eq!(
        log.iter()
            .filter(|s| s.peer != first_peer && s.op == "wait_run")
            .count(),
        1,
        "the long poll was sent again on the new connection: {log:?}"
    );
    fake.abort();
}

/// A socket that keeps connecting to a port of this host where nothing listens yet (an agent
/// started before its principal) must never connect to itself: Linux walks the even ports of
/// its ephemeral range for connects, so thousands of tries reach the port itself, and such a
/// connection would hold the port the principal is about to bind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connects_to_a_port_where_nothing_listens_never_reach_themselves() {
    let port = free_port();
    let port = if port % 2 == 1 { port - 1 } else { port };
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let tries = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let t0 = std::time::Instant::now();
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let endpoint = endpoint.clone();
            let tries = tries.clone();
            tokio::spawn(async move {
                while tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 30_000
                    && t0.elapsed() < Duration::from_secs(25)
                {
                    let mut dealer = DealerSocket::new();
                    // The first attempt is made at once; a refusal then waits 50 ms.
                    let attempt =
                        tokio::time::timeout(Duration::from_millis(5), dealer.connect(&endpoint));
                    if let Ok(Ok(())) = attempt.await {
                        return true;
                    }
                }
                false
            })
        })
        .collect();
    for worker in workers {
        let connected = worker.await.expect("worker");
        assert!(
            !connected,
            "a socket connected to {endpoint} where nothing listens"
        );
    }
    // No socket of this host is connected to itself on the port, in any state (a kept one
    // would hold the port the principal is about to bind; a closed one would leave a
    // TIME_WAIT that holds it for a minute). Whether the port can be bound right now is not
    // asked: tests running beside this one may hold it as the source of their own connects.
    let own = self_connections(port);
    assert!(
        own.is_empty(),
        "connected to itself on port {port}: {own:?}"
    );
}

/// The lines of /proc/net/tcp whose local and remote addresses are both 127.0.0.1:`port`.
fn self_connections(port: u16) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let me = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace().skip(1);
            fields.next() == Some(me.as_str()) && fields.next() == Some(me.as_str())
        })
        .map(str::to_string)
        .collect()
}

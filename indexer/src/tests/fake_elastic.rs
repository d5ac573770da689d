//! A stand-in for an Elasticsearch node on a loopback port: it records every request and
//! answers from a script. It shows that the client sends each body to the right endpoint with
//! the right parameters, and handles errors and retries, without a real server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{doc, ids, query};
use crate::document::Document;
use crate::elastic::body::{bulk_body, checkpoints_body, index_template, search_body, source};
use crate::plan::Plan;
use crate::{ElasticConfig, ElasticIndex, Index};
use seams::SearchBackend;

#[derive(Clone, Debug)]
struct Request {
    method: String,
    /// Path and query string.
    target: String,
    body: String,
}

type Script = dyn Fn(&Request, &mut BTreeMap<String, u32>) -> (u16, Value) + Send + Sync;

struct Fake {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Fake {
    /// Serves `script`; its map counts requests per target, for answers that change on retry.
    async fn start(script: Arc<Script>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, script.clone(), log.clone(), counts.clone()));
            }
        });
        Fake { url, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    fn targets(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| format!("{} {}", r.method, r.target)).collect()
    }

    fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }
}

async fn serve(
    mut stream: TcpStream,
    script: Arc<Script>,
    log: Arc<Mutex<Vec<Request>>>,
    counts: Arc<Mutex<BTreeMap<String, u32>>>,
) {
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer).await else { return };
        log.lock().unwrap().push(request.clone());
        let (status, answer) = {
            let mut counts = counts.lock().unwrap();
            *counts.entry(request.target.clone()).or_insert(0) += 1;
            script(&request, &mut counts)
        };
        let body = answer.to_string();
        let head =
            format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len());
        if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(body.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buffer[head_end..head_end + length]).to_string();
    buffer.drain(..head_end + length);
    Some(Request { method, target, body })
}

fn json_body(request: &Request) -> Value {
    serde_json::from_str(&request.body).unwrap()
}

/// An Elasticsearch with no alias yet, whose first bulk answers 503 and whose second bulk has
/// one item pushed back (429).
fn script() -> Arc<Script> {
    Arc::new(|request: &Request, counts: &mut BTreeMap<String, u32>| {
        let seen = counts[&request.target];
        let path = request.target.split('?').next().unwrap_or("");
        match (request.method.as_str(), path) {
            ("GET", "/_alias/boxoffice-events") if counts.contains_key("/boxoffice-events-v1") => {
                (200, json!({"boxoffice-events-v1": {"aliases": {"boxoffice-events": {"is_write_index": true}}}}))
            }
            ("GET", "/_alias/boxoffice-events") => {
                (404, json!({"error": "alias [boxoffice-events] missing", "status": 404}))
            }
            ("PUT", "/boxoffice-events-checkpoints") if seen > 1 => {
                (400, json!({"error": {"type": "resource_already_exists_exception"}, "status": 400}))
            }
            ("POST", "/boxoffice-events/_bulk") if seen == 1 => (503, json!({"error": "unavailable"})),
            ("POST", "/boxoffice-events/_bulk") if seen == 2 => (
                200,
                json!({"errors": true, "items": [
                    {"index": {"status": 201}},
                    {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}},
                ]}),
            ),
            ("POST", "/boxoffice-events/_bulk") => {
                (200, json!({"errors": true, "items": [{"index": {"status": 409}}, {"index": {"status": 201}}]}))
            }
            ("POST", "/boxoffice-events-checkpoints/_search") => {
                (200, json!({"hits": {"hits": [{"_source": {"shard": 1, "checkpoint": 30}}]}}))
            }
            ("POST", "/boxoffice-events/_search") => (
                200,
                json!({"hits": {"hits": [
                    {"_score": 3.0, "_source": source(&doc(2)).unwrap()},
                    {"_score": 1.0, "_source": source(&doc(1)).unwrap()},
                ]}}),
            ),
            ("POST", "/_reindex") => (200, json!({"total": 2, "failures": []})),
            _ => (200, json!({"acknowledged": true, "errors": false})),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_sends_each_body_to_its_endpoint_and_retries_what_may_succeed() {
    let fake = Fake::start(script()).await;
    let elastic =
        ElasticIndex::connect(ElasticConfig { url: fake.url.clone(), ..ElasticConfig::default() }).await.unwrap();
    assert_eq!(
        fake.targets(),
        [
            "PUT /_index_template/boxoffice-events-events",
            "PUT /_index_template/boxoffice-events-checkpoints",
            "PUT /boxoffice-events-checkpoints",
            "GET /_alias/boxoffice-events",
            "PUT /boxoffice-events-v1",
            "GET /_alias/boxoffice-events",
        ]
    );
    let sent = fake.requests();
    assert_eq!(json_body(&sent[0]), index_template("boxoffice-events"));
    assert_eq!(json_body(&sent[4]), json!({"aliases": {"boxoffice-events": {"is_write_index": true}}}));

    // Documents (after a 503 and a 429 item, both retried), then checkpoints.
    fake.clear();
    let docs = vec![Document { version: 8, ..doc(1) }, Document { version: 9, ..doc(2) }];
    let checkpoints = BTreeMap::from([(1, 30)]);
    elastic.apply(docs.clone(), checkpoints.clone()).await.unwrap();
    let sent = fake.requests();
    let targets = fake.targets();
    assert_eq!(targets[..3], ["POST /boxoffice-events/_bulk?require_alias=true"; 3]);
    assert_eq!(targets[3], "POST /boxoffice-events-checkpoints/_bulk");
    assert!(sent[..3].iter().all(|r| r.body == bulk_body(&docs).unwrap()));
    assert_eq!(sent[3].body, checkpoints_body(&checkpoints).unwrap());

    fake.clear();
    assert_eq!(elastic.checkpoints().await.unwrap(), checkpoints);
    assert_eq!(
        fake.targets(),
        ["GET /boxoffice-events-checkpoints/_refresh", "POST /boxoffice-events-checkpoints/_search"]
    );

    fake.clear();
    let q = seams::SearchQuery { limit: 1, ..query(Some("untitled")) };
    let page = elastic.search(q.clone()).await.unwrap();
    assert_eq!((ids(&page), page.more, page.hits[0].score), (vec![2], true, 3.0));
    assert_eq!(fake.targets(), ["POST /boxoffice-events/_search"]);
    assert_eq!(json_body(&fake.requests()[0]), search_body(&Plan::new(&q).unwrap()));

    fake.clear();
    assert_eq!(elastic.reindex().await.unwrap(), "boxoffice-events-v2");
    let targets = fake.targets();
    let reindexing: Vec<&str> =
        targets.iter().map(String::as_str).skip_while(|t| !t.starts_with("GET /_alias")).collect();
    assert_eq!(
        reindexing,
        [
            "GET /_alias/boxoffice-events",
            "PUT /boxoffice-events-v2",
            "POST /_reindex?refresh=true&wait_for_completion=true",
            "POST /_aliases",
            "POST /_reindex?refresh=true&wait_for_completion=true",
        ]
    );
    let swap = fake.requests().into_iter().find(|r| r.target == "/_aliases").unwrap();
    assert_eq!(json_body(&swap)["actions"][1]["add"]["index"], "boxoffice-events-v2");
}

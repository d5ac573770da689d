//! A stand-in for an Elasticsearch node on a loopback port: it records every request and
//! answers from a script. It shows that the client sends each body to the right endpoint with
//! the right parameters, and handles errors and retries, without a real server. Over TLS too,
//! with a certificate from a CA minted for the test, as a self-managed Elasticsearch 8 has.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

use super::{doc, ids, query};
use crate::document::Document;
use crate::elastic::body::{bulk_body, checkpoints_body, index_template, search_body, source};
use crate::plan::Plan;
use crate::{ElasticConfig, ElasticIndex, ElasticSearch, Index, IndexError};
use seams::{SearchBackend, SearchError};

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
        Fake::start_with(script, None).await
    }

    /// Serves `script` over TLS with `tls`'s certificate, at `https://127.0.0.1:PORT`.
    async fn start_tls(script: Arc<Script>, tls: Arc<rustls::ServerConfig>) -> Fake {
        Fake::start_with(script, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_with(script: Arc<Script>, tls: Option<tokio_rustls::TlsAcceptor>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (script, log, counts, tls) = (script.clone(), log.clone(), counts.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        // A client that does not trust the certificate ends the handshake.
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                serve(stream, script, log, counts).await;
                            }
                        }
                        None => serve(stream, script, log, counts).await,
                    }
                });
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
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
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

async fn read_request(stream: &mut (impl AsyncRead + Unpin), buffer: &mut Vec<u8>) -> Option<Request> {
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
            // What reached v1 during the first copy becomes visible to the second.
            "GET /boxoffice-events-v1/_refresh",
            "POST /_reindex?refresh=true&wait_for_completion=true",
        ]
    );
    let swap = fake.requests().into_iter().find(|r| r.target == "/_aliases").unwrap();
    assert_eq!(json_body(&swap)["actions"][1]["add"]["index"], "boxoffice-events-v2");
}

/// A search answer from Elasticsearch's documentation: one of two shards failed.
fn partial_answer() -> Value {
    json!({
        "took": 5, "timed_out": false,
        "_shards": {"total": 2, "successful": 1, "skipped": 0, "failed": 1, "failures": [{
            "shard": 1, "index": "boxoffice-events-v1", "node": "n1",
            "reason": {"type": "node_not_connected_exception", "reason": "[n2] Node not connected"},
        }]},
        "hits": {"hits": [{"_score": 1.0, "_source": source(&doc(1)).unwrap()}]},
    })
}

/// Searches of the alias answer pages, partial answers or refusals by their first word; every
/// other request is answered as by `script`.
fn search_script() -> Arc<Script> {
    let others = script();
    Arc::new(move |request: &Request, counts: &mut BTreeMap<String, u32>| {
        if request.target != "/boxoffice-events/_search" {
            return others(request, counts);
        }
        let asks = |word: &str| request.body.contains(&format!("\"query\":\"{word}\""));
        match () {
            _ if asks("partial") => (200, partial_answer()),
            _ if asks("refused") => (
                400,
                json!({"error": {"type": "search_phase_execution_exception", "reason": "all shards failed"}, "status": 400}),
            ),
            _ => (
                200,
                json!({"_shards": {"total": 1, "successful": 1, "failed": 0},
                       "hits": {"hits": [{"_score": 2.0, "_source": source(&doc(3)).unwrap()}]}}),
            ),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_side_only_searches_the_alias() {
    let fake = Fake::start(search_script()).await;
    let search =
        ElasticSearch::connect(ElasticConfig { url: fake.url.clone(), ..ElasticConfig::default() }).await.unwrap();
    // No template, no index, no alias: the one request at start-up is an empty search.
    assert_eq!(fake.targets(), ["POST /boxoffice-events/_search"]);
    assert_eq!(json_body(&fake.requests()[0])["size"], 0);

    fake.clear();
    let q = query(Some("untitled"));
    let page = search.search(q.clone()).await.unwrap();
    assert_eq!(ids(&page), vec![3]);
    assert_eq!(fake.targets(), ["POST /boxoffice-events/_search"]);
    assert_eq!(json_body(&fake.requests()[0]), search_body(&Plan::new(&q).unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_answers_are_unavailable_and_refused_queries_are_invalid() {
    let fake = Fake::start(search_script()).await;
    let config = ElasticConfig { url: fake.url.clone(), ..ElasticConfig::default() };
    let reader = ElasticSearch::connect(config.clone()).await.unwrap();
    let writer = ElasticIndex::connect(config).await.unwrap();
    let backends: [Arc<dyn SearchBackend>; 2] = [reader, writer];
    for backend in backends {
        fake.clear();
        // One shard of two failed: not a short page served as the whole answer.
        let partial = backend.search(query(Some("partial"))).await;
        assert!(matches!(&partial, Err(SearchError::Unavailable(d)) if d.contains("1 of 2 shards")), "{partial:?}");
        // A 400 is the query's fault: not retried, reported as invalid, without ES's own text.
        let refused = backend.search(query(Some("refused"))).await;
        assert!(matches!(&refused, Err(SearchError::Invalid(d)) if !d.contains("search_phase")), "{refused:?}");
        assert_eq!(fake.targets().len(), 2, "neither is retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_side_refuses_a_key_that_may_not_search_but_waits_for_a_missing_alias() {
    let forbidden = Fake::start(Arc::new(|_: &Request, _: &mut BTreeMap<String, u32>| {
        (403, json!({"error": {"type": "security_exception", "reason": "action [indices:data/read/search] is unauthorized"}, "status": 403}))
    }))
    .await;
    let refused =
        ElasticSearch::connect(ElasticConfig { url: forbidden.url.clone(), ..ElasticConfig::default() }).await;
    assert!(matches!(&refused, Err(IndexError::Config(d)) if d.contains("403")), "{:?}", refused.err());

    let empty = Fake::start(Arc::new(|_: &Request, _: &mut BTreeMap<String, u32>| {
        (404, json!({"error": {"type": "index_not_found_exception"}, "status": 404}))
    }))
    .await;
    let search =
        ElasticSearch::connect(ElasticConfig { url: empty.url.clone(), ..ElasticConfig::default() }).await.unwrap();
    assert!(matches!(search.search(query(None)).await, Err(SearchError::Unavailable(_))));
}

/// A CA, and a certificate for 127.0.0.1 that it signed, minted for one test.
struct TestPki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Elasticsearch security auto-configuration HTTP CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert =
        CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&server_key, &issuer).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![server_cert.der().clone()], key)
        .unwrap();
    TestPki { ca_pem, server: Arc::new(server) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_given_the_clusters_ca_reaches_it_over_https_and_one_without_it_does_not() {
    let pki = test_pki();
    let fake = Fake::start_tls(search_script(), pki.server.clone()).await;
    assert!(fake.url.starts_with("https://127.0.0.1:"), "{}", fake.url);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("http_ca.crt");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();

    let trusting = ElasticConfig { url: fake.url.clone(), ca_file: Some(ca_file), ..ElasticConfig::default() };
    let search = ElasticSearch::connect(trusting).await.unwrap();
    assert_eq!(ids(&search.search(query(Some("untitled"))).await.unwrap()), vec![3]);
    assert_eq!(fake.targets(), ["POST /boxoffice-events/_search"; 2], "both went through TLS to the stand-in");

    // Public roots alone do not know this CA: the handshake fails and nothing arrives.
    fake.clear();
    let public_only = ElasticSearch::connect(ElasticConfig { url: fake.url.clone(), ..ElasticConfig::default() }).await;
    let search = public_only.unwrap();
    assert!(matches!(search.search(query(None)).await, Err(SearchError::Unavailable(_))));
    assert!(fake.targets().is_empty());

    // A CA file that is missing or holds no certificate is a configuration error.
    let missing = dir.path().join("missing.crt");
    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "not a certificate").unwrap();
    for ca_file in [missing, garbage] {
        let config = ElasticConfig { url: fake.url.clone(), ca_file: Some(ca_file), ..ElasticConfig::default() };
        assert!(matches!(ElasticSearch::connect(config.clone()).await, Err(IndexError::Config(_))));
        assert!(matches!(ElasticIndex::connect(config).await, Err(IndexError::Config(_))));
    }
}

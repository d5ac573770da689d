//! A node's port from a hostile client's side, against real `boxoffice node` processes: a peer
//! without the cluster's certificate, plaintext RPC, an api credential asking for what only nodes
//! and operators may, a length header that asks for a gigabyte, a flood of idle connections, and
//! a slowloris handshake. Each is refused, closed or cut off, and costs the node nothing that a
//! normal caller then misses.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{RunningCluster, SECRET};
use common::tls::tls;
use harness::Process;
use node::{NodeClient, NodeReply, NodeRequest, RpcNodeClient, WireError, PREAMBLE, PREAMBLE_V1};
use pki::Role;
use raft_store::{Command as StoreCommand, GroupId, Proposal};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A `boxoffice node` alone (no cluster made of it: its port is what is under test).
struct LoneNode {
    process: Process,
    addr: String,
    _dir: tempfile::TempDir,
}

impl LoneNode {
    fn start(extra: &[&str]) -> LoneNode {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_boxoffice"));
        command
            .args(["node", "--id", "1", "--listen", "127.0.0.1:0", "--cluster-secret", SECRET])
            .args(["--tls-dir", &tls().node(), "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .env("BOXOFFICE_LOG", "error")
            .stderr(Stdio::inherit());
        let (process, addr) =
            harness::spawn_announced(command, "boxoffice node", "boxoffice: node 1 listening on ", CALL_TIMEOUT * 12)
                .unwrap();
        LoneNode { process, addr, _dir: dir }
    }

    /// The node's resident memory, in bytes.
    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.id().unwrap())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    /// The node's `/metrics` page, over the port's plain HTTP.
    async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.addr);
        common::client().get(url).send().await.unwrap().text().await.unwrap()
    }
}

/// A counter's value on a metrics page (0 when absent).
fn counter(page: &str, name_and_labels: &str) -> f64 {
    page.lines().find_map(|l| l.strip_prefix(name_and_labels).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

fn client_as(role: Role) -> RpcNodeClient {
    RpcNodeClient::new(&tls().credential(role), SECRET).unwrap()
}

/// Whether a normal caller (an api) gets its routing answered.
async fn answers_routing(addr: &str) -> bool {
    matches!(client_as(Role::Api).call(addr, NodeRequest::Routing, CALL_TIMEOUT).await, Ok(NodeReply::Routing(_)))
}

fn ca_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(tls().dir(Role::Api).join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client that trusts the cluster CA and presents `cert`/`key` (or no certificate).
fn tls_client(identity: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca_roots());
    Arc::new(match identity {
        Some((cert, key)) => {
            let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap()).unwrap()
        }
        None => builder.with_no_client_auth(),
    })
}

/// The hello a client sends after the preamble: frame 0, tagged 0xff, the cluster secret.
fn hello() -> Vec<u8> {
    let mut frame = u32::try_from(9 + SECRET.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(&0u64.to_be_bytes());
    frame.push(0xff);
    frame.extend_from_slice(SECRET.as_bytes());
    frame
}

/// Opens TLS with `config`, says the preamble and the hello; `None` if the handshake failed.
async fn open_tls(addr: &str, config: Arc<rustls::ClientConfig>) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = pki::server_name(addr).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.ok()?;
    tls.write_all(PREAMBLE).await.ok()?;
    tls.write_all(&hello()).await.ok()?;
    tls.flush().await.ok()?;
    Some(tls)
}

/// Whether the other side closes `stream` (EOF or an error) within `within`, whatever it says.
async fn closed_within<S: AsyncReadExt + Unpin>(stream: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// A routing request in a frame: tagged, with call id 1.
fn routing_frame() -> Vec<u8> {
    let body = raft_store::encode(&NodeRequest::Routing).unwrap();
    let mut frame = u32::try_from(9 + body.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(&1u64.to_be_bytes());
    frame.push(node::RequestKind::Routing.tag());
    frame.extend_from_slice(&body);
    frame
}

#[test]
fn commands_that_reach_the_cluster_refuse_to_start_without_a_credential_or_with_an_exposed_secret() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_boxoffice"))
            .args(args)
            .env("BOXOFFICE_LOG", "error")
            .env_remove("BOXOFFICE_TLS_DIR")
            .output()
            .unwrap();
        assert!(!out.status.success(), "`boxoffice {args:?}` started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let secret = ["--cluster-secret", SECRET];
    for (command, role) in [
        (vec!["node", "--id", "1", "--listen", "127.0.0.1:0", "--data-dir", &data], "node"),
        (vec!["indexer", "--nodes", "127.0.0.1:1", "--listen", "127.0.0.1:0", "--data-dir", &data], "indexer"),
        (vec!["cluster", "status", "--node", "127.0.0.1:1"], "operator"),
        (vec!["backup", "create", "--node", "127.0.0.1:1", "--out", &data], "operator"),
    ] {
        let err = run(&[&command[..], &secret[..]].concat());
        assert!(err.contains("--tls-dir") && err.contains("boxoffice certs"), "{command:?}: {err}");
        assert!(err.contains(&format!("the {role} role")), "{command:?}: {err}");
    }
    // A credential of another role is refused by name.
    let err =
        run(&["cluster", "status", "--node", "127.0.0.1:1", "--cluster-secret", SECRET, "--tls-dir", &tls().api()]);
    assert!(err.contains("credential of the api role"), "{err}");
    // A secret file every user can read is refused.
    let open = dir.path().join("secret");
    std::fs::write(&open, SECRET).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let open = open.display().to_string();
    let err = run(&[
        "cluster",
        "status",
        "--node",
        "127.0.0.1:1",
        "--cluster-secret-file",
        &open,
        "--tls-dir",
        &tls().operator(),
    ]);
    assert!(err.contains("readable by every user"), "{err}");
}

#[tokio::test]
async fn peers_without_the_clusters_certificate_and_plaintext_rpc_are_refused() {
    common::install_crypto_provider();
    let node = LoneNode::start(&[]);
    assert!(answers_routing(&node.addr).await, "a caller with the cluster's certificate is served");

    // A certificate of another CA: the handshake fails or the server closes at once.
    let other = tempfile::tempdir().unwrap();
    let foreign =
        pki::ClusterCa::create(&other.path().join("ca"), 30).unwrap().issue(Role::Api, "eve", &[], 30).unwrap();
    match open_tls(&node.addr, tls_client(Some((&foreign.cert_pem, &foreign.key_pem)))).await {
        None => {}
        Some(mut tls) => {
            tls.write_all(&routing_frame()).await.ok();
            assert!(closed_within(&mut tls, CALL_TIMEOUT).await, "another CA's certificate was served");
        }
    }
    // No certificate at all.
    match open_tls(&node.addr, tls_client(None)).await {
        None => {}
        Some(mut tls) => {
            tls.write_all(&routing_frame()).await.ok();
            assert!(closed_within(&mut tls, CALL_TIMEOUT).await, "a client without a certificate was served");
        }
    }
    // The retired plaintext protocol: a short reason, then the connection closes.
    let mut plain = TcpStream::connect(&node.addr).await.unwrap();
    plain.write_all(PREAMBLE_V1).await.unwrap();
    plain.write_all(&hello()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(CALL_TIMEOUT, plain.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("plaintext RPC is refused") && answer.len() < 200, "{answer:?}");

    let page = node.metrics().await;
    assert!(counter(&page, "boxoffice_rpc_refused_total{reason=\"tls\"}") >= 2.0, "{page}");
    assert!(counter(&page, "boxoffice_rpc_refused_total{reason=\"plaintext_rpc\"}") >= 1.0, "{page}");
    assert!(answers_routing(&node.addr).await, "the node still serves its callers");
}

#[tokio::test]
async fn an_api_credential_cannot_drop_a_group_or_change_the_layout_and_nothing_changes() {
    let cluster = RunningCluster::start(1, 2).await;
    let api = cluster.api();
    let admin = api.token("admin", "admin").await;
    let event = api.create_event(&admin, 2, 5, 10, serde_json::json!({})).await;
    let addr = cluster.nodes[&1].addr.clone();
    let as_api = client_as(Role::Api);
    for group in [GroupId::META, GroupId::shard(0), GroupId::shard(1)] {
        let reply = as_api.call(&addr, NodeRequest::DropGroup { group }, CALL_TIMEOUT).await.unwrap();
        assert!(
            matches!(&reply, NodeReply::Error(WireError::Forbidden { role, what }) if role == "api" && what == "drop_group"),
            "{reply:?}"
        );
    }
    let drain = NodeRequest::Propose {
        group: GroupId::META,
        proposal: Proposal::internal(StoreCommand::DrainNode { id: 1 }),
        quick_refusal: false,
    };
    let reply = as_api.call(&addr, drain, CALL_TIMEOUT).await.unwrap();
    assert!(matches!(reply, NodeReply::Error(WireError::Forbidden { .. })), "{reply:?}");
    let reply = as_api.call(&addr, NodeRequest::Status, CALL_TIMEOUT).await.unwrap();
    assert!(matches!(reply, NodeReply::Error(WireError::Forbidden { .. })), "{reply:?}");

    // Every group is still there, led, and reads still work.
    let status = cluster.status();
    for group in ["meta", "shard-0", "shard-1"] {
        assert!(cluster.leader_of(group).is_some(), "{group} has no leader:\n{status}");
    }
    assert!(status.contains("active"), "{status}");
    let (code, body) = api.get(&format!("/v1/events/{event}"), None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(api.seat_statuses(&event).await.len(), 10);
    let page = common::client().get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(counter(&page, "boxoffice_rpc_forbidden_total{kind=\"drop_group\",role=\"api\"}"), 3.0, "{page}");
}

#[tokio::test]
async fn a_gigabyte_length_header_costs_the_node_no_memory_and_closes_the_connection() {
    common::install_crypto_provider();
    let node = LoneNode::start(&[]);
    assert!(answers_routing(&node.addr).await);
    let before = node.rss_bytes();
    let api = tls().credential(Role::Api).client_config_for(Role::Node).unwrap();
    let peer = tls().credential(Role::Node).client_config_for(Role::Node).unwrap();
    for (config, kind) in [(api, node::RequestKind::Read), (peer, node::RequestKind::RaftAppend)] {
        for _ in 0..4 {
            let mut tls = open_tls(&node.addr, config.clone()).await.expect("handshake");
            let mut header = ((1u32 << 30) + 9).to_be_bytes().to_vec();
            header.extend_from_slice(&7u64.to_be_bytes());
            header.push(kind.tag());
            tls.write_all(&header).await.unwrap();
            tls.write_all(&[0u8; 4096]).await.unwrap();
            tls.flush().await.unwrap();
            assert!(closed_within(&mut tls, CALL_TIMEOUT).await, "a {kind} frame of 1 GiB was not refused");
        }
    }
    let grown = node.rss_bytes().saturating_sub(before);
    assert!(grown < 32 << 20, "the node grew by {} MiB", grown >> 20);
    let page = node.metrics().await;
    assert_eq!(counter(&page, "boxoffice_rpc_refused_total{reason=\"frame_too_large\"}"), 8.0, "{page}");
    assert!(answers_routing(&node.addr).await);
}

/// Opens `n` TCP connections to `addr` from `local` (a loopback address), `at_once` at a time;
/// returns the ones that connected (the node may close them at once).
async fn flood(addr: &str, local: &str, n: usize, at_once: usize) -> Vec<TcpStream> {
    let target: std::net::SocketAddr = addr.parse().unwrap();
    let from: std::net::SocketAddr = format!("{local}:0").parse().unwrap();
    let mut open = Vec::with_capacity(n);
    for batch in 0..n.div_ceil(at_once) {
        let size = at_once.min(n - batch * at_once);
        let connects = (0..size).map(|_| async move {
            let socket = tokio::net::TcpSocket::new_v4().ok()?;
            socket.bind(from).ok()?;
            tokio::time::timeout(Duration::from_secs(3), socket.connect(target)).await.ok()?.ok()
        });
        open.extend(futures_util_join_all(connects).await.into_iter().flatten());
    }
    open
}

/// `join_all` without a dependency: each future in a task of its own.
async fn futures_util_join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_idle_connections_do_not_stop_a_normal_request() {
    common::install_crypto_provider();
    let node = LoneNode::start(&[]);
    let idle = flood(&node.addr, "127.0.0.2", 5_000, 500).await;
    assert!(!idle.is_empty(), "no connection from 127.0.0.2 was made");
    let started = Instant::now();
    assert!(answers_routing(&node.addr).await, "a normal request was not answered");
    assert!(started.elapsed() < CALL_TIMEOUT, "a normal request took {:?}", started.elapsed());
    let healthz = common::client().get(format!("http://{}/healthz", node.addr)).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    let page = node.metrics().await;
    let refused = counter(&page, "boxoffice_rpc_refused_total{reason=\"pending_per_address_max\"}");
    assert!(refused > 4_000.0, "{refused} refused:\n{page}");
    drop(idle);
}

/// The bytes of a TLS ClientHello to `addr`, as a client would send them first.
fn client_hello(addr: &str) -> Vec<u8> {
    let config = tls().credential(Role::Api).client_config_for(Role::Node).unwrap();
    let mut hello = rustls::ClientConnection::new(config, pki::server_name(addr).unwrap()).unwrap();
    let mut bytes = Vec::new();
    hello.write_tls(&mut bytes).unwrap();
    bytes
}

#[tokio::test]
async fn a_slowloris_handshake_is_cut_off_by_the_handshake_timeout() {
    common::install_crypto_provider();
    let node = LoneNode::start(&["--handshake-timeout", "2s"]);
    let hello = client_hello(&node.addr);
    let mut slow = TcpStream::connect(&node.addr).await.unwrap();
    let started = Instant::now();
    let mut cut_off = None;
    for byte in hello.iter().take(30) {
        if slow.write_all(&[*byte]).await.is_err() {
            cut_off = Some(started.elapsed());
            break;
        }
        if closed_within(&mut slow, Duration::from_secs(1)).await {
            cut_off = Some(started.elapsed());
            break;
        }
    }
    let cut_off = cut_off.expect("a client sending its hello a byte a second was never cut off");
    assert!(cut_off < Duration::from_secs(4), "cut off after {cut_off:?}, the handshake timeout is 2 s");
    assert!(answers_routing(&node.addr).await);
    let page = node.metrics().await;
    assert!(counter(&page, "boxoffice_rpc_refused_total{reason=\"handshake_timeout\"}") >= 1.0, "{page}");
}

/// A POST of an empty query to the indexer's search as `role`, over TLS: the status, or `None`
/// when the indexer closed the connection.
async fn search_as(url: &str, role: Role) -> Option<u16> {
    let tls = tls().credential(role).client_config_for(Role::Indexer).unwrap();
    let http = reqwest::Client::builder().use_preconfigured_tls((*tls).clone()).build().unwrap();
    let sent = http.post(format!("{url}/internal/search")).header(indexer::SECRET_HEADER, SECRET).body("{}").send();
    Some(sent.await.ok()?.status().as_u16())
}

#[tokio::test]
async fn the_indexer_serves_searches_over_tls_to_apis_and_operators_only() {
    let cluster = RunningCluster::start(1, 1).await;
    let indexer = cluster.start_indexer("127.0.0.1:0");
    assert!(indexer.url.starts_with("https://"), "{}", indexer.url);
    // An api's and an operator's certificates reach the search (an empty body is a bad query).
    assert_eq!(search_as(&indexer.url, Role::Api).await, Some(400));
    assert_eq!(search_as(&indexer.url, Role::Operator).await, Some(400));
    // A node's certificate may not search: the connection is closed.
    assert_eq!(search_as(&indexer.url, Role::Node).await, None);
    // Plain HTTP gets the operator endpoints and nothing else.
    let plain = indexer.url.replace("https://", "http://");
    let http = common::client();
    assert_eq!(http.get(format!("{plain}/healthz")).send().await.unwrap().status(), 200);
    let search = http.post(format!("{plain}/internal/search")).header(indexer::SECRET_HEADER, SECRET).body("{}");
    assert_eq!(search.send().await.unwrap().status(), 404);
}

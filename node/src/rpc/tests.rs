//! The transport against real sockets: calls, lanes, reconnection, and what it refuses.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pki::{ClusterCa, Credential, Role};
use raft_store::GroupId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::frame::{read_body, read_header, write_frame, HELLO_ID, HELLO_TAG};
use super::*;
use crate::wire::{NodeClient, RequestKind, RoutingReply, TransportError, WireError};

const SECRET: &str = "rpc-test-secret-0123456789";

/// One CA for the tests of this module, and a credential of each role.
struct TestPki {
    node: Credential,
    api: Credential,
    indexer: Credential,
    /// A node's credential from another CA.
    stranger: Credential,
}

fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::create(&dir.path().join("ca"), 30).unwrap();
        let other = ClusterCa::create(&dir.path().join("other"), 30).unwrap();
        let issue = |ca: &ClusterCa, role, hosts: &[String]| {
            let issued = ca.issue(role, "test", hosts, 30).unwrap();
            Credential::from_pem(&issued.cert_pem, &issued.key_pem, &issued.ca_pem).unwrap()
        };
        let local = ["127.0.0.1".to_owned()];
        TestPki {
            node: issue(&ca, Role::Node, &local),
            api: issue(&ca, Role::Api, &[]),
            indexer: issue(&ca, Role::Indexer, &local),
            stranger: issue(&other, Role::Node, &local),
        }
    })
}

fn port_config(limits: PortLimits) -> PortConfig {
    PortConfig { tls: pki().node.server_config().unwrap(), secret: SECRET.into(), limits }
}

/// The handler of the test servers: `Routing` answers its "node id"; `Join { shard_count }`
/// answers `Done` after `shard_count` milliseconds.
fn handler(node_id: u64) -> Handler {
    Arc::new(move |request| {
        Box::pin(async move {
            match request {
                NodeRequest::Join { shard_count } => {
                    tokio::time::sleep(Duration::from_millis(u64::from(shard_count))).await;
                    NodeReply::Done
                }
                _ => NodeReply::Routing(RoutingReply { node_id, ..RoutingReply::default() }),
            }
        })
    })
}

async fn server_with(node_id: u64, limits: PortLimits) -> (SplitListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let split = SplitListener::new(listener, port_config(limits), handler(node_id)).unwrap();
    let addr = split.local_addr().to_string();
    (split, addr)
}

async fn server(node_id: u64) -> (SplitListener, String) {
    server_with(node_id, PortLimits::default()).await
}

fn client(credential: &Credential) -> RpcNodeClient {
    RpcNodeClient::new(credential, SECRET).unwrap()
}

fn node_id(reply: NodeReply) -> u64 {
    match reply {
        NodeReply::Routing(r) => r.node_id,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn many_calls_share_one_connection_and_a_slow_one_holds_up_none() {
    let (_server, addr) = server(7).await;
    let client = Arc::new(client(&pki().node));
    let slow = {
        let (client, addr) = (client.clone(), addr.clone());
        tokio::spawn(
            async move { client.call(&addr, NodeRequest::Join { shard_count: 500 }, Duration::from_secs(5)).await },
        )
    };
    let started = std::time::Instant::now();
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let (client, addr) = (client.clone(), addr.clone());
            tokio::spawn(async move { client.call(&addr, NodeRequest::Routing, Duration::from_secs(5)).await })
        })
        .collect();
    for call in calls {
        assert_eq!(node_id(call.await.unwrap().unwrap()), 7);
    }
    assert!(started.elapsed() < Duration::from_millis(500), "the fast calls waited for the slow one");
    assert!(matches!(slow.await.unwrap(), Ok(NodeReply::Done)));
    assert_eq!(client.conns.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn bulk_calls_travel_on_a_connection_of_their_own() {
    let (_server, addr) = server(3).await;
    let client = Arc::new(client(&pki().node));
    // A bulk call still in progress (the handler takes 300 ms) while control calls come and go.
    let bulk = {
        let (client, addr) = (client.clone(), addr.clone());
        tokio::spawn(async move {
            client.call_bulk(&addr, NodeRequest::Join { shard_count: 300 }, Duration::from_secs(5)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    for _ in 0..20 {
        assert_eq!(node_id(client.call(&addr, NodeRequest::Routing, Duration::from_secs(5)).await.unwrap()), 3);
    }
    assert!(started.elapsed() < Duration::from_millis(250), "control calls waited for the bulk one");
    assert!(matches!(bulk.await.unwrap(), Ok(NodeReply::Done)));
    assert_eq!(client.conns.lock().unwrap().len(), 2, "one control and one bulk connection");
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_http_still_reaches_the_http_side() {
    let (mut server, addr) = server(1).await;
    let intruder = RpcNodeClient::new(&pki().api, "not-the-cluster-secret").unwrap();
    let err = intruder.call(&addr, NodeRequest::Routing, Duration::from_secs(2)).await.unwrap_err();
    assert!(err.to_string().contains("cluster secret"), "{err}");
    // A connection that starts neither TLS nor the preamble is handed to the HTTP side.
    let mut http = TcpStream::connect(&addr).await.unwrap();
    http.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await.unwrap();
    let (mut handed, _) = tokio::time::timeout(Duration::from_secs(2), server.accept_http())
        .await
        .expect("the HTTP connection reaches the HTTP server");
    let mut start = [0u8; 4];
    handed.read_exact(&mut start).await.unwrap();
    assert_eq!(&start, b"GET ", "nothing of the HTTP request was consumed");
}

#[tokio::test]
async fn a_peer_of_another_ca_is_refused_and_a_server_of_another_role_is_not_trusted() {
    let (_server, addr) = server(1).await;
    let stranger = client(&pki().stranger);
    assert!(stranger.call(&addr, NodeRequest::Routing, Duration::from_secs(2)).await.is_err());
    // An indexer's credential answering at a node's address is not taken for the node.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = PortConfig { tls: pki().indexer.server_config().unwrap(), ..port_config(PortLimits::default()) };
    let fake = SplitListener::new(listener, fake, handler(9)).unwrap();
    let err = client(&pki().api)
        .call(&fake.local_addr().to_string(), NodeRequest::Routing, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not the node role"), "{err}");
}

#[tokio::test]
async fn a_role_is_refused_what_the_table_forbids_and_served_what_it_allows() {
    let (_server, addr) = server(1).await;
    let api = client(&pki().api);
    let reply = api.call(&addr, NodeRequest::DropGroup { group: GroupId::shard(0) }, Duration::from_secs(2)).await;
    assert!(
        matches!(reply, Ok(NodeReply::Error(WireError::Forbidden { ref role, ref what })) if role == "api" && what == "drop_group"),
        "{reply:?}"
    );
    // The refusal closed nothing: the connection serves what an api may ask.
    assert_eq!(node_id(api.call(&addr, NodeRequest::Routing, Duration::from_secs(2)).await.unwrap()), 1);
    let layout = raft_store::Proposal::internal(raft_store::Command::DrainNode { id: 1 });
    let propose = NodeRequest::Propose { group: GroupId::META, proposal: layout, quick_refusal: false };
    let reply = api.call(&addr, propose, Duration::from_secs(2)).await;
    assert!(matches!(reply, Ok(NodeReply::Error(WireError::Forbidden { .. }))), "{reply:?}");
}

/// A TLS connection that has said the preamble and the hello, for writing frames by hand.
async fn raw_connection(addr: &str, credential: &Credential) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(credential.client_config_for(Role::Node).unwrap());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector.connect(pki::server_name(addr).unwrap(), tcp).await.unwrap();
    tls.write_all(PREAMBLE).await.unwrap();
    write_frame(&mut tls, HELLO_ID, HELLO_TAG, SECRET.as_bytes()).await.unwrap();
    tls
}

/// Whether the server closes `stream` within `within` (reads end or fail).
async fn closed_within<S: AsyncReadExt + Unpin>(stream: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn a_frame_longer_than_its_kind_allows_closes_the_connection_unread() {
    let (_server, addr) = server(1).await;
    let mut tls = raw_connection(&addr, &pki().api).await;
    // A read request that claims a gigabyte: its header alone is sent.
    let huge: u32 = (1 << 30) + 9;
    tls.write_all(&huge.to_be_bytes()).await.unwrap();
    tls.write_all(&7u64.to_be_bytes()).await.unwrap();
    tls.write_all(&[RequestKind::Read.tag()]).await.unwrap();
    tls.flush().await.unwrap();
    assert!(closed_within(&mut tls, Duration::from_secs(2)).await, "the connection stays open");
    // An unknown tag that claims more than any kind may carry closes it too.
    let mut tls = raw_connection(&addr, &pki().api).await;
    tls.write_all(&huge.to_be_bytes()).await.unwrap();
    tls.write_all(&7u64.to_be_bytes()).await.unwrap();
    tls.write_all(&[200]).await.unwrap();
    tls.flush().await.unwrap();
    assert!(closed_within(&mut tls, Duration::from_secs(2)).await, "the connection stays open");
}

#[tokio::test]
async fn a_request_of_a_kind_a_newer_version_added_is_refused_and_the_connection_kept() {
    let (_server, addr) = server(1).await;
    let mut tls = raw_connection(&addr, &pki().node).await;
    write_frame(&mut tls, 7, 200, b"whatever a newer node says").await.unwrap();
    let header = read_header(&mut tls).await.unwrap();
    assert_eq!((header.id, header.tag), (7, 200));
    let reply: NodeReply = raft_store::decode(&read_body(&mut tls, header.body_bytes).await.unwrap()).unwrap();
    assert!(matches!(&reply, NodeReply::Error(WireError::Invalid(why)) if why.contains("older version")), "{reply:?}");
    // The same connection serves a known request next.
    let body = raft_store::encode(&NodeRequest::Routing).unwrap();
    write_frame(&mut tls, 8, RequestKind::Routing.tag(), &body).await.unwrap();
    let header = read_header(&mut tls).await.unwrap();
    assert_eq!(header.id, 8);
    let reply: NodeReply = raft_store::decode(&read_body(&mut tls, header.body_bytes).await.unwrap()).unwrap();
    assert!(matches!(reply, NodeReply::Routing(_)), "{reply:?}");
}

#[tokio::test]
async fn a_mislabelled_frame_is_answered_invalid() {
    let (_server, addr) = server(1).await;
    let mut tls = raw_connection(&addr, &pki().api).await;
    // A drop request under the tag of a read, which an api may send.
    let body = raft_store::encode(&NodeRequest::DropGroup { group: GroupId::shard(0) }).unwrap();
    write_frame(&mut tls, 5, RequestKind::Read.tag(), &body).await.unwrap();
    let header = read_header(&mut tls).await.unwrap();
    assert_eq!((header.id, header.tag), (5, RequestKind::Read.tag()));
    let reply: NodeReply = raft_store::decode(&read_body(&mut tls, header.body_bytes).await.unwrap()).unwrap();
    assert!(matches!(reply, NodeReply::Error(WireError::Invalid(_))), "{reply:?}");
}

#[tokio::test]
async fn plaintext_rpc_is_refused_with_a_reason() {
    let (_server, addr) = server(1).await;
    let mut plain = TcpStream::connect(&addr).await.unwrap();
    plain.write_all(PREAMBLE_V1).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), plain.read_to_end(&mut answer)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("plaintext RPC is refused"), "{text:?}");
}

#[tokio::test]
async fn silent_and_slow_handshakes_are_cut_off_and_idle_connections_closed() {
    let limits = PortLimits {
        handshake_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(400),
        ..PortLimits::default()
    };
    let (_server, addr) = server_with(1, limits).await;
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(2)).await, "a silent connection stays open");
    // The first byte of a TLS handshake, and nothing more.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(&[0x16]).await.unwrap();
    assert!(closed_within(&mut slow, Duration::from_secs(2)).await, "a stalled handshake stays open");
    // Established, then idle.
    let mut idle = raw_connection(&addr, &pki().api).await;
    let started = std::time::Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(3)).await, "an idle connection stays open");
    assert!(started.elapsed() >= Duration::from_millis(300), "closed before its idle timeout");
}

/// A server in a runtime of its own, so that shutting the runtime down closes its sockets as
/// a crashed process would.
fn server_in_own_runtime(node_id: u64, addr: &str) -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let addr = addr.to_owned();
    runtime.block_on(async move {
        let listener = loop {
            match TcpListener::bind(&addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        // Kept alive by the runtime's tasks until it shuts down.
        std::mem::forget(SplitListener::new(listener, port_config(PortLimits::default()), handler(node_id)).unwrap());
    });
    runtime
}

#[test]
fn calls_fail_fast_when_the_peer_goes_and_reconnect_when_it_is_back() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let first = server_in_own_runtime(1, &addr);
    let client_runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = client(&pki().node);
    let call = |timeout| client_runtime.block_on(client.call(&addr, NodeRequest::Routing, timeout));
    assert_eq!(node_id(call(Duration::from_secs(2)).unwrap()), 1);
    first.shutdown_background();
    // The peer is gone: a call fails well before its timeout.
    let started = std::time::Instant::now();
    let failed = call(Duration::from_secs(5));
    assert!(failed.is_err(), "{failed:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    // Back on the same address: the next call connects anew.
    let _second = server_in_own_runtime(2, &addr);
    assert_eq!(node_id(call(Duration::from_secs(2)).unwrap()), 2);
}

#[tokio::test]
async fn a_call_that_outlives_its_timeout_says_so() {
    let (_server, addr) = server(1).await;
    let client = client(&pki().node);
    let err = client.call(&addr, NodeRequest::Join { shard_count: 300 }, Duration::from_millis(50)).await;
    assert!(matches!(err, Err(TransportError::Timeout(_))), "{err:?}");
    // The connection is still good for the next call.
    assert_eq!(node_id(client.call(&addr, NodeRequest::Routing, Duration::from_secs(2)).await.unwrap()), 1);
}

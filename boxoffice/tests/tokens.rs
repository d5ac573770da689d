//! Token settings through the real binary: keys from files (a world-readable one refused), short
//! keys refused, dev tokens only on a loopback address, and `boxoffice dev`'s generated keys kept
//! readable by their owner only.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::Server;

const KEY: &str = "a-token-key-for-these-tests-0123456789";
const QUEUE_KEY: &str = "a-waiting-room-key-for-these-tests-0123";

/// Runs `boxoffice api` (with a valid credential) with `args` in front of a node that is not
/// there: settings are checked before anything is served, so a refused setting exits at once.
fn api_refuses(args: &[&str]) -> String {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_boxoffice"))
        .args(["api", "--nodes", "127.0.0.1:1", "--cluster-secret", "a-cluster-secret-0123"])
        .args(["--tls-dir", &common::tls::tls().api()])
        .args(args)
        .args(if args.contains(&"--listen") { &[][..] } else { &["--listen", "127.0.0.1:0"][..] })
        .env("BOXOFFICE_LOG", "error")
        .output()
        .expect("boxoffice runs");
    assert!(!output.status.success(), "`boxoffice api {args:?}` started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn the_api_refuses_weak_or_exposed_keys_and_public_dev_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let open = secret_file(dir.path(), "open", KEY, 0o644);
    let err = api_refuses(&["--jwt-secret-file", &open, "--queue-secret", QUEUE_KEY]);
    assert!(err.contains("readable by every user"), "{err}");

    let err = api_refuses(&["--jwt-secret", "too-short", "--queue-secret", QUEUE_KEY]);
    assert!(err.contains("jwt_secret") && err.contains("at least 32 bytes"), "{err}");

    let err = api_refuses(&["--jwt-secret", KEY]);
    assert!(err.contains("--queue-secret"), "{err}");

    let err = api_refuses(&["--queue-secret", QUEUE_KEY]);
    assert!(err.contains("--oidc-issuer"), "{err}");

    let err = api_refuses(&["--jwt-secret", KEY, "--queue-secret", QUEUE_KEY, "--dev-tokens", "--listen", "0.0.0.0:0"]);
    assert!(err.contains("loopback"), "{err}");

    let err = api_refuses(&["--jwt-secret", KEY, "--queue-secret", QUEUE_KEY, "--token-lifetime-max", "0s"]);
    assert!(err.contains("token-lifetime-max"), "{err}");
}

#[tokio::test]
async fn keys_from_owner_only_files_serve_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let jwt = secret_file(dir.path(), "jwt", &format!("{KEY}\n"), 0o600);
    let queue = secret_file(dir.path(), "queue", QUEUE_KEY, 0o640);
    let server = Server::start(&["--jwt-secret-file", &jwt, "--queue-secret-file", &queue]).await;
    // A token signed with the file's key (newline stripped) is accepted.
    let token = api::mint_token(KEY, "alice", "user", std::time::Duration::from_secs(60));
    assert_eq!(server.get("/v1/me/orders", Some(&token)).await.0, 200);
    let other =
        api::mint_token("another-key-that-is-long-enough-0123456", "alice", "user", std::time::Duration::from_secs(60));
    assert_eq!(server.get("/v1/me/orders", Some(&other)).await.0, 401);
}

#[tokio::test]
async fn dev_keeps_its_generated_keys_readable_by_their_owner_only() {
    let server = Server::start(&[]).await;
    for name in ["dev-jwt-secret", "dev-queue-secret"] {
        let meta = std::fs::metadata(server.data_dir().join(name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
    }
    let jwt = std::fs::read_to_string(server.data_dir().join("dev-jwt-secret")).unwrap();
    let queue = std::fs::read_to_string(server.data_dir().join("dev-queue-secret")).unwrap();
    assert_ne!(jwt, queue, "the waiting room has its own key");
    let token = server.token("alice", "user").await;
    assert_eq!(server.get("/v1/me/orders", Some(&token)).await.0, 200);
}

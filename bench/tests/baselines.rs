//! The baselines against real servers: skipped unless `BOXOFFICE_TEST_POSTGRES_URL` or
//! `BOXOFFICE_TEST_ETCD_URLS` (comma-separated) is set, e.g. to what `scripts/baselines start`
//! prints.

#![cfg(not(madsim))]

use std::sync::Arc;
use std::time::Duration;

use bench::{run_sale, EtcdStore, FlashSaleConfig, HoldOutcome, PostgresStore, SaleStore};

fn small_sale() -> FlashSaleConfig {
    FlashSaleConfig { seats: 400, buyers: 8, duration: Duration::from_secs(5), checkout_ratio: 0.5 }
}

/// A seat once held cannot be held again, a checkout sells it, and a short sale keeps I1.
async fn holds_are_all_or_nothing_and_a_sale_keeps_i1<S: SaleStore>(store: Arc<S>) {
    let event = store.setup(10).await.expect("setup");
    let mut a = store.buyer(0).await.expect("buyer 0");
    let mut b = store.buyer(1).await.expect("buyer 1");
    let first = vec!["MAIN-R0-1".to_owned(), "MAIN-R0-2".to_owned()];
    let HoldOutcome::Held(hold_id) = store.hold(&mut a, &event, &first).await else {
        panic!("the first hold of free seats must succeed");
    };
    let overlapping = vec!["MAIN-R0-2".to_owned(), "MAIN-R0-3".to_owned()];
    assert_eq!(store.hold(&mut b, &event, &overlapping).await, HoldOutcome::Conflict);
    assert_eq!(store.taken(&event).await.expect("taken"), 2, "a refused hold takes nothing");
    assert!(store.checkout(&mut a, &event, &hold_id, &first).await);
    assert!(!store.checkout(&mut a, &event, &hold_id, &first).await, "a hold checks out once");

    let figures = run_sale(store, &small_sale()).await.expect("sale");
    assert!(figures.holds > 0);
    assert!(figures.i1_ok(), "taken {} vs acknowledged {}", figures.taken, figures.acknowledged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_baseline_holds_all_or_nothing_and_keeps_i1() {
    let Ok(url) = std::env::var("BOXOFFICE_TEST_POSTGRES_URL") else {
        eprintln!("skipped: BOXOFFICE_TEST_POSTGRES_URL is not set");
        return;
    };
    let store = PostgresStore::connect(&url, 8).await.expect("connect");
    holds_are_all_or_nothing_and_a_sale_keeps_i1(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_baseline_holds_all_or_nothing_and_keeps_i1() {
    let Ok(urls) = std::env::var("BOXOFFICE_TEST_ETCD_URLS") else {
        eprintln!("skipped: BOXOFFICE_TEST_ETCD_URLS is not set");
        return;
    };
    let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
    let store = EtcdStore::new(&urls).expect("client");
    holds_are_all_or_nothing_and_a_sale_keeps_i1(Arc::new(store)).await;
}

//! The baselines against real servers: skipped unless `BOXOFFICE_TEST_POSTGRES_URL` or
//! `BOXOFFICE_TEST_ETCD_URLS` (comma-separated) is set, e.g. to what `scripts/baselines start`
//! prints. Each baseline runs a short flash sale, a short browse run and (PostgreSQL) a short
//! mixed run with searches.

use std::sync::Arc;
use std::time::Duration;

use bench::{
    run_mix, run_sale, BrowseBenchConfig, BrowseStore, EtcdStore, FlashSaleConfig, HoldOutcome, PostgresStore,
    SaleStore,
};

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
    store.teardown(&event).await.expect("teardown");
    assert_eq!(store.taken(&event).await.expect("taken"), 0, "a torn-down sale leaves no seat taken");

    let figures = run_sale(store, &small_sale()).await.expect("sale");
    assert!(figures.holds > 0);
    assert!(figures.i1_ok(), "taken {} vs acknowledged {}", figures.taken, figures.acknowledged);
}

const POSTGRES_URL_VAR: &str = "BOXOFFICE_TEST_POSTGRES_URL";
const ETCD_URLS_VAR: &str = "BOXOFFICE_TEST_ETCD_URLS";

/// The variable's value; without it the test says it skipped itself (no server to run against).
fn env_or_skip(var: &str) -> Option<String> {
    let value = std::env::var(var).ok();
    if value.is_none() {
        eprintln!("skipped: {var} is not set");
    }
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_baseline_holds_all_or_nothing_and_keeps_i1() {
    let Some(url) = env_or_skip(POSTGRES_URL_VAR) else { return };
    let store = PostgresStore::connect(&url, 8).await.expect("connect");
    holds_are_all_or_nothing_and_a_sale_keeps_i1(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_baseline_holds_all_or_nothing_and_keeps_i1() {
    let Some(urls) = env_or_skip(ETCD_URLS_VAR) else { return };
    let store = EtcdStore::new(&urls.split(',').map(str::to_owned).collect::<Vec<_>>()).expect("client");
    holds_are_all_or_nothing_and_a_sale_keeps_i1(Arc::new(store)).await;
}

fn small_browse(search_share: f64) -> BrowseBenchConfig {
    BrowseBenchConfig {
        events: 40,
        clients: 4,
        reads_per_write: 10,
        duration: Duration::from_secs(2),
        search_share,
        ..BrowseBenchConfig::default()
    }
}

/// A short browse (and, where the store can search, mixed) run: reads return data, writes
/// happen, and I1 holds on the final state.
async fn browse_and_mixed_runs_return_data_and_keep_i1<S: BrowseStore>(store: Arc<S>) {
    let shares: &[f64] = if store.searches() { &[0.0, 0.5] } else { &[0.0] };
    for &share in shares {
        let mut figures = run_mix(store.clone(), &small_browse(share)).await.expect("run");
        assert!(figures.peak.reads.len() > 20, "reads in the closed loop: {}", figures.peak.reads.len());
        assert!(!figures.peak.writes.is_empty(), "writes in the closed loop");
        assert_eq!(figures.peak.empty_reads, 0, "details and seat maps answer with data");
        assert_eq!(figures.errors(), 0);
        assert!(figures.i1.ok(), "{:?}", figures.i1);
        assert!(figures.paced.reads.quantile_ms(0.5) > 0.0);
        if share > 0.0 {
            let searches = figures.peak.searches.len() as u64;
            assert!(searches > 0 && figures.peak.empty_searches < searches, "some searches find events");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_baseline_browses_and_searches_with_i1() {
    let Some(url) = env_or_skip(POSTGRES_URL_VAR) else { return };
    let store = PostgresStore::connect(&url, 4).await.expect("connect");
    browse_and_mixed_runs_return_data_and_keep_i1(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_baseline_browses_with_i1_and_has_no_search() {
    let Some(urls) = env_or_skip(ETCD_URLS_VAR) else { return };
    let store = EtcdStore::new(&urls.split(',').map(str::to_owned).collect::<Vec<_>>()).expect("client");
    assert!(!store.searches(), "etcd has no query language");
    browse_and_mixed_runs_return_data_and_keep_i1(Arc::new(store)).await;
}

//! Buyers that book while a test changes the cluster under them, and count what failed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::Server;

/// Buyers booking one general admission at a time until stopped; what each answer was.
pub struct Buyers {
    stop: Arc<AtomicBool>,
    confirmed: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<(u16, Value)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Buyers {
    pub async fn start(api: &Arc<Server>, event: &str, n: usize) -> Buyers {
        let stop = Arc::new(AtomicBool::new(false));
        let confirmed = Arc::new(AtomicUsize::new(0));
        let failures: Arc<Mutex<Vec<(u16, Value)>>> = Arc::default();
        let mut tasks = Vec::new();
        for b in 0..n {
            let (api, event, stop, confirmed, failures) =
                (api.clone(), event.to_owned(), stop.clone(), confirmed.clone(), failures.clone());
            let token = api.token(&format!("buyer-{b}"), "user").await;
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let path = format!("/v1/events/{event}/holds");
                    let body = json!({"section": "LAWN", "quantity": 1});
                    let (status, hold) = api.call("POST", &path, Some(&token), Some(body), None).await;
                    if status >= 500 {
                        failures.lock().unwrap().push((status, hold));
                        continue;
                    }
                    let path = format!("/v1/holds/{}/checkout", hold["hold_id"].as_str().unwrap_or("none"));
                    let pay = json!({"payment_method": "sandbox_ok"});
                    let (status, order) = api.call("POST", &path, Some(&token), Some(pay), None).await;
                    match status {
                        201 => {
                            confirmed.fetch_add(1, Ordering::Relaxed);
                        }
                        s if s >= 500 => failures.lock().unwrap().push((s, order)),
                        _ => {}
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }));
        }
        Buyers { stop, confirmed, failures, tasks }
    }

    /// Stops them; the 5xx answers they saw.
    pub async fn finish(self) -> (usize, Vec<(u16, Value)>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.confirmed.load(Ordering::Relaxed), failures)
    }
}

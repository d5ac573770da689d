//! Search through the real binary: `boxoffice dev` runs the indexer in process and serves
//! `GET /v1/search` from the embedded index.
#![allow(clippy::unwrap_used, clippy::too_many_arguments)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{assert_problem, eventually, Server};
use serde_json::{json, Value};

/// A new or changed event is searchable within this long of its acknowledgement (API.md).
const FRESHNESS: Duration = Duration::from_secs(2);

async fn venue(server: &Server, admin: &str, name: &str, city: &str, lat: f64, lon: f64) -> String {
    let body = json!({
        "name": name, "city": city, "country": "PT", "location": {"lat": lat, "lon": lon},
        "sections": [{"id": "GA", "name": "Standing", "kind": "general", "capacity": 100}]
    });
    let (s, v) = server.call("POST", "/v1/venues", Some(admin), Some(body), None).await;
    assert_eq!(s, 201, "{v}");
    v["venue_id"].as_str().unwrap().to_owned()
}

async fn event(
    server: &Server,
    admin: &str,
    venue: &str,
    name: &str,
    performer: &str,
    category: &str,
    starts: &str,
    description: &str,
) -> (String, Instant) {
    let body = json!({
        "name": name, "description": description, "category": category,
        "performers": [{"name": performer}], "venue_id": venue, "starts_at": starts,
        "prices": [{"section": "GA", "price": {"amount": 2500, "currency": "USD"}}]
    });
    let (s, e) = server.call("POST", "/v1/events", Some(admin), Some(body), None).await;
    assert_eq!(s, 201, "{e}");
    (e["event_id"].as_str().unwrap().to_owned(), Instant::now())
}

async fn search(server: &Server, query: &str) -> Value {
    let (s, page) = server.get(&format!("/v1/search?{query}"), None).await;
    assert_eq!(s, 200, "{page}");
    page
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|i| i["event_id"].as_str().unwrap().to_owned()).collect()
}

/// Waits until a search finds `id`, and returns how long after `since` that was.
async fn found_within(server: &Server, query: &str, id: &str, since: Instant) -> Duration {
    eventually(Duration::from_secs(10), &format!("{query} to find {id}"), || async {
        ids(&search(server, query).await).contains(&id.to_owned()).then(|| since.elapsed())
    })
    .await
}

#[tokio::test]
async fn events_are_found_by_words_with_typos_performers_dates_cities_and_distance() {
    let server = Server::start(&[]).await;
    let admin = server.token("admin", "admin").await;
    let lisbon = venue(&server, &admin, "Coliseu dos Recreios", "Lisbon", 38.7157, -9.1407).await;
    let porto = venue(&server, &admin, "Casa da Musica", "Porto", 41.1588, -8.6307).await;
    let (hamlet, _) = event(
        &server,
        &admin,
        &lisbon,
        "Hamlet",
        "Companhia de Teatro",
        "theatre",
        "2031-03-01T20:00:00Z",
        "The prince of Denmark",
    )
    .await;
    let (jazz, _) = event(
        &server,
        &admin,
        &porto,
        "Midnight Jazz",
        "Marta Ribeiro Quartet",
        "music",
        "2031-05-10T21:00:00Z",
        "Standards and improvisation",
    )
    .await;
    let (rock, created) = event(
        &server,
        &admin,
        &lisbon,
        "Summer Rock Night",
        "The Electric Owls",
        "music",
        "2031-07-20T22:00:00Z",
        "Loud guitars by the river",
    )
    .await;

    // A new event is searchable within two seconds of its acknowledgement.
    let took = found_within(&server, "q=electric+owls", &rock, created).await;
    assert!(took <= FRESHNESS, "searchable after {took:?}");
    // Events live on different shards, each indexed from its own feed: wait for the others too.
    found_within(&server, "q=hamlet", &hamlet, created).await;
    found_within(&server, "q=midnight+jazz", &jazz, created).await;

    assert_eq!(ids(&search(&server, "q=hamlte").await), vec![hamlet.clone()], "a typo still finds it");
    assert_eq!(ids(&search(&server, "q=ribeiro").await), vec![jazz.clone()], "by performer");
    assert_eq!(
        ids(&search(&server, "q=coliseu").await).into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([hamlet.clone(), rock.clone()]),
        "by venue"
    );
    assert_eq!(
        ids(&search(&server, "from=2031-04-01T00:00:00Z&to=2031-06-01T00:00:00Z").await),
        vec![jazz.clone()],
        "by date range"
    );
    assert_eq!(ids(&search(&server, "city=PORTO").await), vec![jazz.clone()], "by city, any case");
    assert_eq!(ids(&search(&server, "category=theatre").await), vec![hamlet.clone()]);
    assert_eq!(
        ids(&search(&server, "near=38.72,-9.14&radius_km=10").await),
        vec![hamlet.clone(), rock.clone()],
        "near Lisbon, soonest first"
    );
    assert_eq!(ids(&search(&server, "near=41.15,-8.63&radius_km=10").await), vec![jazz.clone()], "near Porto");
    assert!(ids(&search(&server, "q=hamlet+zzyzx").await).is_empty(), "every word must match");

    // Relevance: a name match ranks above a description match.
    let (_, _) =
        event(&server, &admin, &porto, "Guitar Heroes", "Various", "music", "2031-08-01T20:00:00Z", "Six strings")
            .await;
    let (guitar_in_name, at) =
        event(&server, &admin, &lisbon, "Guitars", "Solo", "music", "2031-09-01T20:00:00Z", "Acoustic evening").await;
    found_within(&server, "q=guitar", &guitar_in_name, at).await;
    let page = search(&server, "q=guitars").await;
    let order = ids(&page);
    assert_eq!(
        order.iter().position(|i| *i == rock),
        Some(order.len() - 1),
        "description-only match ranks last: {page}"
    );
    assert!(page["items"][0]["score"].as_f64().unwrap() > 0.0);
    assert!(page["took_ms"].is_u64());

    // Pagination.
    let first = search(&server, "category=music&limit=2").await;
    assert_eq!(ids(&first).len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = search(&server, &format!("category=music&limit=2&cursor={cursor}")).await;
    assert!(ids(&second).iter().all(|i| !ids(&first).contains(i)));
}

#[tokio::test]
async fn a_changed_event_is_updated_in_search() {
    let server = Server::start(&[]).await;
    let admin = server.token("admin", "admin").await;
    let v = venue(&server, &admin, "Teatro Aberto", "Lisbon", 38.73, -9.15).await;
    let (id, at) =
        event(&server, &admin, &v, "Uncle Vanya", "Chekhov Players", "theatre", "2031-02-01T20:00:00Z", "").await;
    found_within(&server, "q=vanya", &id, at).await;
    let (s, e) = server
        .call("PATCH", &format!("/v1/events/{id}"), Some(&admin), Some(json!({"name": "The Seagull"})), None)
        .await;
    assert_eq!(s, 200, "{e}");
    let changed = Instant::now();
    let took = found_within(&server, "q=seagull", &id, changed).await;
    assert!(took <= FRESHNESS, "updated after {took:?}");
    assert!(ids(&search(&server, "q=vanya").await).is_empty(), "the old name is gone");
    // Bookings change availability in the index too.
    let alice = server.token("alice", "user").await;
    let (s, _) = server
        .call(
            "POST",
            &format!("/v1/events/{id}/holds"),
            Some(&alice),
            Some(json!({"section": "GA", "quantity": 3})),
            None,
        )
        .await;
    assert_eq!(s, 201);
    eventually(Duration::from_secs(10), "availability to reach the index", || async {
        let page = search(&server, "q=seagull").await;
        (page["items"][0]["available"] == 97).then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_search_parameters_are_problems() {
    let server = Server::start(&[]).await;
    for q in
        ["near=91,0", "near=abc", "near=1,2&radius_km=0", "limit=0", "limit=500", "cursor=%%%", "from=later", "q=%00"]
    {
        let (s, p) = server.get(&format!("/v1/search?{q}"), None).await;
        assert_problem(s, &p, 400, "bad_request");
    }
    // Each parameter is valid on its own; together they break a rule the OpenAPI document
    // cannot state: 422, still `bad_request`.
    for q in ["radius_km=5", "from=2031-01-02T00:00:00Z&to=2031-01-01T00:00:00Z"] {
        let (s, p) = server.get(&format!("/v1/search?{q}"), None).await;
        assert_problem(s, &p, 422, "bad_request");
    }
    let long = "x".repeat(201);
    let (s, p) = server.get(&format!("/v1/search?q={long}"), None).await;
    assert_problem(s, &p, 400, "bad_request");
}

//! `GET /v1/search`: events by words (with relevance and typo tolerance), dates, category, city and
//! distance, from the search index the indexer keeps current.

use std::time::Instant;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::{now_ms, parse_time, EventSummaryJson, ProblemJson};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::pagination::{encode_cursor, PageParams};
use crate::state::ApiState;
use seams::{GeoFilter, SearchError, SearchQuery, SEARCH_DEPTH_MAX, SEARCH_RADIUS_KM_MAX, SEARCH_TEXT_LEN_MAX};

/// Radius of `near` when `radius_km` is not given.
const RADIUS_KM_DEFAULT: f64 = 50.0;
/// Longest category or city filter, in characters.
const FILTER_LEN_MAX: usize = 100;

/// `?q=&from=&to=&category=&city=&near=LAT,LON&radius_km=&limit=&cursor=`
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchParams {
    /// Words matched against name, description, performers, venue and city, typos tolerated.
    pub q: Option<String>,
    /// Events starting at or after this time (RFC 3339); default now.
    pub from: Option<String>,
    /// Events starting before this time (RFC 3339).
    pub to: Option<String>,
    /// Exact category, any case.
    pub category: Option<String>,
    /// Exact city, any case.
    pub city: Option<String>,
    /// `LAT,LON`: only events within `radius_km` of this point.
    pub near: Option<String>,
    /// With `near`: kilometres, default 50.
    pub radius_km: Option<f64>,
    /// 1 to 100, default 20.
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// An event summary and its relevance to the query.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct SearchItemJson {
    #[serde(flatten)]
    pub event: EventSummaryJson,
    /// Relevance; 0 without `q`.
    pub score: f32,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct SearchPageJson {
    pub items: Vec<SearchItemJson>,
    pub next_cursor: Option<String>,
    /// Time the search took in the api, in milliseconds.
    pub took_ms: u64,
}

fn clean_text(field: &str, value: Option<String>, max_chars: usize) -> Result<Option<String>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > max_chars {
        return Err(ApiError::BadRequest(format!("`{field}` is longer than {max_chars} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!("`{field}` contains control characters")));
    }
    Ok(Some(value.to_owned()))
}

fn parse_near(near: Option<&str>, radius_km: Option<f64>) -> Result<Option<GeoFilter>, ApiError> {
    let Some(near) = near else {
        if radius_km.is_some() {
            return Err(ApiError::BadRequest("`radius_km` needs `near`".into()));
        }
        return Ok(None);
    };
    let bad = || ApiError::BadRequest("`near` is LAT,LON with -90 ≤ LAT ≤ 90 and -180 ≤ LON ≤ 180".into());
    let (lat, lon) = near.split_once(',').ok_or_else(bad)?;
    let lat: f64 = lat.trim().parse().map_err(|_| bad())?;
    let lon: f64 = lon.trim().parse().map_err(|_| bad())?;
    if !(lat.is_finite() && (-90.0..=90.0).contains(&lat) && lon.is_finite() && (-180.0..=180.0).contains(&lon)) {
        return Err(bad());
    }
    let radius_km = radius_km.unwrap_or(RADIUS_KM_DEFAULT);
    if !(radius_km.is_finite() && radius_km > 0.0 && radius_km <= SEARCH_RADIUS_KM_MAX) {
        return Err(ApiError::BadRequest(format!("`radius_km` is more than 0 and at most {SEARCH_RADIUS_KM_MAX}")));
    }
    Ok(Some(GeoFilter { lat, lon, radius_km }))
}

/// Builds the backend's query from the parameters; every check the backends rely on is here.
fn query_of(params: SearchParams) -> Result<SearchQuery, ApiError> {
    let text = clean_text("q", params.q, SEARCH_TEXT_LEN_MAX)?;
    let category = clean_text("category", params.category, FILTER_LEN_MAX)?.map(|c| c.to_lowercase());
    let city = clean_text("city", params.city, FILTER_LEN_MAX)?.map(|c| c.to_lowercase());
    let from_ms = params.from.as_deref().map(|t| parse_time("from", t)).transpose()?.unwrap_or_else(now_ms);
    let to_ms = params.to.as_deref().map(|t| parse_time("to", t)).transpose()?.unwrap_or(i64::MAX);
    if from_ms > to_ms {
        return Err(ApiError::BadRequest("`from` must not be after `to`".into()));
    }
    let near = parse_near(params.near.as_deref(), params.radius_km)?;
    let page = PageParams { limit: params.limit, cursor: params.cursor };
    let limit = page.limit()?;
    let offset = page.cursor::<usize>()?.unwrap_or(0);
    if offset + limit > SEARCH_DEPTH_MAX {
        return Err(ApiError::BadRequest(format!("a search pages through its first {SEARCH_DEPTH_MAX} results only")));
    }
    Ok(SearchQuery { text, from_ms, to_ms, category, city, near, offset, limit })
}

/// Events by words, dates, category, city and distance; by relevance, then soonest first.
#[utoipa::path(
    get, path = "/v1/search", operation_id = "search", tag = "events",
    params(SearchParams),
    responses(
        (status = 200, body = SearchPageJson),
        (status = 400, body = ProblemJson, content_type = "application/problem+json"),
        (status = 503, description = "The search index is unavailable", body = ProblemJson, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn search(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<Json<SearchPageJson>, ApiError> {
    let started = Instant::now();
    let query = query_of(params)?;
    let backend = state.search().ok_or_else(|| ApiError::Unavailable("search is not configured on this api".into()))?;
    let (offset, limit) = (query.offset, query.limit);
    let page = backend.search(query).await.map_err(|e| match e {
        SearchError::Unavailable(detail) => ApiError::Unavailable(detail),
        SearchError::Invalid(detail) => ApiError::BadRequest(detail),
    })?;
    let next_cursor = page.more.then(|| encode_cursor(&(offset + limit)));
    let items =
        page.hits.iter().map(|h| SearchItemJson { event: EventSummaryJson::from(&h.event), score: h.score }).collect();
    let took_ms = started.elapsed().as_millis() as u64;
    metrics::histogram!("boxoffice_search_seconds").record(started.elapsed().as_secs_f64());
    Ok(Json(SearchPageJson { items, next_cursor, took_ms }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> SearchParams {
        SearchParams { q: Some(q.into()), ..SearchParams::default() }
    }

    #[test]
    fn parameters_are_checked_before_any_backend_sees_them() {
        assert!(query_of(params("jazz")).is_ok());
        assert_eq!(query_of(params("   ")).unwrap().text, None);
        assert!(query_of(params("a\u{0}b")).is_err());
        assert!(query_of(params(&"x".repeat(SEARCH_TEXT_LEN_MAX + 1))).is_err());
        let near = |near: &str, radius: Option<f64>| SearchParams {
            near: Some(near.into()),
            radius_km: radius,
            ..SearchParams::default()
        };
        assert!(query_of(near("38.7,-9.1", None)).unwrap().near.is_some_and(|g| g.radius_km == RADIUS_KM_DEFAULT));
        for bad in ["38.7", "91,0", "0,181", "NaN,1", "a,b", ""] {
            assert!(query_of(near(bad, None)).is_err(), "{bad}");
        }
        for bad in [0.0, -1.0, f64::INFINITY, SEARCH_RADIUS_KM_MAX + 1.0] {
            assert!(query_of(near("0,0", Some(bad))).is_err(), "{bad}");
        }
        assert!(query_of(SearchParams { radius_km: Some(5.0), ..SearchParams::default() }).is_err());
        let case =
            SearchParams { category: Some(" Music ".into()), city: Some("LISBON".into()), ..SearchParams::default() };
        let q = query_of(case).unwrap();
        assert_eq!((q.category.as_deref(), q.city.as_deref()), (Some("music"), Some("lisbon")));
        let deep = SearchParams { cursor: Some(encode_cursor(&SEARCH_DEPTH_MAX)), ..SearchParams::default() };
        assert!(query_of(deep).is_err());
    }
}

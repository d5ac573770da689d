//! `GET /v1/search`: events by words (with relevance and typo tolerance), dates, category, city and
//! distance, from the search index the indexer keeps current.

use std::time::Instant;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::{now_ms, parse_time, rules, EventSummaryJson, ProblemJson};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::pagination::{limit_schema, Cursor, PageParams, SearchCursor};
use crate::state::ApiState;
use seams::{GeoFilter, SearchError, SearchQuery, SEARCH_DEPTH_MAX, SEARCH_RADIUS_KM_MAX, SEARCH_TEXT_LEN_MAX};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// Radius of `near` when `radius_km` is not given.
const RADIUS_KM_DEFAULT: f64 = 50.0;
/// Longest category or city filter, in characters.
const FILTER_LEN_MAX: usize = 100;
/// Longest `near`, in characters.
const NEAR_LEN_MAX: usize = 64;

/// `?q=&from=&to=&category=&city=&near=LAT,LON&radius_km=&limit=&cursor=`
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchParams {
    /// Words matched against name, description, performers, venue and city, typos tolerated;
    /// blank lists by date.
    #[param(schema_with = query_text)]
    pub q: Option<String>,
    /// Events starting at or after this time (RFC 3339); default now.
    #[param(schema_with = rules::time_text)]
    pub from: Option<String>,
    /// Events starting before this time (RFC 3339). Not before `from` (422).
    #[param(schema_with = rules::time_text)]
    pub to: Option<String>,
    /// Exact category, any case.
    #[param(schema_with = filter_text)]
    pub category: Option<String>,
    /// Exact city, any case.
    #[param(schema_with = filter_text)]
    pub city: Option<String>,
    /// `LAT,LON` in decimal degrees: only events within `radius_km` of this point.
    #[param(schema_with = near_schema)]
    pub near: Option<String>,
    /// With `near` only (422 without it): kilometres, default 50.
    #[param(schema_with = radius_schema)]
    pub radius_km: Option<f64>,
    /// 1 to 100, default 20.
    #[param(schema_with = limit_schema)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page. A search pages through its first 10,000 results:
    /// pages beyond are short or empty.
    #[param(schema_with = search_cursor)]
    pub cursor: Option<String>,
}

/// A filter's text: any characters but control characters, at most `max_chars`.
fn free_text(max_chars: usize) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(max_chars))
        .pattern(Some(format!("^[^{}]*$", rules::CONTROL)))
        .build()
}

fn query_text() -> Object {
    free_text(SEARCH_TEXT_LEN_MAX)
}

fn filter_text() -> Object {
    free_text(FILTER_LEN_MAX)
}

/// `-?DIGITS(.DIGITS)?` whose value is within ±90 (latitude) and ±180 (longitude).
const LATITUDE_PATTERN: &str = r"-?0*(90(\.0+)?|[1-8]?[0-9](\.[0-9]+)?)";
const LONGITUDE_PATTERN: &str = r"-?0*(180(\.0+)?|(1[0-7][0-9]|[1-9]?[0-9])(\.[0-9]+)?)";

fn near_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(NEAR_LEN_MAX))
        .pattern(Some(format!("^{LATITUDE_PATTERN},{LONGITUDE_PATTERN}$")))
        .examples([serde_json::json!("38.7223,-9.1393")])
        .build()
}

fn radius_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .exclusive_minimum(Some(0))
        .maximum(Some(SEARCH_RADIUS_KM_MAX))
        .build()
}

fn search_cursor() -> Object {
    SearchCursor::SHAPE.schema(false)
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

/// The text as given, trimmed, if any is left: no control characters, at most `max_chars`.
fn clean_text(field: &str, value: Option<String>, max_chars: usize) -> Result<Option<String>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    if value.chars().count() > max_chars {
        return Err(ApiError::BadRequest(format!("`{field}` is longer than {max_chars} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!("`{field}` contains control characters")));
    }
    let value = value.trim();
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

/// A coordinate of `near` as its pattern reads it: `-?DIGITS(.DIGITS)?`, at most `max` degrees
/// either way, compared as written (so `90.000…01` is out, as the pattern says, though it rounds
/// to 90.0).
fn degrees(text: &str, max: u32) -> Option<f64> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return None;
    }
    let significant = whole.trim_start_matches('0');
    if significant.len() > 3 {
        return None;
    }
    let whole_value: u32 = if significant.is_empty() { 0 } else { significant.parse().ok()? };
    let in_range = whole_value < max || (whole_value == max && fraction.is_none_or(|f| f.bytes().all(|b| b == b'0')));
    in_range.then(|| text.parse().ok()).flatten()
}

fn parse_near(near: Option<&str>, radius_km: Option<f64>) -> Result<Option<GeoFilter>, ApiError> {
    let Some(near) = near else {
        if radius_km.is_some() {
            return Err(ApiError::Unprocessable("`radius_km` needs `near`".into()));
        }
        return Ok(None);
    };
    let bad = || ApiError::BadRequest("`near` is LAT,LON in decimal degrees, -90 to 90 and -180 to 180".into());
    if near.chars().count() > NEAR_LEN_MAX {
        return Err(bad());
    }
    let (lat, lon) = near.split_once(',').ok_or_else(bad)?;
    let lat = degrees(lat, rules::LATITUDE_MAX as u32).ok_or_else(bad)?;
    let lon = degrees(lon, rules::LONGITUDE_MAX as u32).ok_or_else(bad)?;
    let radius_km = radius_km.unwrap_or(RADIUS_KM_DEFAULT);
    if !(radius_km.is_finite() && radius_km > 0.0 && radius_km <= SEARCH_RADIUS_KM_MAX) {
        return Err(ApiError::BadRequest(format!("`radius_km` is more than 0 and at most {SEARCH_RADIUS_KM_MAX}")));
    }
    Ok(Some(GeoFilter { lat, lon, radius_km }))
}

/// Builds the backend's query from the parameters; every check the backends rely on is here.
/// `None`: the cursor is at the depth a search pages through, so the page is empty.
fn query_of(params: SearchParams) -> Result<Option<SearchQuery>, ApiError> {
    let text = clean_text("q", params.q, SEARCH_TEXT_LEN_MAX)?;
    let category = clean_text("category", params.category, FILTER_LEN_MAX)?.map(|c| c.to_lowercase());
    let city = clean_text("city", params.city, FILTER_LEN_MAX)?.map(|c| c.to_lowercase());
    let from_ms = params.from.as_deref().map(|t| parse_time("from", t)).transpose()?;
    let to_ms = params.to.as_deref().map(|t| parse_time("to", t)).transpose()?.unwrap_or(i64::MAX);
    let page = PageParams { limit: params.limit, cursor: params.cursor };
    let limit = page.limit()?;
    let offset = page.cursor::<SearchCursor>()?.map_or(0, |c| c.0);
    let near = parse_near(params.near.as_deref(), params.radius_km)?;
    let from_ms = from_ms.unwrap_or_else(now_ms);
    if from_ms > to_ms {
        return Err(ApiError::Unprocessable("`from` must not be after `to`".into()));
    }
    // The cursor's grammar allows any offset up to the depth: the page is what is left of it.
    let limit = limit.min(SEARCH_DEPTH_MAX.saturating_sub(offset));
    if limit == 0 {
        return Ok(None);
    }
    Ok(Some(SearchQuery { text, from_ms, to_ms, category, city, near, offset, limit }))
}

/// Events by words, dates, category, city and distance; by relevance, then soonest first.
#[utoipa::path(
    get, path = "/v1/search", operation_id = "search", tag = "events",
    params(SearchParams),
    responses(
        (status = 200, body = SearchPageJson),
        (status = 400, body = ProblemJson, content_type = "application/problem+json"),
        (status = 422, description = "`from` after `to`, or `radius_km` without `near`", body = ProblemJson, content_type = "application/problem+json"),
        (status = 503, description = "The search index is unavailable", body = ProblemJson, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn search(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<Json<SearchPageJson>, ApiError> {
    let started = Instant::now();
    let Some(query) = query_of(params)? else {
        return Ok(Json(SearchPageJson { items: Vec::new(), next_cursor: None, took_ms: 0 }));
    };
    let backend = state.search().ok_or_else(|| ApiError::Unavailable("search is not configured on this api".into()))?;
    let (offset, limit) = (query.offset, query.limit);
    let page = backend.search(query).await.map_err(|e| match e {
        SearchError::Unavailable(detail) => ApiError::Unavailable(detail),
        SearchError::Invalid(detail) => ApiError::BadRequest(detail),
    })?;
    let next_cursor = page.more.then(|| SearchCursor(offset + limit).encode());
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

    fn query(params: SearchParams) -> Result<SearchQuery, ApiError> {
        query_of(params).map(|q| q.expect("a page within the depth"))
    }

    fn status(result: Result<SearchQuery, ApiError>) -> u16 {
        result.err().map_or(200, |e| e.problem().status.as_u16())
    }

    #[test]
    fn parameters_are_checked_before_any_backend_sees_them() {
        assert!(query(params("jazz")).is_ok());
        assert_eq!(query(params("   ")).unwrap().text, None);
        assert!(query(params("a\u{0}b")).is_err());
        assert!(query(params(&"x".repeat(SEARCH_TEXT_LEN_MAX + 1))).is_err());
        let near = |near: &str, radius: Option<f64>| SearchParams {
            near: Some(near.into()),
            radius_km: radius,
            ..SearchParams::default()
        };
        assert!(query(near("38.7,-9.1", None)).unwrap().near.is_some_and(|g| g.radius_km == RADIUS_KM_DEFAULT));
        for good in ["90,180", "-90.000,-180", "0,0", "007.5,-0.25", "89.999999,179.9"] {
            assert!(query(near(good, None)).is_ok(), "{good}");
        }
        for bad in ["38.7", "91,0", "0,181", "NaN,1", "a,b", "", "90.0001,0", "1e1,2", "+1,2", "1.,2", ".5,2", " 1,2"] {
            assert_eq!(status(query(near(bad, None))), 400, "{bad}");
        }
        for bad in [0.0, -1.0, f64::INFINITY, SEARCH_RADIUS_KM_MAX + 1.0] {
            assert_eq!(status(query(near("0,0", Some(bad)))), 400, "{bad}");
        }
        // Rules between parameters, which the document cannot state: 422.
        assert_eq!(status(query(SearchParams { radius_km: Some(5.0), ..SearchParams::default() })), 422);
        let backwards = SearchParams {
            from: Some("2031-01-02T00:00:00Z".into()),
            to: Some("2031-01-01T00:00:00Z".into()),
            ..SearchParams::default()
        };
        assert_eq!(status(query(backwards)), 422);
        let case =
            SearchParams { category: Some(" Music ".into()), city: Some("LISBON".into()), ..SearchParams::default() };
        let q = query(case).unwrap();
        assert_eq!((q.category.as_deref(), q.city.as_deref()), (Some("music"), Some("lisbon")));
    }

    #[test]
    fn a_cursor_near_the_depth_gets_what_is_left_of_it() {
        let at = |offset: usize, limit: u64| SearchParams {
            cursor: Some(SearchCursor(offset).encode()),
            limit: Some(limit),
            ..SearchParams::default()
        };
        assert_eq!(query(at(SEARCH_DEPTH_MAX - 5, 20)).unwrap().limit, 5);
        assert!(query_of(at(SEARCH_DEPTH_MAX, 20)).unwrap().is_none());
        assert!(query_of(SearchParams { cursor: Some("10001".into()), ..SearchParams::default() }).is_err());
    }
}

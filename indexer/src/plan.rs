//! A search query checked and normalised once, from which each backend builds its own request:
//! the one place that decides what a query means, so that both backends answer it alike.

use seams::{SearchError, SearchQuery, SEARCH_DEPTH_MAX, SEARCH_RADIUS_KM_MAX};

use crate::text::{query_words, QueryWord};

/// Mean Earth radius, in kilometres: the value Elasticsearch's `arc` distance uses.
pub(crate) const EARTH_RADIUS_KM: f64 = 6_371.008_771_4;
/// Text fields and their boosts, in this order (the embedded schema relies on it). A word's score
/// is its best field's score: a word found in the name counts three times one in the description.
pub(crate) const FIELD_BOOSTS: [(&str, f32); 5] =
    [("name", 3.0), ("performers", 2.0), ("venue_name", 1.5), ("city", 1.5), ("description", 1.0)];
/// Weight of a word's fuzzy match relative to its exact match. An exact match scores both, so it
/// always ranks above a fuzzy-only match in the same field.
pub(crate) const FUZZY_WEIGHT: f32 = 0.25;
/// Widens the bounding box, in degrees, so that rounding never drops a point that the exact
/// distance check would keep.
const BOX_MARGIN_DEG: f64 = 1e-6;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plan {
    /// Every word must match some text field; empty: list by date.
    pub words: Vec<QueryWord>,
    /// `from_ms <= starts_at < to_ms`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Trimmed and lower-cased.
    pub category: Option<String>,
    pub city: Option<String>,
    pub near: Option<Circle>,
    pub offset: usize,
    pub limit: usize,
}

impl Plan {
    pub fn new(query: &SearchQuery) -> Result<Plan, SearchError> {
        let depth = query.offset.checked_add(query.limit).filter(|d| *d <= SEARCH_DEPTH_MAX);
        if depth.is_none() {
            return Err(SearchError::Invalid(format!(
                "a search pages through its first {SEARCH_DEPTH_MAX} results only"
            )));
        }
        let words = match &query.text {
            Some(text) => query_words(text)?,
            None => Vec::new(),
        };
        let near = query.near.map(|g| Circle::new(g.lat, g.lon, g.radius_km)).transpose()?;
        Ok(Plan {
            words,
            from_ms: query.from_ms,
            to_ms: query.to_ms,
            category: exact(query.category.as_deref()),
            city: exact(query.city.as_deref()),
            near,
            offset: query.offset,
            limit: query.limit,
        })
    }

    /// Whether the query has words to rank by.
    pub fn scored(&self) -> bool {
        !self.words.is_empty()
    }

    /// Whether no event can match, whatever the index holds.
    pub fn matches_nothing(&self) -> bool {
        self.from_ms >= self.to_ms
    }

    /// Ranked results to collect: the page and one more, to know whether more follow.
    pub fn depth(&self) -> usize {
        self.offset + self.limit + 1
    }
}

/// The form in which category and city filters compare: trimmed and lower-cased.
pub(crate) fn exact(value: Option<&str>) -> Option<String> {
    value.map(|v| v.trim().to_lowercase()).filter(|v| !v.is_empty())
}

/// Points within `radius_km` of a centre, and a latitude/longitude box that contains them all.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Circle {
    pub lat: f64,
    pub lon: f64,
    pub radius_km: f64,
    pub lat_min: f64,
    pub lat_max: f64,
    /// `None` when the circle reaches a pole or crosses the antimeridian: any longitude.
    pub lon_range: Option<(f64, f64)>,
}

impl Circle {
    pub fn new(lat: f64, lon: f64, radius_km: f64) -> Result<Circle, SearchError> {
        let valid = lat.is_finite()
            && (-90.0..=90.0).contains(&lat)
            && lon.is_finite()
            && (-180.0..=180.0).contains(&lon)
            && radius_km.is_finite()
            && radius_km > 0.0
            && radius_km <= SEARCH_RADIUS_KM_MAX;
        if !valid {
            return Err(SearchError::Invalid(format!(
                "`near` needs -90 ≤ lat ≤ 90, -180 ≤ lon ≤ 180 and 0 < radius_km ≤ {SEARCH_RADIUS_KM_MAX}"
            )));
        }
        let angle = radius_km / EARTH_RADIUS_KM;
        let angle_deg = angle.to_degrees() + BOX_MARGIN_DEG;
        let (lat_min, lat_max) = (lat - angle_deg, lat + angle_deg);
        let mut lon_range = None;
        if lat_min > -90.0 && lat_max < 90.0 {
            // The widest longitude span of a circle that contains no pole.
            let ratio = angle.sin() / lat.to_radians().cos();
            if ratio < 1.0 {
                let span = ratio.asin().to_degrees() + BOX_MARGIN_DEG;
                if lon - span >= -180.0 && lon + span <= 180.0 {
                    lon_range = Some((lon - span, lon + span));
                }
            }
        }
        Ok(Circle { lat, lon, radius_km, lat_min: lat_min.max(-90.0), lat_max: lat_max.min(90.0), lon_range })
    }

    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        haversine_km(self.lat, self.lon, lat, lon) <= self.radius_km
    }
}

/// The point, if it is a valid coordinate; documents without one match no distance filter.
pub(crate) fn valid_point(lat: f64, lon: f64) -> Option<(f64, f64)> {
    let valid = lat.is_finite() && (-90.0..=90.0).contains(&lat) && lon.is_finite() && (-180.0..=180.0).contains(&lon);
    valid.then_some((lat, lon))
}

/// Great-circle distance, in kilometres (false for NaN inputs in every comparison).
pub(crate) fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let dphi = (lat2 - lat1).to_radians();
    let dlambda = (lon2 - lon1).to_radians();
    let h = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    // `clamp` keeps NaN (`min` would turn it into 1.0, a distance for an unknown point).
    2.0 * EARTH_RADIUS_KM * h.sqrt().clamp(0.0, 1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_matches_known_distances() {
        // Lisbon to Porto is about 274 km.
        let d = haversine_km(38.7223, -9.1393, 41.1579, -8.6291);
        assert!((d - 274.0).abs() < 2.0, "{d}");
        assert_eq!(haversine_km(10.0, 20.0, 10.0, 20.0), 0.0);
        assert!(haversine_km(f64::NAN, 0.0, 0.0, 0.0).is_nan());
    }

    #[test]
    fn bounding_box_contains_the_circle_and_widens_at_poles_and_antimeridian() {
        let c = Circle::new(38.7, -9.1, 100.0).unwrap();
        let (lo, hi) = c.lon_range.unwrap();
        for bearing in 0..360 {
            let b = f64::from(bearing).to_radians();
            // A point 99.9 km away in every direction lies inside the box.
            let a = 99.9 / EARTH_RADIUS_KM;
            let lat1 = c.lat.to_radians();
            let lat2 = (lat1.sin() * a.cos() + lat1.cos() * a.sin() * b.cos()).asin();
            let lon2 = c.lon.to_radians() + (b.sin() * a.sin() * lat1.cos()).atan2(a.cos() - lat1.sin() * lat2.sin());
            let (lat2, lon2) = (lat2.to_degrees(), lon2.to_degrees());
            assert!(c.contains(lat2, lon2));
            assert!(lat2 >= c.lat_min && lat2 <= c.lat_max && lon2 >= lo && lon2 <= hi, "{bearing}");
        }
        assert_eq!(Circle::new(89.5, 0.0, 200.0).unwrap().lon_range, None);
        assert_eq!(Circle::new(0.0, 179.9, 50.0).unwrap().lon_range, None);
        for (lat, lon, r) in [(f64::NAN, 0.0, 1.0), (0.0, 0.0, f64::NAN), (91.0, 0.0, 1.0), (0.0, 0.0, 0.0)] {
            assert!(Circle::new(lat, lon, r).is_err());
        }
        assert!(Circle::new(0.0, 0.0, SEARCH_RADIUS_KM_MAX).unwrap().lon_range.is_none());
    }
}

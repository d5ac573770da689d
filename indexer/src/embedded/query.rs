//! A [`Plan`] as a tantivy query: every word required (exact or fuzzy, best field wins), filters
//! that match without scoring.

use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, DisjunctionMaxQuery, FuzzyTermQuery, Occur, Query, RangeQuery,
    TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::Term;

use super::schema::Fields;
use crate::plan::{Plan, FUZZY_WEIGHT};
use crate::text::QueryWord;

pub(crate) fn build(fields: &Fields, plan: &Plan) -> Box<dyn Query> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> =
        plan.words.iter().map(|w| (Occur::Must, word_query(fields, w))).collect();
    // Filters add nothing to the score, so scores rank by the words alone.
    clauses.extend(filters(fields, plan).into_iter().map(|f| (Occur::Must, zero_score(f))));
    if clauses.is_empty() {
        return Box::new(AllQuery);
    }
    Box::new(BooleanQuery::new(clauses))
}

/// The word in any text field: the best field's exact score, plus a smaller share of the best
/// field's fuzzy score (an exact match is also within the edit distance, so it collects both).
fn word_query(fields: &Fields, word: &QueryWord) -> Box<dyn Query> {
    let per_field = |make: &dyn Fn(Term) -> Box<dyn Query>, weight: f32| -> Box<dyn Query> {
        let disjuncts = fields
            .text
            .iter()
            .map(|(field, boost)| -> Box<dyn Query> {
                Box::new(BoostQuery::new(make(Term::from_field_text(*field, &word.term)), boost * weight))
            })
            .collect();
        Box::new(DisjunctionMaxQuery::new(disjuncts))
    };
    let exact = per_field(&|term| Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)), 1.0);
    if word.distance == 0 {
        return exact;
    }
    let fuzzy = per_field(&|term| Box::new(FuzzyTermQuery::new(term, word.distance, true)), FUZZY_WEIGHT);
    Box::new(BooleanQuery::new(vec![(Occur::Should, exact), (Occur::Should, fuzzy)]))
}

fn filters(fields: &Fields, plan: &Plan) -> Vec<Box<dyn Query>> {
    let mut out: Vec<Box<dyn Query>> = Vec::new();
    if plan.from_ms > i64::MIN || plan.to_ms < i64::MAX {
        out.push(Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_i64(fields.starts_at, plan.from_ms)),
            Bound::Excluded(Term::from_field_i64(fields.starts_at, plan.to_ms)),
        )));
    }
    for (field, value) in [(fields.category_exact, &plan.category), (fields.city_exact, &plan.city)] {
        if let Some(value) = value {
            out.push(Box::new(TermQuery::new(Term::from_field_text(field, value), IndexRecordOption::Basic)));
        }
    }
    if let Some(circle) = &plan.near {
        // The box narrows the candidates; the collector keeps only those within the radius.
        out.push(f64_range(fields.lat, circle.lat_min, circle.lat_max));
        if let Some((lon_min, lon_max)) = circle.lon_range {
            out.push(f64_range(fields.lon, lon_min, lon_max));
        }
    }
    out
}

fn f64_range(field: Field, min: f64, max: f64) -> Box<dyn Query> {
    Box::new(RangeQuery::new(
        Bound::Included(Term::from_field_f64(field, min)),
        Bound::Included(Term::from_field_f64(field, max)),
    ))
}

fn zero_score(query: Box<dyn Query>) -> Box<dyn Query> {
    Box::new(ConstScoreQuery::new(query, 0.0))
}

//! The embedded index's fields and how a [`Document`] fills them.
//!
//! Searchable text goes through the shared analyzer; filters use exact lower-cased strings and
//! columnar (fast) numbers; the whole document is stored once as JSON, which is all a hit needs.

use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STORED, STRING};
use tantivy::TantivyDocument;

use crate::document::Document;
use crate::error::IndexError;
use crate::plan::{exact, valid_point, FIELD_BOOSTS};
use crate::text::ANALYZER;

// Columnar (fast) fields, read by name per segment.
pub(crate) const STARTS_AT: &str = "starts_at";
pub(crate) const EVENT_KEY: &str = "event_key";
pub(crate) const LAT: &str = "lat";
pub(crate) const LON: &str = "lon";
pub(crate) const VERSION: &str = "version";

#[derive(Clone, Debug)]
pub(crate) struct Fields {
    /// Raw id: the key documents are replaced by.
    pub event_id: Field,
    /// The id as a number, for the final tie-break of the order.
    pub event_key: Field,
    /// Searchable text with its boost, in [`FIELD_BOOSTS`] order: name, performers, venue_name,
    /// city, description.
    pub text: [(Field, f32); 5],
    pub category_exact: Field,
    pub city_exact: Field,
    pub starts_at: Field,
    pub lat: Field,
    pub lon: Field,
    pub version: Field,
    /// The whole [`Document`] as JSON.
    pub doc: Field,
}

impl Fields {
    pub fn schema() -> (Schema, Fields) {
        let mut b = Schema::builder();
        // Term frequencies and norms for BM25; no positions, since no query uses phrases.
        let text_options = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqs),
        );
        let event_id = b.add_text_field("event_id", STRING);
        let event_key = b.add_u64_field(EVENT_KEY, FAST);
        let text = FIELD_BOOSTS.map(|(name, boost)| (b.add_text_field(name, text_options.clone()), boost));
        let fields = Fields {
            event_id,
            event_key,
            text,
            category_exact: b.add_text_field("category_exact", STRING),
            city_exact: b.add_text_field("city_exact", STRING),
            // Ranges run on the columns: one scan beats merging one posting list per value.
            starts_at: b.add_i64_field(STARTS_AT, FAST),
            lat: b.add_f64_field(LAT, FAST),
            lon: b.add_f64_field(LON, FAST),
            version: b.add_u64_field(VERSION, FAST),
            doc: b.add_text_field("doc", STORED),
        };
        (b.build(), fields)
    }

    pub fn to_tantivy(&self, doc: &Document) -> Result<TantivyDocument, IndexError> {
        let json = serde_json::to_string(doc).map_err(|e| IndexError::Corrupt(format!("encoding a document: {e}")))?;
        let mut t = TantivyDocument::new();
        t.add_text(self.event_id, doc.event_id.as_str());
        t.add_u64(self.event_key, Document::sort_key(&doc.event_id));
        let [name, performers, venue_name, city, description] = self.text.map(|(field, _)| field);
        t.add_text(name, &doc.name);
        for performer in &doc.performers {
            t.add_text(performers, performer);
        }
        t.add_text(venue_name, &doc.venue_name);
        t.add_text(city, &doc.city);
        t.add_text(description, &doc.description);
        t.add_text(self.category_exact, exact(Some(&doc.category)).unwrap_or_default());
        t.add_text(self.city_exact, exact(Some(&doc.city)).unwrap_or_default());
        t.add_i64(self.starts_at, doc.starts_at_ms);
        // NaN stands for "no location": it fails every range and distance check.
        let (lat, lon) = valid_point(doc.lat, doc.lon).unwrap_or((f64::NAN, f64::NAN));
        t.add_f64(self.lat, lat);
        t.add_f64(self.lon, lon);
        t.add_u64(self.version, doc.version);
        t.add_text(self.doc, json);
        Ok(t)
    }
}

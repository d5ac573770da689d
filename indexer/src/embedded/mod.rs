//! The embedded search index (tantivy): one directory on local disk, the default backend for a
//! single machine.
//!
//! Architecture invariant: documents and checkpoints become durable in one tantivy commit (the
//! checkpoints are the commit's payload), so after a crash the index never claims a checkpoint
//! whose documents it lacks. One writer, behind a mutex; all blocking work runs on tokio's
//! blocking pool.

mod collector;
mod query;
mod schema;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use raft_store::EventId;
use seams::{BoxFuture, SearchBackend, SearchError, SearchHit, SearchPage, SearchQuery};
use serde::{Deserialize, Serialize};
use tantivy::directory::MmapDirectory;
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{DocSet, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term, TERMINATED};

use crate::document::Document;
use crate::error::IndexError;
use crate::index::{merge_checkpoints, Checkpoints, Index};
use crate::plan::Plan;
use crate::text::{analyzer, ANALYZER};
use collector::{RankCollector, Ranked};
use schema::{Fields, VERSION};

/// Memory the writer buffers documents in before it flushes a segment, in bytes: tantivy's
/// least. Pages are small (at most a thousand events), so even that is rarely reached, and each
/// commit's new segment writer sets up buffers in proportion to it (at 50 MB, zeroing them took
/// a tenth of a busy sale's CPU).
const WRITER_MEMORY_BYTES: usize = 15_000_000;
/// Version of the commit payload's shape.
const PAYLOAD_FORMAT: u32 = 1;

/// What each commit carries besides documents.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Payload {
    format: u32,
    checkpoints: Checkpoints,
}

pub struct EmbeddedIndex {
    inner: Arc<Inner>,
}

struct Inner {
    index: tantivy::Index,
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<Writer>,
}

struct Writer {
    /// `None` after a write failed and its rollback did too: the next write opens a new one.
    /// (A rollback that fails has given up the directory lock, and tantivy panics on a second
    /// rollback of that writer; a panic here would poison the lock and stop indexing for good.)
    writer: Option<IndexWriter>,
    /// As of the last commit.
    checkpoints: Checkpoints,
}

impl EmbeddedIndex {
    /// Opens the index in `dir`, creating it (and the directory) if needed.
    pub fn open(dir: &Path) -> Result<Arc<EmbeddedIndex>, IndexError> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = Fields::schema();
        // A directory written with another schema is refused here rather than misread.
        let index = tantivy::Index::open_or_create(MmapDirectory::open(dir)?, schema)?;
        index.tokenizers().register(ANALYZER, analyzer());
        let checkpoints = read_payload(&index)?.checkpoints;
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY_BYTES)?;
        // Reloaded by `apply` right after each commit, so a write is searchable when it returns.
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let writer = Mutex::new(Writer { writer: Some(writer), checkpoints });
        Ok(Arc::new(EmbeddedIndex { inner: Arc::new(Inner { index, fields, reader, writer }) }))
    }

    /// Documents searchable now.
    pub fn len(&self) -> u64 {
        self.inner.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Segments searched now: for benchmarks.
    #[cfg(test)]
    pub(crate) fn segments(&self) -> usize {
        self.inner.reader.searcher().segment_readers().len()
    }
}

impl SearchBackend for EmbeddedIndex {
    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<SearchPage, SearchError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let plan = Plan::new(&query)?;
            let page = tokio::task::spawn_blocking(move || inner.search(&plan)).await.map_err(IndexError::from)??;
            Ok(page)
        })
    }
}

impl Index for EmbeddedIndex {
    fn apply(&self, docs: Vec<Document>, checkpoints: Checkpoints) -> BoxFuture<'_, Result<(), IndexError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { tokio::task::spawn_blocking(move || inner.apply(docs, checkpoints)).await? })
    }

    fn checkpoints(&self) -> BoxFuture<'_, Result<Checkpoints, IndexError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { tokio::task::spawn_blocking(move || Ok(read_payload(&inner.index)?.checkpoints)).await? })
    }
}

impl Inner {
    fn apply(&self, docs: Vec<Document>, checkpoints: Checkpoints) -> Result<(), IndexError> {
        if docs.is_empty() && checkpoints.is_empty() {
            return Ok(());
        }
        let mut guard = self.writer.lock().map_err(|_| IndexError::Poisoned)?;
        let state = &mut *guard;
        let writer = match &mut state.writer {
            Some(writer) => writer,
            None => state.writer.insert(self.index.writer_with_num_threads(1, WRITER_MEMORY_BYTES)?),
        };
        let result = self.write(writer, &state.checkpoints, docs, checkpoints);
        match result {
            Ok(committed) => {
                state.checkpoints = committed;
                self.reader.reload()?;
                Ok(())
            }
            Err(e) => {
                // Drop what this call staged, so a later commit cannot carry half of it; a writer
                // that cannot roll back is dropped whole, which discards the same.
                if let Err(rollback) = writer.rollback() {
                    tracing::warn!(error = %rollback, "the search index's writer could not roll back; opening a new one");
                    state.writer = None;
                }
                Err(e)
            }
        }
    }

    /// Stages the documents that are newer than the stored ones and commits them with the merged
    /// checkpoints; returns the checkpoints committed.
    fn write(
        &self,
        writer: &mut IndexWriter,
        current: &Checkpoints,
        docs: Vec<Document>,
        checkpoints: Checkpoints,
    ) -> Result<Checkpoints, IndexError> {
        let newest = newest_per_event(docs);
        let stored = stored_versions(&self.reader.searcher(), &self.fields, newest.keys())?;
        for doc in newest.into_values() {
            // An equal version may carry a later read of the same state: let it through.
            if stored.get(&doc.event_id).is_some_and(|v| *v > doc.version) {
                continue;
            }
            writer.delete_term(Term::from_field_text(self.fields.event_id, doc.event_id.as_str()));
            writer.add_document(self.fields.to_tantivy(&doc)?)?;
        }
        let mut merged = current.clone();
        merge_checkpoints(&mut merged, checkpoints);
        let payload = Payload { format: PAYLOAD_FORMAT, checkpoints: merged };
        let json =
            serde_json::to_string(&payload).map_err(|e| IndexError::Corrupt(format!("encoding checkpoints: {e}")))?;
        let mut commit = writer.prepare_commit()?;
        commit.set_payload(&json);
        commit.commit()?;
        Ok(payload.checkpoints)
    }

    fn search(&self, plan: &Plan) -> Result<SearchPage, IndexError> {
        if plan.matches_nothing() {
            return Ok(SearchPage { hits: Vec::new(), more: false });
        }
        let searcher = self.reader.searcher();
        let query = query::build(&self.fields, plan);
        let ranked = searcher.search(query.as_ref(), &RankCollector::new(plan))?;
        let more = ranked.len() > plan.offset + plan.limit;
        let hits = ranked
            .iter()
            .skip(plan.offset)
            .take(plan.limit)
            .map(|r| self.hit(&searcher, r, plan.scored()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SearchPage { hits, more })
    }

    fn hit(&self, searcher: &Searcher, ranked: &Ranked, scored: bool) -> Result<SearchHit, IndexError> {
        let stored: TantivyDocument = searcher.doc(ranked.address)?;
        let json = stored
            .get_first(self.fields.doc)
            .and_then(|v| v.as_str())
            .ok_or_else(|| IndexError::Corrupt(format!("document {:?} has no stored body", ranked.address)))?;
        let doc: Document =
            serde_json::from_str(json).map_err(|e| IndexError::Corrupt(format!("stored document: {e}")))?;
        Ok(SearchHit { event: doc.summary(), score: if scored { ranked.score } else { 0.0 } })
    }
}

/// One document per event: the one with the highest version (the later one on a tie).
fn newest_per_event(docs: Vec<Document>) -> BTreeMap<EventId, Document> {
    let mut newest: BTreeMap<EventId, Document> = BTreeMap::new();
    for doc in docs {
        match newest.get(&doc.event_id) {
            Some(kept) if kept.version > doc.version => {}
            _ => {
                newest.insert(doc.event_id.clone(), doc);
            }
        }
    }
    newest
}

/// The committed version of each of `ids` that the index holds.
fn stored_versions<'a>(
    searcher: &Searcher,
    fields: &Fields,
    ids: impl Iterator<Item = &'a EventId> + Clone,
) -> Result<HashMap<EventId, u64>, IndexError> {
    let mut versions = HashMap::new();
    for segment in searcher.segment_readers() {
        let postings = segment.inverted_index(fields.event_id)?;
        let column = segment.fast_fields().u64(VERSION)?;
        for id in ids.clone() {
            let term = Term::from_field_text(fields.event_id, id.as_str());
            let Some(mut docs) = postings.read_postings(&term, IndexRecordOption::Basic)? else { continue };
            let mut doc = docs.doc();
            while doc != TERMINATED {
                if !segment.is_deleted(doc) {
                    if let Some(v) = column.first(doc) {
                        versions.insert(id.clone(), v);
                    }
                }
                doc = docs.advance();
            }
        }
    }
    Ok(versions)
}

/// The payload of the last commit; the default for a new index.
fn read_payload(index: &tantivy::Index) -> Result<Payload, IndexError> {
    let Some(json) = index.load_metas()?.payload else { return Ok(Payload::default()) };
    let payload: Payload =
        serde_json::from_str(&json).map_err(|e| IndexError::Corrupt(format!("commit payload: {e}")))?;
    if payload.format != PAYLOAD_FORMAT {
        return Err(IndexError::Corrupt(format!("commit payload has format {}", payload.format)));
    }
    Ok(payload)
}

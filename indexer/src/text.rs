//! Text analysis, shared by both backends so that they split, normalise and stem words the same
//! way: the embedded index runs this analyzer, and Elasticsearch's index template defines the
//! same chain (see `elastic::body`).
//!
//! The chain: split on every character that is not a letter or a digit, drop words longer than
//! [`WORD_CHARS_MAX`], lower-case, drop English stop words, stem (Snowball English, "porter2").

use seams::SearchError;
use tantivy::tokenizer::{
    Language, LowerCaser, RawTokenizer, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer, Token, TokenFilter,
    TokenStream, Tokenizer,
};

/// Name under which the analyzer is registered, in tantivy and in Elasticsearch's settings.
pub(crate) const ANALYZER: &str = "boxoffice_en";

/// Longest word indexed or searched, in characters. Longer tokens are noise (URLs, hashes) and
/// would make fuzzy automata expensive; both backends drop them.
pub(crate) const WORD_CHARS_MAX: usize = 40;

/// Distinct words one query may have. The api caps text at 200 characters, which holds at most
/// 100 words, so this refuses only text the api would never send.
pub(crate) const QUERY_WORDS_MAX: usize = 100;

/// Lucene's English stop words (Elasticsearch's `_english_`), spelled out so both backends use
/// exactly this list whatever their versions ship.
pub(crate) const ENGLISH_STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of",
    "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with",
];

/// Edits a word may be off by and still match: none below 4 characters, 1 up to 7, 2 from 8
/// (Elasticsearch's `AUTO:4,8`), counted on the stemmed word, which is what is compared.
pub(crate) fn fuzzy_distance(term: &str) -> u8 {
    match term.chars().count() {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// The analyzer for indexed text and query words.
pub(crate) fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LongWordFilter)
        .filter(LowerCaser)
        .filter(stop_words())
        .filter(Stemmer::new(Language::English))
        .build()
}

fn stop_words() -> StopWordFilter {
    StopWordFilter::remove(ENGLISH_STOP_WORDS.iter().map(|w| (*w).to_owned()))
}

/// One word of a query: as typed (lower-cased; Elasticsearch analyzes it itself) and as the
/// index stores it (stemmed), with the edits it tolerates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QueryWord {
    pub word: String,
    pub term: String,
    pub distance: u8,
}

/// The words of a query, each once, in the order typed. Stop words and over-long words are
/// dropped, so the result may be empty.
pub(crate) fn query_words(text: &str) -> Result<Vec<QueryWord>, SearchError> {
    let mut splitter = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LongWordFilter)
        .filter(LowerCaser)
        .filter(stop_words())
        .build();
    let mut stemmer = TextAnalyzer::builder(RawTokenizer::default()).filter(Stemmer::new(Language::English)).build();
    let mut words: Vec<QueryWord> = Vec::new();
    let mut stream = splitter.token_stream(text);
    while let Some(token) = stream.next() {
        let term = stemmer.token_stream(&token.text).next().map_or_else(|| token.text.clone(), |t| t.text.clone());
        if words.iter().any(|w| w.term == term) {
            continue;
        }
        if words.len() == QUERY_WORDS_MAX {
            return Err(SearchError::Invalid(format!("a search has at most {QUERY_WORDS_MAX} distinct words")));
        }
        words.push(QueryWord { word: token.text.clone(), distance: fuzzy_distance(&term), term });
    }
    Ok(words)
}

/// Drops tokens longer than [`WORD_CHARS_MAX`] characters (tantivy's own `RemoveLongFilter`
/// counts bytes, which would treat non-Latin words differently from Elasticsearch).
#[derive(Clone)]
struct LongWordFilter;

impl TokenFilter for LongWordFilter {
    type Tokenizer<T: Tokenizer> = LongWordTokenizer<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> LongWordTokenizer<T> {
        LongWordTokenizer(tokenizer)
    }
}

#[derive(Clone)]
struct LongWordTokenizer<T>(T);

impl<T: Tokenizer> Tokenizer for LongWordTokenizer<T> {
    type TokenStream<'a> = LongWordStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        LongWordStream(self.0.token_stream(text))
    }
}

struct LongWordStream<S>(S);

impl<S: TokenStream> TokenStream for LongWordStream<S> {
    fn advance(&mut self) -> bool {
        while self.0.advance() {
            let text = &self.0.token().text;
            // A string has at least as many bytes as characters: short ones need no count.
            if text.len() <= WORD_CHARS_MAX || text.chars().count() <= WORD_CHARS_MAX {
                return true;
            }
        }
        false
    }

    fn token(&self) -> &Token {
        self.0.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.0.token_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(text: &str) -> Vec<String> {
        let mut analyzer = analyzer();
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while let Some(t) = stream.next() {
            out.push(t.text.clone());
        }
        out
    }

    #[test]
    fn analyzer_lowercases_stems_and_drops_stop_words_and_long_words() {
        assert_eq!(terms("The Concerts of JAZZ-Festivals"), ["concert", "jazz", "festiv"]);
        assert_eq!(terms(&format!("ok {} ok", "x".repeat(WORD_CHARS_MAX + 1))), ["ok", "ok"]);
        assert_eq!(terms(&"é".repeat(WORD_CHARS_MAX)), ["é".repeat(WORD_CHARS_MAX)]);
    }

    #[test]
    fn query_words_are_unique_stemmed_and_carry_their_fuzziness() {
        let words = query_words("Concerts concert in LISBON, the rock").unwrap();
        let got: Vec<(&str, &str, u8)> = words.iter().map(|w| (w.word.as_str(), w.term.as_str(), w.distance)).collect();
        assert_eq!(got, [("concerts", "concert", 1), ("lisbon", "lisbon", 1), ("rock", "rock", 1)]);
        assert_eq!(query_words("philharmonic").unwrap()[0].distance, 2);
        assert_eq!(query_words("pop").unwrap()[0].distance, 0);
        assert!(query_words("the of !!!").unwrap().is_empty());
        let many: String = (0..=QUERY_WORDS_MAX).map(|i| format!("w{i} ")).collect();
        assert!(matches!(query_words(&many), Err(SearchError::Invalid(_))));
    }
}

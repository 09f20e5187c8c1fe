//! Tokenization with a Hugging Face `tokenizer.json` (the `tokenizers` crate): token ids as
//! u32, no special tokens, never truncated or padded.

use std::str::FromStr;
use std::sync::Arc;

use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::fast_wordpiece::FastWordPiece;
use crate::options::RunOptions;

/// A tokenizer built from `tokenizer.json` text.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// The JSON to store when saving: the original text, unless we had to switch
    /// truncation or padding off, in which case the re-serialised tokenizer.
    json: String,
    /// The exact fast path for BERT-style WordPiece tokenizers on ASCII text.
    fast: Option<Arc<FastWordPiece>>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("json_len", &self.json.len())
            .finish()
    }
}

impl TextTokenizer {
    /// Parses `tokenizer.json` text. Truncation and padding are switched off: a Luxical
    /// document is embedded in full, and pad tokens would become n-gram features.
    pub fn from_json(json: &str) -> Result<Self> {
        // Syntax first: the tokenizers crate panics (`expect("Helper")` in its decoder
        // deserializer) on some malformed JSON instead of returning an error — found by
        // the load_model fuzzer. A panic that still escapes it becomes an error too.
        serde_json::from_str::<serde_json::Value>(json)
            .map_err(|e| Error::TokenizerLoad(format!("tokenizer.json is not valid JSON: {e}")))?;
        let parsed = std::panic::catch_unwind(|| Tokenizer::from_str(json)).map_err(|_| {
            Error::TokenizerLoad(
                "the tokenizers crate panicked while parsing tokenizer.json".into(),
            )
        })?;
        let mut inner = parsed.map_err(|e| Error::TokenizerLoad(e.to_string()))?;
        let had_extras = inner.get_truncation().is_some() || inner.get_padding().is_some();
        inner
            .with_truncation(None)
            .map_err(|e| Error::TokenizerLoad(e.to_string()))?;
        inner.with_padding(None);
        // A tokenizer that parses can still fail on every text (e.g. a WordPiece whose
        // unk_token is not in its vocabulary): refuse it at load, not at the first
        // document with an unknown character.
        inner
            .encode_fast(PROBE_TEXT, false)
            .map_err(|e| Error::TokenizerLoad(format!("it fails on a probe text: {e}")))?;
        let json = if had_extras {
            inner
                .to_string(false)
                .map_err(|e| Error::TokenizerLoad(e.to_string()))?
        } else {
            json.to_string()
        };
        let fast = if std::env::var_os("LUXICAL_NO_FAST_TOKENIZER").is_some() {
            None
        } else {
            FastWordPiece::from_json(&json).map(Arc::new)
        };
        Ok(Self { inner, json, fast })
    }

    /// The tokenizer JSON to store in a model file.
    pub fn to_json(&self) -> &str {
        &self.json
    }

    /// Size of the tokenizer's vocabulary (token ids are below this).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text` (no special tokens) appended to `ids`, at most `max_tokens` of
    /// them (the first ones; `None`: all). `index` names the document in errors.
    ///
    /// Memory stays bounded for any document length: a text longer than
    /// [`WINDOW_BYTES`] is tokenized window by window, each window cut just before a
    /// whitespace character, stopping once `max_tokens` ids are collected. Whitespace
    /// separates tokens in BERT-style pre-tokenizers (and starts a token in byte-level
    /// and Metaspace ones), so the ids equal those of the whole text for them; only a
    /// single run of more than [`WINDOW_BYTES`] bytes without whitespace is cut mid-run.
    pub fn encode_into(
        &self,
        text: &str,
        index: usize,
        ids: &mut Vec<u32>,
        max_tokens: Option<usize>,
    ) -> Result<()> {
        let limit = max_tokens.unwrap_or(usize::MAX);
        let start_len = ids.len();
        if text.len() <= WINDOW_BYTES {
            self.encode_piece(text, index, ids)?;
        } else {
            self.encode_windows(text, index, ids, limit, WINDOW_BYTES)?;
        }
        if ids.len() - start_len > limit {
            ids.truncate(start_len + limit);
        }
        Ok(())
    }

    /// Tokenizes `text` in windows of at most `window` bytes until `limit` ids were
    /// appended (the caller truncates). Public for the fuzzers, which check that it
    /// gives the ids of the whole text.
    #[doc(hidden)]
    pub fn encode_windows(
        &self,
        text: &str,
        index: usize,
        ids: &mut Vec<u32>,
        limit: usize,
        window: usize,
    ) -> Result<()> {
        let start_len = ids.len();
        let mut rest = text;
        while !rest.is_empty() && ids.len() - start_len < limit {
            let cut = window_end(rest, window.max(1));
            self.encode_piece(&rest[..cut], index, ids)?;
            rest = &rest[cut..];
        }
        Ok(())
    }

    /// Token ids of the whole of `text` in one piece (no windows).
    #[doc(hidden)]
    pub fn encode_whole(&self, text: &str, index: usize, ids: &mut Vec<u32>) -> Result<()> {
        self.encode_piece(text, index, ids)
    }

    /// Whether the fast WordPiece path serves this tokenizer (for ASCII text).
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// Token ids from the Hugging Face `tokenizers` crate alone (the fast path's oracle).
    #[doc(hidden)]
    pub fn encode_reference(&self, text: &str, index: usize, ids: &mut Vec<u32>) -> Result<()> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenize {
                index,
                message: e.to_string(),
            })?;
        ids.extend_from_slice(encoding.get_ids());
        Ok(())
    }

    fn encode_piece(&self, text: &str, index: usize, ids: &mut Vec<u32>) -> Result<()> {
        if let Some(fast) = &self.fast {
            let start = ids.len();
            let done = fast.encode(text, ids, |run, ids| self.encode_reference(run, index, ids));
            match done {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    ids.truncate(start);
                    return Err(e);
                }
            }
        }
        self.encode_reference(text, index, ids)
    }

    /// Token ids of every text, one vector per text, in parallel on the luxical pool.
    pub fn encode_batch(&self, texts: &[&str], opts: &RunOptions<'_>) -> Result<Vec<Vec<u32>>> {
        use rayon::prelude::*;
        crate::threads::pool(opts.num_threads)?.install(|| {
            texts
                .par_iter()
                .enumerate()
                .map(|(i, text)| {
                    opts.check_cancelled()?;
                    let mut ids = Vec::new();
                    self.encode_into(text, i, &mut ids, opts.max_tokens)?;
                    Ok(ids)
                })
                .collect()
        })
    }
}

/// Text with ASCII, accents, CJK, emoji and an unassigned code point: every usable
/// tokenizer encodes it.
const PROBE_TEXT: &str = "Probe text, \u{e9}t\u{e9} \u{4e2d}\u{6587} \u{1f600} \u{10fffd} 42!";

/// Longest piece of text handed to the Hugging Face tokenizer at once (its encoding
/// holds ~50 bytes per token, so one piece costs a few MB at most).
pub const WINDOW_BYTES: usize = 1 << 18;

/// Default `max_tokens`: documents are embedded from their first 2^20 tokens (~4 MB of
/// English text), which bounds time and memory per document.
pub const DEFAULT_MAX_TOKENS: usize = 1 << 20;

/// End of the next window of `text` (`text.len()` if it fits): at most `window` bytes,
/// cut just before the last ASCII space, tab or line break in it, else at a char
/// boundary. Only ASCII whitespace: every pre-tokenizer splits there, while Unicode
/// spaces such as U+0085 or U+2028 are control or word characters to BERT's normalizer.
fn window_end(text: &str, window: usize) -> usize {
    if text.len() <= window {
        return text.len();
    }
    let mut end = window;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    if end == 0 {
        // a window smaller than the first char: take that char whole
        return text.chars().next().map_or(text.len(), char::len_utf8);
    }
    match text.as_bytes()[..end]
        .iter()
        .rposition(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        Some(ws) if ws > 0 => ws,
        _ => end,
    }
}

/// Concatenates per-document token ids into (ids, offsets of n+1 entries).
pub fn concat_ids(docs: Vec<Vec<u32>>) -> (Vec<u32>, Vec<i64>) {
    let mut offsets = Vec::with_capacity(docs.len() + 1);
    offsets.push(0i64);
    let mut ids = Vec::with_capacity(docs.iter().map(Vec::len).sum());
    for d in docs {
        ids.extend_from_slice(&d);
        offsets.push(ids.len() as i64);
    }
    (ids, offsets)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny BERT-style WordPiece tokenizer, written by hand.
    pub(crate) fn tiny_bert_json(truncate: bool) -> String {
        let trunc = if truncate {
            r#"{"direction":"Right","max_length":2,"strategy":"LongestFirst","stride":0}"#
        } else {
            "null"
        };
        format!(
            r###"{{"version":"1.0","truncation":{trunc},"padding":null,"added_tokens":[],
            "normalizer":{{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,
              "strip_accents":null,"lowercase":true}},
            "pre_tokenizer":{{"type":"BertPreTokenizer"}},
            "post_processor":null,"decoder":null,
            "model":{{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##",
              "max_input_chars_per_word":100,
              "vocab":{{"[UNK]":0,"hello":1,"world":2,"wor":3,"##ld":4,"!":5,"café":6,"cafe":7}}}}}}"###
        )
    }

    #[test]
    fn wordpiece_ids_by_hand() {
        let t = TextTokenizer::from_json(&tiny_bert_json(false)).unwrap();
        let mut ids = Vec::new();
        t.encode_into("Hello WORLD! xyz", 0, &mut ids, None)
            .unwrap();
        assert_eq!(ids, vec![1, 2, 5, 0]);
        ids.clear();
        t.encode_into("", 0, &mut ids, None).unwrap();
        assert!(ids.is_empty());
    }

    #[test]
    fn truncation_is_switched_off() {
        let t = TextTokenizer::from_json(&tiny_bert_json(true)).unwrap();
        let mut ids = Vec::new();
        t.encode_into("hello world hello world", 0, &mut ids, None)
            .unwrap();
        assert_eq!(ids.len(), 4);
        assert!(t.to_json().contains("\"truncation\":null"));
    }

    #[test]
    fn max_tokens_keeps_the_first_tokens() {
        let t = TextTokenizer::from_json(&tiny_bert_json(false)).unwrap();
        let mut ids = vec![9];
        t.encode_into("hello world ! hello", 0, &mut ids, Some(3))
            .unwrap();
        assert_eq!(ids, vec![9, 1, 2, 5]);
    }

    #[test]
    fn windows_give_the_ids_of_the_whole_text() {
        let t = TextTokenizer::from_json(&tiny_bert_json(false)).unwrap();
        // ~1.3 windows of words separated by assorted whitespace; "world" straddles no cut
        let unit = "Hello\tworld!\n cafe\r\n wor ";
        let text = unit.repeat(WINDOW_BYTES * 13 / 10 / unit.len());
        let mut windowed = Vec::new();
        t.encode_into(&text, 0, &mut windowed, None).unwrap();
        let whole = t.inner.encode_fast(text.as_str(), false).unwrap();
        assert_eq!(windowed, whole.get_ids());
        let per_unit = 5; // hello world ! cafe wor
        assert_eq!(windowed.len(), per_unit * (text.len() / unit.len()));
        // stops early once max_tokens ids are in, and keeps exactly the first ones
        let mut first = Vec::new();
        t.encode_into(&text, 0, &mut first, Some(7)).unwrap();
        assert_eq!(first, &whole.get_ids()[..7]);
    }

    #[test]
    fn window_cuts_before_whitespace_or_at_a_char_boundary() {
        assert_eq!(window_end("ab cd", 10), 5);
        assert_eq!(window_end("ab cd ef", 6), 5); // before the space preceding "ef"
        assert_eq!(window_end("abcdef", 4), 4); // no whitespace: cut at the limit
        assert_eq!(window_end("aé", 2), 1); // never inside a UTF-8 sequence
        assert_eq!(window_end(" abc", 2), 2); // a leading space only: no empty window
        assert_eq!(window_end("ab\u{2028}cd", 6), 6); // U+2028 is not a cut point
        assert_eq!(window_end("é", 1), 2); // tiny window: one whole char
    }

    #[test]
    fn tokenizer_without_its_unk_token_is_refused_at_load() {
        // found by the load_model fuzzer: an edited unk_token made every text with an
        // unknown word fail at embedding time
        let json =
            tiny_bert_json(false).replace(r#""unk_token":"[UNK]""#, r#""unk_token":"[UNX]""#);
        let err = TextTokenizer::from_json(&json).unwrap_err();
        assert!(err.to_string().contains("probe text"), "{err}");
    }

    #[test]
    fn malformed_decoder_json_is_an_error_not_a_panic() {
        // found by the load_model fuzzer: tokenizers 0.22 panics on this
        let json = tiny_bert_json(false).replace(
            r#""decoder":null"#,
            r#""decoder":{"type":"WordPiece","prefix":%s}"#,
        );
        let err = TextTokenizer::from_json(&json).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
    }

    #[test]
    fn bad_json_is_an_error() {
        let err = TextTokenizer::from_json("{not json").unwrap_err();
        assert!(matches!(err, Error::TokenizerLoad(_)));
    }
}

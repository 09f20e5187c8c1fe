//! Tokenization with a Hugging Face `tokenizer.json` (the `tokenizers` crate): token ids as
//! u32, no special tokens, never truncated or padded.

use std::str::FromStr;
use std::sync::Arc;

use serde_json::Value;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::fast_wordpiece::FastWordPiece;
use crate::options::RunOptions;
use crate::settings;

/// A tokenizer built from `tokenizer.json` text.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// The JSON to store when saving: the original text, unless we had to switch
    /// truncation or padding off, in which case the re-serialised tokenizer.
    json: String,
    /// The exact fast path for BERT-style WordPiece tokenizers on ASCII text.
    fast: Option<Arc<FastWordPiece>>,
    /// Where a long text may be cut into windows.
    seams: SeamRule,
}

/// Where a text longer than a window may be cut without changing its ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeamRule {
    /// ASCII whitespace is never part of a token and nothing is matched across it: a
    /// normalizer that works per character (BERT, lowercase, NF*, strip accents), a
    /// pre-tokenizer that drops whitespace (BERT, Whitespace, WhitespaceSplit, possibly
    /// with Punctuation / Digits after it), no added token containing whitespace. Any
    /// ASCII whitespace is a cut point.
    Whitespace,
    /// Everything else (byte-level BPE merges runs of spaces into `ĠĠ`, Metaspace keeps
    /// `▁`, regex splitters, normalizers that look at the start of the text, added tokens
    /// with spaces): a cut is kept only after checking that the ids around it are those
    /// of the uncut text ([`TextTokenizer::seam_holds`]).
    Verified,
}

impl SeamRule {
    fn of(json: &Value) -> Self {
        let kind = |v: &Value| v.get("type").and_then(Value::as_str).map(str::to_owned);
        let per_char_normalizer = |v: &Value| {
            matches!(
                kind(v).as_deref(),
                Some(
                    "BertNormalizer"
                        | "Lowercase"
                        | "NFC"
                        | "NFD"
                        | "NFKC"
                        | "NFKD"
                        | "StripAccents"
                )
            )
        };
        let normalizer_ok = match json.get("normalizer") {
            None | Some(Value::Null) => true,
            Some(n) if kind(n).as_deref() == Some("Sequence") => n
                .get("normalizers")
                .and_then(Value::as_array)
                .is_some_and(|all| all.iter().all(per_char_normalizer)),
            Some(n) => per_char_normalizer(n),
        };
        let drops_whitespace = |v: &Value| {
            matches!(
                kind(v).as_deref(),
                Some("BertPreTokenizer" | "Whitespace" | "WhitespaceSplit")
            )
        };
        let splits_further = |v: &Value| {
            drops_whitespace(v) || matches!(kind(v).as_deref(), Some("Punctuation" | "Digits"))
        };
        let pre_tokenizer_ok = match json.get("pre_tokenizer") {
            Some(p) if kind(p).as_deref() == Some("Sequence") => p
                .get("pretokenizers")
                .and_then(Value::as_array)
                .is_some_and(|all| {
                    all.iter().all(splits_further) && all.iter().any(drops_whitespace)
                }),
            Some(p) => drops_whitespace(p),
            None => false,
        };
        let added_ok = json
            .get("added_tokens")
            .and_then(Value::as_array)
            .is_none_or(|all| {
                all.iter().all(|t| {
                    t.get("content")
                        .and_then(Value::as_str)
                        .is_some_and(|c| !c.chars().any(char::is_whitespace))
                })
            });
        if normalizer_ok && pre_tokenizer_ok && added_ok {
            SeamRule::Whitespace
        } else {
            SeamRule::Verified
        }
    }
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
        let fast = if settings::env_flag(settings::NO_FAST_TOKENIZER) {
            None
        } else {
            FastWordPiece::from_json(&json).map(Arc::new)
        };
        let seams =
            serde_json::from_str::<Value>(&json).map_or(SeamRule::Verified, |v| SeamRule::of(&v));
        let mut tokenizer = Self {
            inner,
            json,
            fast,
            seams,
        };
        // Belt and braces: the fast path must also agree with the crate on probe texts
        // built from this vocabulary, or it is not used.
        if tokenizer.fast.is_some() && !tokenizer.fast_path_agrees_on_probes() {
            tokenizer.fast = None;
        }
        Ok(tokenizer)
    }

    /// Whether the fast path gives the crate's ids on fixed ASCII texts and on words
    /// made of this vocabulary's tokens (whole, glued in pairs, upper-cased).
    fn fast_path_agrees_on_probes(&self) -> bool {
        let Some(fast) = &self.fast else {
            return true;
        };
        let mut tokens: Vec<(u32, String)> = self
            .inner
            .get_vocab(false)
            .into_iter()
            .filter(|(t, _)| t.is_ascii())
            .map(|(t, id)| (id, t))
            .collect();
        tokens.sort_unstable();
        tokens.truncate(PROBE_VOCAB_TOKENS);
        let words: Vec<&str> = tokens.iter().map(|(_, t)| t.as_str()).collect();
        let glued: Vec<String> = words
            .windows(2)
            .map(|w| format!("{}{}", w[0], w[1].trim_start_matches('#')))
            .collect();
        let mut texts: Vec<String> = PROBE_ASCII.iter().map(|t| t.to_string()).collect();
        texts.push(words.join(" "));
        texts.push(glued.join(" "));
        texts.push(glued.join(" ").to_ascii_uppercase());
        texts.iter().all(|text| {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            match fast.encode(text, &mut ours, |run, ids| {
                self.encode_reference(run, 0, ids)
            }) {
                Ok(true) => self.encode_reference(text, 0, &mut theirs).is_ok() && ours == theirs,
                Ok(false) => true, // declined (an added token): the crate serves it
                Err(_) => false,
            }
        })
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
    /// [`WINDOW_BYTES`] is tokenized window by window, stopping once `max_tokens` ids are
    /// collected. Each window ends where a cut keeps the ids of the whole text for this
    /// tokenizer (see [`SeamRule`]): at ASCII whitespace for BERT-style tokenizers,
    /// elsewhere (byte-level BPE, Metaspace, ...) at a cut checked against the uncut text
    /// around it. Only when no such cut exists within a window (e.g. one run of more than
    /// [`WINDOW_BYTES`] bytes without a usable cut) and the rest of the text is longer
    /// than [`MAX_WHOLE_WINDOWS`] windows is a window cut where the ids may differ.
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
            self.encode_windows(text, index, ids, limit, WINDOW_BYTES, SEAM_CONTEXT_BYTES)?;
        }
        if ids.len() - start_len > limit {
            ids.truncate(start_len + limit);
        }
        Ok(())
    }

    /// Tokenizes `text` in windows of at most `window` bytes until `limit` ids were
    /// appended (the caller truncates); a cut that needs checking is checked on
    /// `seam_context` bytes either side of it. Returns whether every cut is one that keeps
    /// the ids of the whole text (by the tokenizer's rule, or checked). Public for the
    /// fuzzers, which check that it then gives the ids of the whole text.
    #[doc(hidden)]
    pub fn encode_windows(
        &self,
        text: &str,
        index: usize,
        ids: &mut Vec<u32>,
        limit: usize,
        window: usize,
        seam_context: usize,
    ) -> Result<bool> {
        let start_len = ids.len();
        let mut start = 0;
        let mut exact = true;
        while start < text.len() && ids.len() - start_len < limit {
            let (end, kept) = self.next_cut(text, start, window.max(1), seam_context, index);
            exact &= kept;
            self.encode_piece(&text[start..end], index, ids)?;
            start = end;
        }
        Ok(exact)
    }

    /// End of the window that starts at `start`, and whether cutting there keeps the ids.
    fn next_cut(
        &self,
        text: &str,
        start: usize,
        window: usize,
        context: usize,
        index: usize,
    ) -> (usize, bool) {
        let rest = &text[start..];
        if rest.len() <= window {
            return (text.len(), true);
        }
        let bytes = text.as_bytes();
        let mut limit = start + window;
        while !text.is_char_boundary(limit) {
            limit -= 1;
        }
        if limit == start {
            // a window smaller than the first char: that char whole
            limit = start + rest.chars().next().map_or(rest.len(), char::len_utf8);
            if limit == text.len() {
                return (limit, true);
            }
        }
        let is_ascii_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        // Cut points, latest first: a cut at `p` ends the window before byte `p`.
        let positions = || (start + 1..=limit).rev();
        let before_word = |p: usize| {
            text[p + 1..]
                .chars()
                .next()
                .is_some_and(|c| !c.is_whitespace())
        };
        let last_space = positions().find(|&p| is_ascii_space(bytes[p]));
        if self.seams == SeamRule::Whitespace {
            if let Some(p) = last_space {
                return (p, true);
            }
        } else {
            // A space before a word first (byte-level and Metaspace tokens start there),
            // then other ASCII whitespace before a word.
            let spaces = positions().filter(|&p| bytes[p] == b' ' && before_word(p));
            let others = positions()
                .filter(|&p| bytes[p] != b' ' && is_ascii_space(bytes[p]) && before_word(p));
            for p in spaces.take(SEAM_TRIES).chain(others.take(SEAM_TRIES)) {
                if self.seam_holds(text, start, p, context, index) {
                    return (p, true);
                }
            }
        }
        // No whitespace cut: any character boundary whose cut checks out (a run of
        // punctuation, a script without spaces).
        let boundaries = positions().filter(|&p| text.is_char_boundary(p));
        for p in boundaries.take(SEAM_TRIES) {
            if self.seam_holds(text, start, p, context, index) {
                return (p, true);
            }
        }
        if rest.len() <= MAX_WHOLE_WINDOWS * window {
            return (text.len(), true);
        }
        // Nothing keeps the ids: cut at whitespace if there is some, else at the limit.
        (last_space.unwrap_or(limit), false)
    }

    /// Whether cutting `text` at `p` keeps the ids: the ids of the `context` bytes either
    /// side of `p` (not before `start`, the current window's start) equal the ids of the
    /// part before `p` followed by those of the part after it.
    fn seam_holds(&self, text: &str, start: usize, p: usize, context: usize, index: usize) -> bool {
        let mut a = p.saturating_sub(context).max(start);
        while !text.is_char_boundary(a) {
            a += 1;
        }
        let mut b = p.saturating_add(context).min(text.len());
        while !text.is_char_boundary(b) {
            b -= 1;
        }
        let (mut whole, mut split) = (Vec::new(), Vec::new());
        self.encode_piece(&text[a..b], index, &mut whole).is_ok()
            && self.encode_piece(&text[a..p], index, &mut split).is_ok()
            && self.encode_piece(&text[p..b], index, &mut split).is_ok()
            && whole == split
    }

    /// Whether long texts are cut only at whitespace without checking (BERT-style).
    #[doc(hidden)]
    pub fn cuts_at_any_whitespace(&self) -> bool {
        self.seams == SeamRule::Whitespace
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

/// Bytes either side of a cut checked by [`SeamRule::Verified`] tokenizers: far more than
/// any merge, added token or regex look-ahead spans.
pub const SEAM_CONTEXT_BYTES: usize = 2048;

/// Cut points of each kind tried per window before the next kind.
const SEAM_TRIES: usize = 4;

/// When no cut within a window keeps the ids, a rest of the text up to this many windows
/// is tokenized whole (exact; memory stays bounded).
pub const MAX_WHOLE_WINDOWS: usize = 4;

/// ASCII texts the fast path must agree on with the crate before it is used.
const PROBE_ASCII: [&str; 4] = [
    "Hello, World! don't stop-believing... (42) 3.14 #tag @user a##b [x] {y} ~z",
    "unaffable embeddings ABC abc aBc\ttab\r\nline\x00nul\x0bvt\x7fdel",
    "supercalifragilisticexpialidocious antidisestablishmentarianism a b c d e f g",
    "0123456789 `~!@#$%^&*()_+-=[]\\{}|;':\",./<>? the of and to in",
];

/// Vocabulary tokens (lowest ids first) the probe texts are built from.
const PROBE_VOCAB_TOKENS: usize = 400;

/// Default `max_tokens`: documents are embedded from their first 2^20 tokens (~4 MB of
/// English text), which bounds time and memory per document.
pub const DEFAULT_MAX_TOKENS: usize = 1 << 20;

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

    /// Cut of the first window of `text`, for the tiny BERT tokenizer.
    fn first_cut(text: &str, window: usize) -> usize {
        let t = TextTokenizer::from_json(&tiny_bert_json(false)).unwrap();
        assert!(t.cuts_at_any_whitespace());
        t.next_cut(text, 0, window, SEAM_CONTEXT_BYTES, 0).0
    }

    #[test]
    fn bert_windows_cut_before_whitespace_or_at_a_char_boundary() {
        assert_eq!(first_cut("ab cd", 10), 5);
        assert_eq!(first_cut("ab cd ef", 6), 5); // before the space preceding "ef"
        assert_eq!(first_cut("!é", 2), 1); // never inside a UTF-8 sequence
        assert_eq!(first_cut(" abc", 2), 1); // a leading space only: not an empty window
        assert_eq!(first_cut("é", 1), 2); // tiny window: one whole char

        // no whitespace: a checked cut (each "!" is a token of its own) ...
        assert_eq!(first_cut("!!!!!!!!", 4), 4);
        // ... or, when none checks out (one word), the whole rest if it is short enough
        assert_eq!(first_cut("abcdef", 4), 6);
        // U+2028 is whitespace to BERT: the checked cut before "cd" holds
        assert_eq!(first_cut("ab\u{2028}cd", 6), 5);
    }

    #[test]
    fn fast_path_with_an_empty_continuation_prefix() {
        // "##ld" is then an ordinary token and continuations are plain tokens
        let json = tiny_bert_json(false).replace(
            r###""continuing_subword_prefix":"##""###,
            r#""continuing_subword_prefix":"""#,
        );
        let t = TextTokenizer::from_json(&json).unwrap();
        assert!(t.has_fast_path());
        for text in ["world worhello hellowor cafe! wor", "helloworldhello"] {
            let (mut fast, mut reference) = (Vec::new(), Vec::new());
            t.encode_whole(text, 0, &mut fast).unwrap();
            t.encode_reference(text, 0, &mut reference).unwrap();
            assert_eq!(fast, reference, "{text:?}");
        }
        let mut ids = Vec::new();
        t.encode_whole("worhello", 0, &mut ids).unwrap();
        assert_eq!(ids, vec![3, 1]); // wor + hello, not [UNK]
    }

    #[test]
    fn fast_path_declines_what_it_does_not_reproduce() {
        let base = tiny_bert_json(false);
        for (from, to) in [
            (r#""clean_text":true"#, r#""clean_text":false"#),
            (r#""BertPreTokenizer""#, r#""WhitespaceSplit""#),
            (
                r#""version":"1.0""#,
                r#""version":"1.0","some_future_field":1"#,
            ),
            (
                r#""max_input_chars_per_word":100"#,
                r#""max_input_chars_per_word":100,"future":true"#,
            ),
        ] {
            let json = base.replace(from, to);
            assert_ne!(json, base);
            if let Ok(t) = TextTokenizer::from_json(&json) {
                assert!(!t.has_fast_path(), "{to}");
            }
        }
        assert!(TextTokenizer::from_json(&base).unwrap().has_fast_path());
    }

    #[test]
    fn normalized_added_token_behind_a_control_character() {
        // "he\0llo" normalizes to "hello", which the crate matches as the added token
        let json = tiny_bert_json(false).replace(
            r#""added_tokens":[]"#,
            r#""added_tokens":[{"id":8,"content":"hello","single_word":false,"lstrip":false,
               "rstrip":false,"normalized":true,"special":false}]"#,
        );
        let json = json.replace(r#""cafe":7"#, r#""cafe":7,"HELLO":8"#);
        let t = TextTokenizer::from_json(&json).unwrap();
        for text in ["he\u{0}llo world", "HeL\u{7f}lO"] {
            let (mut ours, mut reference) = (Vec::new(), Vec::new());
            t.encode_whole(text, 0, &mut ours).unwrap();
            t.encode_reference(text, 0, &mut reference).unwrap();
            assert_eq!(ours, reference, "{text:?}");
        }
    }

    #[test]
    fn byte_level_windows_keep_runs_of_spaces_whole() {
        let t = TextTokenizer::from_json(&crate::fuzzing::byte_level_bpe_json(false)).unwrap();
        assert!(!t.cuts_at_any_whitespace());
        // a run of spaces (merged into ĠĠ / ĠĠĠĠ tokens) across every window boundary
        for window in [7, 8, 9, 10, 13, 16] {
            for run in ["    ", "\n\n\n", " \n  ", "!!!!!"] {
                let text = format!("the{run}the the{run}{run}he  !! the{run}x");
                let mut whole = Vec::new();
                t.encode_whole(&text, 0, &mut whole).unwrap();
                let mut windowed = Vec::new();
                let exact = t
                    .encode_windows(
                        &text,
                        0,
                        &mut windowed,
                        usize::MAX,
                        window,
                        SEAM_CONTEXT_BYTES,
                    )
                    .unwrap();
                assert!(exact, "{text:?} / {window}");
                assert_eq!(windowed, whole, "{text:?} / {window}");
            }
        }
    }

    #[test]
    fn added_token_with_a_space_is_not_cut() {
        let json = tiny_bert_json(false).replace(
            r#""added_tokens":[]"#,
            r#""added_tokens":[{"id":8,"content":"hello world","single_word":false,"lstrip":false,
               "rstrip":false,"normalized":true,"special":false}]"#,
        );
        let t = TextTokenizer::from_json(&json).unwrap();
        assert!(!t.cuts_at_any_whitespace());
        let text = "wor hello world hello world cafe hello world";
        let mut whole = Vec::new();
        t.encode_whole(text, 0, &mut whole).unwrap();
        assert_eq!(whole.iter().filter(|&&id| id == 8).count(), 3);
        for window in 6..24 {
            let mut windowed = Vec::new();
            let exact = t
                .encode_windows(
                    text,
                    0,
                    &mut windowed,
                    usize::MAX,
                    window,
                    SEAM_CONTEXT_BYTES,
                )
                .unwrap();
            // " hello world" fits a window of 12 bytes; smaller ones may have to cut it,
            // and then say so
            assert!(exact || window < 12, "window {window}");
            assert_eq!(exact, windowed == whole, "window {window}");
        }
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

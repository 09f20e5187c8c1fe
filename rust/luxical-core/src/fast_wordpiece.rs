//! A specialised path for BERT-style tokenizers (BertNormalizer + BertPreTokenizer +
//! WordPiece) on ASCII text, with a per-thread word cache. It reproduces the `tokenizers`
//! crate's ids exactly for what it accepts and declines everything else (non-ASCII text,
//! text containing an added token such as `[SEP]`, other tokenizer configurations), which
//! then goes to the `tokenizers` crate.
//!
//! What the pipeline does to ASCII (tokenizers 0.22, `normalizers/bert.rs`,
//! `pre_tokenizers/bert.rs`, `models/wordpiece`): clean_text drops NUL and other control
//! characters except tab/CR/LF, which become spaces; lowercase; accents and Chinese-char
//! spacing do not touch ASCII; words are split on whitespace and every ASCII punctuation
//! character is a word of its own; each word is matched greedily, longest piece first,
//! continuation pieces looked up as `continuing_subword_prefix` + piece (`##` in BERT; an
//! empty prefix means the plain vocabulary); a word longer than
//! `max_input_chars_per_word`, or with an unmatched remainder, is the unknown token.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashMap;
use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Word,
    Space,
    Drop,
    Punct,
}

fn class_table() -> [Class; 128] {
    let mut t = [Class::Word; 128];
    for (b, c) in t.iter_mut().enumerate() {
        let b = b as u8;
        *c = if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            Class::Space
        } else if b < 0x20 || b == 0x7f {
            Class::Drop
        } else if b.is_ascii_punctuation() {
            Class::Punct
        } else {
            Class::Word
        };
    }
    t
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// (start, end) of each maximal run of bytes other than ASCII space/tab/CR/LF.
fn runs(bytes: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        if i == bytes.len() {
            return None;
        }
        let start = i;
        while i < bytes.len() && !is_space(bytes[i]) {
            i += 1;
        }
        Some((start, i))
    })
}

/// WordPiece vocabulary and settings read from a `tokenizer.json`.
#[derive(Debug)]
pub struct FastWordPiece {
    id: u64,
    pieces: FxHashMap<Box<[u8]>, u32>,
    continuations: FxHashMap<Box<[u8]>, u32>,
    unk: u32,
    max_chars: usize,
    max_piece: usize,
    lowercase: bool,
    added: Vec<Box<[u8]>>,
    added_first_bytes: [bool; 256],
}

/// Per-thread cache of word → ids (cleared when it grows past `CACHE_WORDS`, or when the
/// thread moves to another tokenizer).
struct WordCache {
    owner: u64,
    words: FxHashMap<Box<[u8]>, (u32, u32)>,
    ids: Vec<u32>,
}

const CACHE_WORDS: usize = 1 << 18;

thread_local! {
    static CACHE: RefCell<WordCache> = RefCell::new(WordCache {
        owner: u64::MAX,
        words: FxHashMap::default(),
        ids: Vec::new(),
    });
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Keys of a `tokenizer.json` whose content we know (tokenizers 0.22). Any other key
/// could change ids in a way this path does not reproduce, so it declines.
const TOP_KEYS: [&str; 9] = [
    "version",
    "truncation",
    "padding",
    "added_tokens",
    "normalizer",
    "pre_tokenizer",
    "post_processor",
    "decoder",
    "model",
];
const NORMALIZER_KEYS: [&str; 5] = [
    "type",
    "clean_text",
    "handle_chinese_chars",
    "strip_accents",
    "lowercase",
];
const MODEL_KEYS: [&str; 5] = [
    "type",
    "unk_token",
    "continuing_subword_prefix",
    "max_input_chars_per_word",
    "vocab",
];
const ADDED_TOKEN_KEYS: [&str; 7] = [
    "id",
    "content",
    "single_word",
    "lstrip",
    "rstrip",
    "normalized",
    "special",
];

/// `Some(obj)` when `v` is an object with only keys from `known`.
fn object_with<'a>(v: &'a Value, known: &[&str]) -> Option<&'a serde_json::Map<String, Value>> {
    let obj = v.as_object()?;
    obj.keys()
        .all(|k| known.contains(&k.as_str()))
        .then_some(obj)
}

fn is_drop(b: u8) -> bool {
    (b < 0x20 && !is_space(b)) || b == 0x7f
}

impl FastWordPiece {
    /// The fast path for this tokenizer, or `None` when its configuration is not one it
    /// reproduces exactly. Every field that can change ids is checked, not only the
    /// component types: the normalizer must be `BertNormalizer` with `clean_text` (its
    /// other switches do not touch ASCII), the pre-tokenizer `BertPreTokenizer`, the model
    /// `WordPiece` (any prefix, including the empty one, any word length limit), added
    /// tokens without whitespace; truncation and padding are off by then; the
    /// post-processor (special tokens are never added) and the decoder play no part.
    /// Unknown keys anywhere decline. `TextTokenizer::from_json` then also checks the
    /// result against the `tokenizers` crate on probe texts.
    pub fn from_json(json: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(json).ok()?;
        let top = object_with(&v, &TOP_KEYS)?;
        if !top.get("truncation").is_none_or(Value::is_null)
            || !top.get("padding").is_none_or(Value::is_null)
        {
            return None;
        }
        let norm = object_with(top.get("normalizer")?, &NORMALIZER_KEYS)?;
        if norm.get("type")?.as_str()? != "BertNormalizer"
            || !norm.get("clean_text")?.as_bool()?
            || norm.get("handle_chinese_chars")?.as_bool().is_none()
            || !(norm.get("strip_accents")?.is_null() || norm.get("strip_accents")?.is_boolean())
        {
            return None;
        }
        let lowercase = norm.get("lowercase")?.as_bool()?;
        let pre = object_with(top.get("pre_tokenizer")?, &["type"])?;
        if pre.get("type")?.as_str()? != "BertPreTokenizer" {
            return None;
        }
        let model = object_with(top.get("model")?, &MODEL_KEYS)?;
        if model.get("type")?.as_str()? != "WordPiece" {
            return None;
        }
        let prefix = model.get("continuing_subword_prefix")?.as_str()?;
        let unk_token = model.get("unk_token")?.as_str()?;
        let max_chars = usize::try_from(model.get("max_input_chars_per_word")?.as_u64()?).ok()?;
        let mut pieces = FxHashMap::default();
        let mut continuations = FxHashMap::default();
        let mut max_piece = 0;
        for (token, id) in model.get("vocab")?.as_object()? {
            let id = u32::try_from(id.as_u64()?).ok()?;
            // The crate looks a continuation piece `p` up as `prefix + p`: with an empty
            // prefix that is the plain vocabulary.
            if let Some(rest) = token.strip_prefix(prefix).filter(|r| !r.is_empty()) {
                max_piece = max_piece.max(rest.len());
                continuations.insert(rest.as_bytes().into(), id);
            }
            max_piece = max_piece.max(token.len());
            pieces.insert(token.as_bytes().into(), id);
        }
        let unk = *pieces.get(unk_token.as_bytes())?;
        let mut added: Vec<Box<[u8]>> = Vec::new();
        let mut added_first_bytes = [false; 256];
        for tok in top.get("added_tokens")?.as_array()? {
            let tok = object_with(tok, &ADDED_TOKEN_KEYS)?;
            let content = tok.get("content")?.as_str()?;
            let normalized = match tok.get("normalized") {
                None => false,
                Some(n) => n.as_bool()?,
            };
            // Tokens with whitespace can span runs, and non-ASCII tokens matched after
            // normalization can hide behind accents: leave such tokenizers to `tokenizers`.
            if content.is_empty()
                || content.chars().any(char::is_whitespace)
                || (normalized && !content.is_ascii())
            {
                return None;
            }
            // A normalized token is matched in the normalized text, where control
            // characters are gone (`he\0llo` is `hello`): match its normalized form in the
            // text without them (see `may_contain_added_token`).
            let pattern: Vec<u8> = if normalized {
                content.bytes().filter(|&b| !is_drop(b)).collect()
            } else {
                content.as_bytes().to_vec()
            };
            let Some(&first) = pattern.first() else {
                return None; // normalizes to nothing: the crate's behaviour is its own
            };
            // Found in the text (case-insensitively, to be safe) → the document takes
            // the `tokenizers` path.
            added_first_bytes[first as usize] = true;
            added_first_bytes[first.to_ascii_lowercase() as usize] = true;
            added_first_bytes[first.to_ascii_uppercase() as usize] = true;
            added.push(pattern.to_ascii_lowercase().into());
        }
        Some(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            pieces,
            continuations,
            unk,
            max_chars,
            max_piece,
            lowercase,
            added,
            added_first_bytes,
        })
    }

    /// Appends the ids of `text` and returns `Ok(true)`, or returns `Ok(false)` (appending
    /// nothing) when `text` is not for this path. Runs of non-ASCII text between ASCII
    /// whitespace go to `fallback` one at a time: normalization is per character and
    /// every BERT token ends at whitespace, so the pieces' ids concatenate to the whole
    /// text's.
    pub fn encode<E>(
        &self,
        text: &str,
        ids: &mut Vec<u32>,
        mut fallback: impl FnMut(&str, &mut Vec<u32>) -> Result<(), E>,
    ) -> Result<bool, E> {
        let bytes = text.as_bytes();
        if self.may_contain_added_token(bytes) {
            return Ok(false);
        }
        static TABLE: std::sync::OnceLock<[Class; 128]> = std::sync::OnceLock::new();
        let table = TABLE.get_or_init(class_table);
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.owner != self.id || cache.words.len() > CACHE_WORDS {
                cache.owner = self.id;
                cache.words.clear();
                cache.ids.clear();
            }
            let mut word: Vec<u8> = Vec::with_capacity(32);
            // Runs of non-whitespace, separated by ASCII whitespace (which only separates).
            for (start, end) in runs(bytes) {
                let run = &bytes[start..end];
                if !run.is_ascii() {
                    fallback(&text[start..end], ids)?;
                    continue;
                }
                for &b in run {
                    match table[b as usize] {
                        Class::Word => word.push(if self.lowercase {
                            b.to_ascii_lowercase()
                        } else {
                            b
                        }),
                        Class::Drop | Class::Space => {}
                        Class::Punct => {
                            self.flush(&mut word, ids, &mut cache);
                            word.push(b);
                            self.flush(&mut word, ids, &mut cache);
                        }
                    }
                }
                self.flush(&mut word, ids, &mut cache);
            }
            Ok(true)
        })
    }

    /// Whether `bytes` may hold an added token: its content, case-insensitively, in the
    /// text or in the text without control characters (which the normalizer drops before
    /// normalized tokens are matched). Over-approximates; a hit sends the text to the
    /// `tokenizers` crate.
    fn may_contain_added_token(&self, bytes: &[u8]) -> bool {
        // (Removing control characters adds no byte: no first byte, no token either way.)
        if self.added.is_empty() || !bytes.iter().any(|&b| self.added_first_bytes[b as usize]) {
            return false;
        }
        // Compared only where a token's first byte is (a text with one `[` used to be
        // lowercased whole and compared at every position against every token: a third
        // of the default model's time on long documents with brackets in them).
        let found = |hay: &[u8]| {
            hay.iter().enumerate().any(|(i, &b)| {
                self.added_first_bytes[b as usize]
                    && self.added.iter().any(|a| {
                        hay.get(i..i + a.len())
                            .is_some_and(|w| w.eq_ignore_ascii_case(a))
                    })
            })
        };
        if found(bytes) {
            return true;
        }
        if bytes.iter().any(|&b| is_drop(b)) {
            let cleaned: Vec<u8> = bytes.iter().copied().filter(|&b| !is_drop(b)).collect();
            return found(&cleaned);
        }
        false
    }

    fn flush(&self, word: &mut Vec<u8>, ids: &mut Vec<u32>, cache: &mut WordCache) {
        if word.is_empty() {
            return;
        }
        if let Some(&(start, len)) = cache.words.get(word.as_slice()) {
            ids.extend_from_slice(&cache.ids[start as usize..(start + len) as usize]);
        } else {
            let start = cache.ids.len();
            self.word_pieces(word, &mut cache.ids);
            let len = cache.ids.len() - start;
            ids.extend_from_slice(&cache.ids[start..]);
            cache
                .words
                .insert(word.as_slice().into(), (start as u32, len as u32));
        }
        word.clear();
    }

    /// Greedy longest-match WordPiece of one ASCII word (as `tokenizers`' WordPiece).
    fn word_pieces(&self, word: &[u8], out: &mut Vec<u32>) {
        if word.len() > self.max_chars {
            out.push(self.unk);
            return;
        }
        let first = out.len();
        let mut start = 0;
        while start < word.len() {
            let map = if start == 0 {
                &self.pieces
            } else {
                &self.continuations
            };
            let mut end = word.len().min(start + self.max_piece);
            let mut found = None;
            while end > start {
                if let Some(&id) = map.get(&word[start..end]) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(first);
                    out.push(self.unk);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bert_like(added: &[(&str, bool)]) -> FastWordPiece {
        let vocab: serde_json::Map<String, Value> = ["[UNK]", "a", "##b"]
            .iter()
            .enumerate()
            .map(|(i, t)| ((*t).to_owned(), Value::from(i)))
            .collect();
        let added: Vec<Value> = added
            .iter()
            .enumerate()
            .map(|(i, (content, normalized))| {
                serde_json::json!({"id": 10 + i, "content": content, "single_word": false,
                    "lstrip": false, "rstrip": false, "normalized": normalized, "special": true})
            })
            .collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                           "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": null, "decoder": null,
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": 100, "vocab": vocab}
        });
        FastWordPiece::from_json(&json.to_string()).expect("a tokenizer this path takes")
    }

    /// The definition: a token's (lower-cased) pattern occurs in the lower-cased text, or
    /// in the lower-cased text without control characters.
    fn naive(tok: &FastWordPiece, text: &[u8]) -> bool {
        let lower = text.to_ascii_lowercase();
        let cleaned: Vec<u8> = lower.iter().copied().filter(|&b| !is_drop(b)).collect();
        [lower, cleaned].iter().any(|hay| {
            tok.added
                .iter()
                .any(|a| hay.windows(a.len()).any(|w| w == &a[..]))
        })
    }

    #[test]
    fn added_token_search_matches_its_definition() {
        let tok = bert_like(&[
            ("[SEP]", false),
            ("[MASK]", true),
            ("<s>", false),
            ("[S", false),
        ]);
        let mut next = crate::test_rng(0x9E37_79B9_7F4A_7C15u64);
        // Texts made of pieces of the tokens, their case variants, control characters
        // and filler, so that near misses, overlaps and tokens at either end all occur.
        let pieces: [&[u8]; 12] = [
            b"[", b"]", b"sep", b"SeP", b"mas", b"k", b"<", b"s>", b"\x01", b"\x7f", b"word ",
            b"[[",
        ];
        let mut hits = 0;
        for _ in 0..20_000 {
            let text: Vec<u8> = (0..next(9))
                .flat_map(|_| pieces[next(12) as usize].to_vec())
                .collect();
            let want = naive(&tok, &text);
            hits += usize::from(want);
            assert_eq!(
                tok.may_contain_added_token(&text),
                want,
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }
        assert!(
            hits > 1000 && hits < 19_000,
            "{hits} hits: the texts do not test both sides"
        );
        assert!(!bert_like(&[]).may_contain_added_token(b"[SEP]"));
    }
}

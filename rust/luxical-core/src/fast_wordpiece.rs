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
//! continuation pieces carrying the `##` prefix; a word longer than
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

impl FastWordPiece {
    /// The fast path for this tokenizer, or `None` when its configuration is not one it
    /// reproduces exactly.
    pub fn from_json(json: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(json).ok()?;
        let norm = v.get("normalizer")?;
        if norm.get("type")?.as_str()? != "BertNormalizer" || !norm.get("clean_text")?.as_bool()? {
            return None;
        }
        let lowercase = norm.get("lowercase")?.as_bool()?;
        if v.get("pre_tokenizer")?.get("type")?.as_str()? != "BertPreTokenizer" {
            return None;
        }
        let model = v.get("model")?;
        if model.get("type")?.as_str()? != "WordPiece" {
            return None;
        }
        let prefix = model.get("continuing_subword_prefix")?.as_str()?;
        let unk_token = model.get("unk_token")?.as_str()?;
        let max_chars = model.get("max_input_chars_per_word")?.as_u64()? as usize;
        let mut pieces = FxHashMap::default();
        let mut continuations = FxHashMap::default();
        let mut max_piece = 0;
        for (token, id) in model.get("vocab")?.as_object()? {
            let id = u32::try_from(id.as_u64()?).ok()?;
            if let Some(rest) = token.strip_prefix(prefix).filter(|_| !prefix.is_empty()) {
                max_piece = max_piece.max(rest.len());
                continuations.insert(rest.as_bytes().into(), id);
            }
            max_piece = max_piece.max(token.len());
            pieces.insert(token.as_bytes().into(), id);
        }
        let unk = *pieces.get(unk_token.as_bytes())?;
        let mut added = Vec::new();
        let mut added_first_bytes = [false; 256];
        for tok in v.get("added_tokens")?.as_array()? {
            let content = tok.get("content")?.as_str()?;
            let normalized = tok
                .get("normalized")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            // Tokens with whitespace can span runs, and non-ASCII tokens matched after
            // normalization can hide behind accents: leave such tokenizers to `tokenizers`.
            if content.is_empty()
                || content.bytes().any(is_space)
                || (normalized && !content.is_ascii())
            {
                return None;
            }
            // Found in the raw text (case-insensitively, to be safe) → the document takes
            // the `tokenizers` path.
            added_first_bytes[content.as_bytes()[0] as usize] = true;
            added_first_bytes[content.as_bytes()[0].to_ascii_lowercase() as usize] = true;
            added_first_bytes[content.as_bytes()[0].to_ascii_uppercase() as usize] = true;
            added.push(content.as_bytes().into());
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

    fn may_contain_added_token(&self, bytes: &[u8]) -> bool {
        if self.added.is_empty() || !bytes.iter().any(|&b| self.added_first_bytes[b as usize]) {
            return false;
        }
        let lower: Vec<u8> = bytes.to_ascii_lowercase();
        self.added.iter().any(|a| {
            let a_lower = a.to_ascii_lowercase();
            lower.windows(a.len()).any(|w| w == &a_lower[..])
        })
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

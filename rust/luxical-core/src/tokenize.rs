//! Tokenization with a Hugging Face `tokenizer.json` (the `tokenizers` crate): token ids as
//! u32, no special tokens, never truncated or padded.

use std::str::FromStr;

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// A tokenizer built from `tokenizer.json` text.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// The JSON to store when saving: the original text, unless we had to switch
    /// truncation or padding off, in which case the re-serialised tokenizer.
    json: String,
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
        let mut inner =
            Tokenizer::from_str(json).map_err(|e| Error::TokenizerLoad(e.to_string()))?;
        let had_extras = inner.get_truncation().is_some() || inner.get_padding().is_some();
        inner
            .with_truncation(None)
            .map_err(|e| Error::TokenizerLoad(e.to_string()))?;
        inner.with_padding(None);
        let json = if had_extras {
            inner
                .to_string(false)
                .map_err(|e| Error::TokenizerLoad(e.to_string()))?
        } else {
            json.to_string()
        };
        Ok(Self { inner, json })
    }

    /// The tokenizer JSON to store in a model file.
    pub fn to_json(&self) -> &str {
        &self.json
    }

    /// Size of the tokenizer's vocabulary (token ids are below this).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text` (no special tokens) appended to `ids`. `index` names the
    /// document in errors.
    pub fn encode_into(&self, text: &str, index: usize, ids: &mut Vec<u32>) -> Result<()> {
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

    /// Token ids of every text, one vector per text, in parallel on the luxical pool.
    pub fn encode_batch(
        &self,
        texts: &[&str],
        num_threads: Option<usize>,
    ) -> Result<Vec<Vec<u32>>> {
        use rayon::prelude::*;
        crate::threads::pool(num_threads)?.install(|| {
            texts
                .par_iter()
                .enumerate()
                .map(|(i, text)| {
                    let mut ids = Vec::new();
                    self.encode_into(text, i, &mut ids)?;
                    Ok(ids)
                })
                .collect()
        })
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
        t.encode_into("Hello WORLD! xyz", 0, &mut ids).unwrap();
        assert_eq!(ids, vec![1, 2, 5, 0]);
        ids.clear();
        t.encode_into("", 0, &mut ids).unwrap();
        assert!(ids.is_empty());
    }

    #[test]
    fn truncation_is_switched_off() {
        let t = TextTokenizer::from_json(&tiny_bert_json(true)).unwrap();
        let mut ids = Vec::new();
        t.encode_into("hello world hello world", 0, &mut ids)
            .unwrap();
        assert_eq!(ids.len(), 4);
        assert!(t.to_json().contains("\"truncation\":null"));
    }

    #[test]
    fn bad_json_is_an_error() {
        let err = TextTokenizer::from_json("{not json").unwrap_err();
        assert!(matches!(err, Error::TokenizerLoad(_)));
    }
}

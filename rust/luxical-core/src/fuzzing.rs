//! Property checks driven by the fuzz targets in `fuzz/` and replayed by
//! `tests/fuzz_regressions.rs` on every input the fuzzers ever kept. Each check panics
//! (the fuzzer's crash signal) when an invariant breaks; errors returned for bad input
//! are fine.

use crate::mlp::DenseLayer;
use crate::model::LoadOptions;
use crate::ngrams::PAD_TOKEN;
use crate::options::RunOptions;
use crate::tokenize::TextTokenizer;
use crate::vocab::Vocabulary;
use crate::Model;

/// A BERT-uncased-style tokenizer (the real normalizer and pre-tokenizer, a small
/// WordPiece vocabulary) and a 3-gram model over it.
pub fn bert_like_model() -> Model {
    let words = [
        "[UNK]", "the", "a", "of", "and", "to", "in", "is", "for", "on", "with", "data", "text",
        "embed", "##ding", "##s", "##ed", "un", "##k", "!", ".", ",", "?", "-", "(", ")", "中",
        "文", "é", "e", "1", "##2", "0", "[SEP]", "##a", "##t", "##e", "t", "d", "x", "##x", "#",
    ];
    let vocab_json: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| format!("\"{w}\":{i}"))
        .collect();
    let json = format!(
        r###"{{"version":"1.0","truncation":null,"padding":null,
        "added_tokens":[{{"id":33,"special":true,"content":"[SEP]","single_word":false,"lstrip":false,
          "rstrip":false,"normalized":false}}],
        "normalizer":{{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,
          "strip_accents":null,"lowercase":true}},
        "pre_tokenizer":{{"type":"BertPreTokenizer"}},"post_processor":null,"decoder":null,
        "model":{{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##",
          "max_input_chars_per_word":100,"vocab":{{{}}}}}}}"###,
        vocab_json.join(",")
    );
    let tokenizer = TextTokenizer::from_json(&json).expect("valid tokenizer json");
    let p = PAD_TOKEN;
    let mut ngrams = Vec::new();
    for id in 0..words.len() as u32 {
        ngrams.extend_from_slice(&[id, p, p]);
    }
    ngrams.extend_from_slice(&[1, 11, p, 13, 14, p, 2, 3, 1, 0, 0, p]);
    let n = ngrams.len() / 3;
    let vocab = Vocabulary::from_ngrams(ngrams, 3).expect("valid vocabulary");
    let idf: Vec<f32> = (0..n).map(|i| 1.0 + (i % 5) as f32 * 0.25).collect();
    let layer = |out_dim: usize, in_dim: usize, seed: usize| DenseLayer {
        out_dim,
        in_dim,
        weights_out_in: (0..out_dim * in_dim)
            .map(|i| (((i * 7919 + seed * 104729) % 2001) as f32 - 1000.0) / 1000.0)
            .collect(),
    };
    Model::new(tokenizer, vocab, idf, vec![layer(8, n, 1), layer(6, 8, 2)]).expect("valid model")
}

fn check_rows(out: &[f32], dim: usize) {
    for row in out.chunks(dim) {
        assert!(
            row.iter().all(|v| v.is_finite()),
            "non-finite embedding {row:?}"
        );
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(
            norm == 0.0 || (norm - 1.0).abs() < 1e-4,
            "row norm {norm} is neither 0 nor 1"
        );
    }
}

/// Arbitrary bytes as text (lossy UTF-8), split into documents at 0xFF bytes: the
/// tokenizer, n-gram features and network never panic; rows are unit or zero; each
/// document embeds as if alone; `max_tokens` keeps a prefix of the ids; tokenizing in
/// windows (any size) gives the ids of the whole text; the fast WordPiece path gives the
/// `tokenizers` crate's ids.
pub fn tokenize_and_embed(data: &[u8]) {
    thread_local! {
        static MODEL: Model = bert_like_model();
    }
    let (knob, data) = data.split_first().map_or((0u8, data), |(k, d)| (*k, d));
    let docs: Vec<String> = data
        .split(|&b| b == 0xFF)
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect();
    let views: Vec<&str> = docs.iter().map(String::as_str).collect();
    MODEL.with(|model| {
        let dim = model.dim();
        let mut out = vec![f32::NAN; views.len() * dim];
        model
            .embed_into(&views, &mut out, &RunOptions::threads(Some(1)))
            .expect("any text embeds");
        check_rows(&out, dim);
        for (i, text) in views.iter().enumerate().take(4) {
            let mut alone = vec![0.0; dim];
            model
                .embed_into(&[text], &mut alone, &RunOptions::threads(Some(1)))
                .unwrap();
            assert_eq!(
                alone,
                out[i * dim..(i + 1) * dim],
                "document {i} depends on its batch"
            );
        }
        let tok = model.tokenizer();
        for text in views.iter().take(4) {
            let mut whole = Vec::new();
            tok.encode_whole(text, 0, &mut whole).unwrap();
            let mut reference = Vec::new();
            tok.encode_reference(text, 0, &mut reference).unwrap();
            assert_eq!(whole, reference, "fast WordPiece path differs on {text:?}");
            // Windows of any size, each cut checked on the whole rest of the text: every
            // cut the tokenizer reports as keeping the ids must keep them.
            let window = 1 + (knob as usize % 64);
            let short = &text[..text.floor_char_boundary_compat(SEAM_TEXT_BYTES)];
            let mut whole_short = Vec::new();
            tok.encode_whole(short, 0, &mut whole_short).unwrap();
            let mut windowed = Vec::new();
            let exact = tok
                .encode_windows(short, 0, &mut windowed, usize::MAX, window, usize::MAX)
                .unwrap();
            assert!(
                exact || !no_long_runs(short, window),
                "a BERT-style cut at whitespace reported as inexact"
            );
            if exact {
                assert_eq!(
                    windowed, whole_short,
                    "window {window} changed the ids of {text:?}"
                );
            }
            let limit = knob as usize % 16;
            let mut first = Vec::new();
            tok.encode_into(text, 0, &mut first, Some(limit)).unwrap();
            assert_eq!(first, whole[..whole.len().min(limit)]);
        }
    });
}

/// The GPT-2 byte-to-character map of byte-level BPE (`bytes_to_unicode`).
fn byte_level_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + rank).expect("valid char")
}

/// A GPT-2-style byte-level BPE tokenizer with merges of runs of spaces (`ĠĠ`, `ĠĠĠĠ`),
/// newlines, punctuation and a few words.
pub fn byte_level_bpe_json(add_prefix_space: bool) -> String {
    let mut vocab: Vec<String> = (0..=255u8)
        .map(|b| byte_level_char(b).to_string())
        .collect();
    let merges = [
        ("Ġ", "Ġ"),
        ("ĠĠ", "ĠĠ"),
        ("Ċ", "Ċ"),
        ("ĊĊ", "Ċ"),
        ("Ġ", "Ċ"),
        ("!", "!"),
        ("h", "e"),
        ("t", "he"),
        ("Ġ", "the"),
        ("Ġ", "t"),
        ("e", "r"),
        ("Ġ", "a"),
        ("ĉ", "ĉ"),
        ("č", "Ċ"),
    ];
    for (a, b) in merges {
        vocab.push(format!("{a}{b}"));
    }
    let escape = |t: &str| serde_json::to_string(t).expect("string");
    let vocab_json: Vec<String> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{}:{i}", escape(t)))
        .collect();
    let merges_json: Vec<String> = merges
        .iter()
        .map(|(a, b)| format!("[{},{}]", escape(a), escape(b)))
        .collect();
    format!(
        r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":null,
        "pre_tokenizer":{{"type":"ByteLevel","add_prefix_space":{add_prefix_space},"trim_offsets":true,"use_regex":true}},
        "post_processor":null,"decoder":{{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}},
        "model":{{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,
          "end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,
          "vocab":{{{}}},"merges":[{}]}}}}"#,
        vocab_json.join(","),
        merges_json.join(",")
    )
}

/// A tokenizer.json chosen by `variant`: the BERT-like WordPiece of [`bert_like_model`]
/// with one or more fields flipped (normalizer, pre-tokenizer, continuation prefix, word
/// length limit, unknown token, added tokens), or a byte-level BPE. Some combinations
/// do not load; that is fine.
pub fn tokenizer_variant(variant: u16) -> String {
    let bits = |shift: u32, n: u16| ((variant >> shift) % n) as usize;
    if bits(0, 8) == 7 {
        return byte_level_bpe_json(bits(3, 2) == 1);
    }
    let words = [
        "[UNK]", "[PAD]", "the", "a", "of", "and", "to", "in", "is", "for", "on", "with", "data",
        "text", "embed", "##ding", "##s", "##ed", "un", "##k", "!", ".", ",", "?", "-", "(", ")",
        "中", "文", "é", "e", "1", "##2", "0", "##a", "##t", "##e", "t", "d", "x", "##x", "#",
        "ding", "s", "ed", "k", "@@s", "@@ed", "xs", "hello", "##llo", "he", "new", "york",
    ];
    let vocab: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| format!("\"{w}\":{i}"))
        .collect();
    let prefix = ["##", "", "@@", "x"][bits(0, 4)];
    let lowercase = bits(2, 2) == 0;
    let strip_accents = ["null", "true", "false"][bits(3, 3)];
    let normalizer = match bits(5, 4) {
        0 | 1 => format!(
            r#"{{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":{},"strip_accents":{strip_accents},"lowercase":{lowercase}}}"#,
            bits(7, 2) == 0
        ),
        2 => r#"{"type":"BertNormalizer","clean_text":false,"handle_chinese_chars":true,"strip_accents":null,"lowercase":true}"#.into(),
        _ => r#"{"type":"Lowercase"}"#.into(),
    };
    let pre_tokenizer = [
        r#"{"type":"BertPreTokenizer"}"#,
        r#"{"type":"BertPreTokenizer"}"#,
        r#"{"type":"WhitespaceSplit"}"#,
        r#"{"type":"Sequence","pretokenizers":[{"type":"BertPreTokenizer"},{"type":"Digits","individual_digits":true}]}"#,
        r#"{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}"#,
    ][bits(8, 5)];
    let max_chars = [100, 100, 3, 0][bits(11, 4)];
    let unk = ["[UNK]", "[PAD]"][bits(13, 2)];
    let added = match bits(14, 4) {
        0 | 1 => "",
        2 => {
            r#"{"id":0,"content":"[SEP]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}"#
        }
        _ => {
            r#"{"id":53,"content":"new york","single_word":false,"lstrip":false,"rstrip":false,"normalized":true,"special":false},
               {"id":49,"content":"hello","single_word":false,"lstrip":false,"rstrip":false,"normalized":true,"special":false}"#
        }
    };
    format!(
        r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[{added}],
        "normalizer":{normalizer},"pre_tokenizer":{pre_tokenizer},"post_processor":null,"decoder":null,
        "model":{{"type":"WordPiece","unk_token":"{unk}","continuing_subword_prefix":"{prefix}",
          "max_input_chars_per_word":{max_chars},"vocab":{{{}}}}}}}"#,
        vocab.join(",")
    )
}

/// The first two bytes pick a tokenizer configuration ([`tokenizer_variant`]), the third a
/// window size (small, so that a short text has many seams); the rest is the text (lossy
/// UTF-8). The tokenizer, fast path or not, gives the `tokenizers` crate's ids; windows
/// whose cuts are reported as keeping the ids give the ids of the whole text.
pub fn tokenizer_configs(data: &[u8]) {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static BUILT: RefCell<HashMap<u16, Option<TextTokenizer>>> = RefCell::new(HashMap::new());
    }
    if data.len() < 3 {
        return;
    }
    let variant = u16::from_le_bytes([data[0], data[1]]);
    let window = 1 + data[2] as usize % 48;
    let text = String::from_utf8_lossy(&data[3..]);
    // Each checked cut tokenizes the rest of the text again: keep it short.
    let text = &text[..text.floor_char_boundary_compat(SEAM_TEXT_BYTES)];
    let tok = BUILT.with(|built| {
        built
            .borrow_mut()
            .entry(variant)
            .or_insert_with(|| TextTokenizer::from_json(&tokenizer_variant(variant)).ok())
            .clone()
    });
    let Some(tok) = tok else {
        return;
    };
    let mut whole = Vec::new();
    tok.encode_whole(text, 0, &mut whole).unwrap();
    let mut reference = Vec::new();
    tok.encode_reference(text, 0, &mut reference).unwrap();
    assert_eq!(
        whole, reference,
        "variant {variant}: fast WordPiece path differs on {text:?}"
    );
    let mut windowed = Vec::new();
    let exact = tok
        .encode_windows(text, 0, &mut windowed, usize::MAX, window, usize::MAX)
        .unwrap();
    if exact || tok.cuts_at_any_whitespace() && no_long_runs(text, window) {
        assert_eq!(
            windowed, whole,
            "variant {variant}: window {window} changed the ids of {text:?}"
        );
    }
}

/// Texts whose windows are checked are cut to this many bytes (a checked cut
/// tokenizes the rest of the text again, so the cost grows with its square).
const SEAM_TEXT_BYTES: usize = 512;

/// Whether every run without ASCII whitespace fits in a window with room to spare (then
/// a whitespace-cutting tokenizer always finds a cut).
fn no_long_runs(text: &str, window: usize) -> bool {
    text.split([' ', '\t', '\n', '\r'])
        .all(|run| run.len() + 5 <= window)
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, index: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, index: usize) -> usize {
        let mut i = index.min(self.len());
        while !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

/// Arbitrary bytes as a model file: loading returns an error or a model, never panics or
/// allocates beyond what the bytes can back; a model that loads embeds finite rows.
/// Bytes starting with `b'M'` are applied as edits to a valid model file instead, so
/// the fuzzer also explores inputs that get past the zip layer.
pub fn load_model(data: &[u8]) {
    let bytes: Vec<u8> = match data.split_first() {
        Some((b'M', edits)) => {
            thread_local! {
                static VALID: Vec<u8> = bert_like_model().to_bytes("fuzz", false).unwrap();
            }
            let mut bytes = VALID.with(Clone::clone);
            for edit in edits.chunks_exact(3) {
                let pos = (u16::from_le_bytes([edit[0], edit[1]]) as usize * 7) % bytes.len();
                bytes[pos] = edit[2];
            }
            if let Some(&cut) = edits.last() {
                if cut < 16 {
                    bytes.truncate(bytes.len() * cut as usize / 16);
                }
            }
            bytes
        }
        _ => data.to_vec(),
    };
    let texts = ["the data text", "", "embedding of a b c 中文 1 2"];
    let embed = |model: &Model| {
        let dim = model.dim();
        let mut out = vec![0.0; texts.len() * dim];
        model
            .embed_into(&texts, &mut out, &RunOptions::threads(Some(1)))
            .expect("a model that loads embeds");
        check_rows(&out, dim);
        out
    };
    let in_memory = Model::from_bytes(&bytes).ok().map(|m| embed(&m));
    // The same bytes as a file, through the path loader (streaming transposition, CRC
    // check, weight cache): twice, so the second load maps the cache the first wrote.
    let dir = std::env::temp_dir().join(format!(
        "luxical-fuzz-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("model.npz");
    if std::fs::write(&path, &bytes).is_ok() {
        let opts = LoadOptions {
            weight_cache: Some(dir.join("cache")),
            ..LoadOptions::default()
        };
        let first = Model::load_with(&path, &opts).ok().map(|m| embed(&m));
        let again = Model::load_with(&path, &opts).ok().map(|m| embed(&m));
        assert_eq!(first, again, "a mapped weight cache changed the model");
        if let (Some(a), Some(b)) = (&in_memory, &first) {
            assert_eq!(a, b, "file and in-memory loads of the same bytes differ");
        }
        let _ = std::fs::remove_dir_all(dir.join("cache"));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn checks_pass_on_simple_inputs() {
        super::tokenize_and_embed(
            b"\x3fThe data\xFFtext embeddings, un-k! \xe4\xb8\xad\xe6\x96\x87 e\xcc\x81 \xFF",
        );
        super::load_model(b"M");
        super::load_model(b"PK\x03\x04garbage");
    }

    #[test]
    fn every_tokenizer_variant_passes_on_seam_texts() {
        let texts: [&[u8]; 4] = [
            b"the  the   the    he\n\n\nthe !!!! the\t\tx  new york hello world",
            b"Unaffable EMBEDDINGS, he\x00llo  wor\x0bld [SEP] x[SEP]y 12 345 cafe\xcc\x81",
            b"    \n\n  !!  ..  the\r\n\r\nthe  ",
            b"\xe4\xb8\xad\xe6\x96\x87text   embeddings dings eds xs @@s",
        ];
        let mut loaded = 0;
        for variant in (0..u16::MAX).step_by(331).chain([7, 15, 0, 1, 2, 3]) {
            if crate::tokenize::TextTokenizer::from_json(&super::tokenizer_variant(variant)).is_ok()
            {
                loaded += 1;
            }
            for text in texts {
                for window in [0u8, 3, 6, 9, 17] {
                    let mut data = variant.to_le_bytes().to_vec();
                    data.push(window);
                    data.extend_from_slice(text);
                    super::tokenizer_configs(&data);
                }
            }
        }
        assert!(loaded > 50, "{loaded} variants load");
    }
}

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
            let window = 1 + (knob as usize % 64);
            let mut windowed = Vec::new();
            tok.encode_windows(text, 0, &mut windowed, usize::MAX, window)
                .unwrap();
            // Windows are cut at ASCII whitespace; only a run without any that does not
            // fit in a window is cut mid-run (documented), so compare when all fit.
            let longest_run = text
                .split([' ', '\t', '\n', '\r'])
                .map(str::len)
                .max()
                .unwrap_or(0);
            if longest_run + 5 <= window {
                assert_eq!(
                    windowed, whole,
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
}

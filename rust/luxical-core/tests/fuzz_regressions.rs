//! Replays every input the fuzzers found a bug with (`fuzz/regressions/<target>/`) and
//! the seed corpus (`fuzz/corpus/<target>/`) through the same checks as the fuzz
//! targets, so a fixed bug stays fixed without running the fuzzers.

use std::fs;
use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut n = 0;
    for dir in ["regressions", "corpus"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails its check again", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn tokenize_and_embed_inputs() {
    assert!(
        replay(
            "tokenize_and_embed",
            luxical_core::fuzzing::tokenize_and_embed
        ) > 0
    );
}

#[test]
fn load_model_inputs() {
    assert!(replay("load_model", luxical_core::fuzzing::load_model) > 0);
}

#[test]
fn tokenizer_configs_inputs() {
    assert!(
        replay(
            "tokenizer_configs",
            luxical_core::fuzzing::tokenizer_configs
        ) > 0
    );
}

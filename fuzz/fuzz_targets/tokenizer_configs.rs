//! Tokenizer configurations (fields of a tokenizer.json flipped, or a byte-level BPE) and
//! small windows on arbitrary text: the fast path and the window seams keep the
//! `tokenizers` crate's ids (checks in `luxical_core::fuzzing::tokenizer_configs`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| luxical_core::fuzzing::tokenizer_configs(data));

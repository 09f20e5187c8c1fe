//! Arbitrary text through tokenizer → n-gram features → network (checks in
//! `luxical_core::fuzzing::tokenize_and_embed`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| luxical_core::fuzzing::tokenize_and_embed(data));

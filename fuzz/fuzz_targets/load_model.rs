//! Arbitrary bytes, and edits of a valid model file, through the model loader (checks in
//! `luxical_core::fuzzing::load_model`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| luxical_core::fuzzing::load_model(data));

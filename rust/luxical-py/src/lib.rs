//! `luxical._luxical`: the native module. Glue only: convert arguments, release the GIL
//! around the core call, convert results and errors.

mod errors;
mod gemm;
mod heads;
mod model;
mod training;

use pyo3::prelude::*;

#[pymodule]
fn _luxical(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("FORMAT_VERSION", luxical_core::format::FORMAT_VERSION)?;
    m.add(
        "DEFAULT_MAX_TOKENS",
        luxical_core::tokenize::DEFAULT_MAX_TOKENS,
    )?;
    m.add_class::<model::Model>()?;
    m.add_class::<heads::Head>()?;
    m.add_class::<heads::Heads>()?;
    m.add_function(wrap_pyfunction!(model::resolve_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(model::env_flag, m)?)?;
    m.add_function(wrap_pyfunction!(gemm::cpu_info, m)?)?;
    m.add_function(wrap_pyfunction!(model::hash_ngram, m)?)?;
    m.add_function(wrap_pyfunction!(model::file_fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(model::clear_weight_cache, m)?)?;
    m.add_class::<training::Tokenizer>()?;
    m.add_class::<training::Featurizer>()?;
    m.add_class::<training::SpaceSaving>()?;
    m.add_function(wrap_pyfunction!(training::exact_ngram_counts, m)?)?;
    Ok(())
}

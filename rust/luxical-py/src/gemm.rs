//! `cpu_info()`: the CPU features the dense-layer kernels use and the kernels chosen
//! (`luxical_core::gemm`).

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::emit_warnings;

/// The CPU features luxical's dense-layer kernels use and the kernels this process runs:
/// a dict with `arch`, `features` (name -> bool), `float32_kernels` / `int8_kernels` /
/// `bfloat16_kernels` (those this CPU runs, worst to best), `float32_kernel`,
/// `int8_kernel` and `bfloat16_kernel` (in use:
/// chosen on first use from the CPU, `LUXICAL_KERNEL` and `LUXICAL_NO_SIMD`; a setting
/// that cannot be honoured gives a `LuxicalWarning`).
#[pyfunction]
pub fn cpu_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let info = luxical_core::gemm::cpu_info();
    emit_warnings(py)?;
    let features = PyDict::new(py);
    for (name, present) in info.features {
        features.set_item(name, present)?;
    }
    let dict = PyDict::new(py);
    dict.set_item("arch", info.arch)?;
    dict.set_item("features", features)?;
    dict.set_item("float32_kernels", info.float32_kernels)?;
    dict.set_item("int8_kernels", info.int8_kernels)?;
    dict.set_item("float32_kernel", info.float32_kernel)?;
    dict.set_item("int8_kernel", info.int8_kernel)?;
    dict.set_item("bfloat16_kernels", info.bf16_kernels)?;
    dict.set_item("bfloat16_kernel", info.bf16_kernel)?;
    Ok(dict)
}

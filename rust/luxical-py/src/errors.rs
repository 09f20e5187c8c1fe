//! core::Error → Python exceptions. The classes live in `luxical/errors.py` (so that they
//! can inherit from both `LuxicalError` and the matching built-in); we look them up here.

use luxical_core::Error;
use pyo3::exceptions::{
    PyFileNotFoundError, PyOSError, PyRuntimeError, PyRuntimeWarning, PyValueError,
};
use pyo3::prelude::*;

fn luxical_exception(py: Python<'_>, class: &str, message: String) -> PyErr {
    let made = py
        .import("luxical.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|cls| cls.call1((message.clone(),)));
    match made {
        Ok(instance) => PyErr::from_value(instance),
        Err(_) => PyRuntimeError::new_err(message),
    }
}

/// Converts a core error into the Python exception users catch.
pub fn to_pyerr(py: Python<'_>, err: Error) -> PyErr {
    let message = err.to_string();
    match err {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        Error::Io { .. } => PyOSError::new_err(message),
        Error::UnsupportedFormatVersion { .. } => {
            luxical_exception(py, "UnsupportedFormatVersionError", message)
        }
        Error::Archive(_)
        | Error::MissingArray(_)
        | Error::UnsupportedDtype { .. }
        | Error::MalformedArray { .. }
        | Error::ShapeMismatch { .. }
        | Error::InconsistentModel(_)
        | Error::TokenizerLoad(_) => luxical_exception(py, "ModelFormatError", message),
        Error::Tokenize { .. } => luxical_exception(py, "TokenizationError", message),
        Error::InvalidArgument(_) => PyValueError::new_err(message),
        Error::ThreadPool { .. } | Error::Cancelled => {
            luxical_exception(py, "LuxicalError", message)
        }
    }
}

/// An internal invariant failure (a Rust panic), surfaced as an exception with context.
pub fn panic_to_pyerr(py: Python<'_>, what: &str, payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let detail = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    luxical_exception(
        py,
        "LuxicalError",
        format!("internal error while {what}: {detail}; please report this as a bug"),
    )
}

/// Raises the warnings the core queued (`luxical_core::settings::take_warnings`: a capped
/// thread count, an unreadable boolean variable) as `luxical.errors.LuxicalWarning`,
/// attributed to the caller of the luxical function. Under an "error" warnings filter
/// this returns the exception.
pub fn emit_warnings(py: Python<'_>) -> PyResult<()> {
    let pending = luxical_core::settings::take_warnings();
    if pending.is_empty() {
        return Ok(());
    }
    let category = py
        .import("luxical.errors")
        .and_then(|m| m.getattr("LuxicalWarning"))
        .unwrap_or_else(|_| py.get_type::<PyRuntimeWarning>().into_any());
    for message in pending {
        let text = std::ffi::CString::new(message.replace('\0', " "))
            .unwrap_or_else(|_| c"luxical warning".to_owned());
        PyErr::warn(py, &category, &text, 2)?;
    }
    Ok(())
}

//! `xent._xent`: the Rust module under the Python package `xent` (python/xent/), which
//! gives it PyTorch's names and defaults. Arrays come in as NumPy arrays (borrowed where the
//! dtype and layout allow), the GIL is released while a device or the CPU works, and every
//! library error becomes one of the package's exceptions (python/xent/_errors.py): nothing
//! here panics on a user's input.

use pyo3::prelude::*;

mod arrays;
mod backend;
mod cpu;
mod errors;
mod evaluate;
mod files;
mod grad;
mod ops;

/// The extension module.
#[pymodule]
fn _xent(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<backend::Context>()?;
    m.add_function(wrap_pyfunction!(ops::run, m)?)?;
    m.add_function(wrap_pyfunction!(ops::linear_ce, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate::evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate::evaluate_files, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate::merge, m)?)?;
    m.add_function(wrap_pyfunction!(backend::adapters, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

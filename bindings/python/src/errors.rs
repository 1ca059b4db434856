//! The library's errors as the package's exceptions: input errors are `XentInputError`
//! (also a `ValueError`), device errors `XentDeviceError` (also a `RuntimeError`), the rest
//! `XentError`. The classes are defined in Python (python/xent/_errors.py), where they can
//! have two bases.

use pyo3::PyErr;

pyo3::import_exception!(xent._errors, XentError);
pyo3::import_exception!(xent._errors, XentInputError);
pyo3::import_exception!(xent._errors, XentDeviceError);
pyo3::import_exception!(xent._errors, XentMemoryError);

/// An input error naming what is wrong.
pub(crate) fn input(message: impl Into<String>) -> PyErr {
    XentInputError::new_err(message.into())
}

/// A device error.
pub(crate) fn device(message: impl Into<String>) -> PyErr {
    XentDeviceError::new_err(message.into())
}

/// The exception of a library error.
pub(crate) fn from_xent(e: xent::Error) -> PyErr {
    use xent::Error as E;
    let message = e.to_string();
    match e {
        e if e.is_bad_input() => XentInputError::new_err(message),
        E::NoAdapter(_) | E::RequestDevice(_) | E::Gpu(_) | E::DeviceLost(_) | E::Readback(_) => {
            XentDeviceError::new_err(message)
        }
        E::HostMemory(_) => XentMemoryError::new_err(message),
        _ => XentError::new_err(message),
    }
}

/// The exception of a `.npy` file error: the file's fault is an input error.
pub(crate) fn from_npy(e: xent::npy::NpyError) -> PyErr {
    if e.is_bad_input() { XentInputError::new_err(e.to_string()) } else { XentError::new_err(e.to_string()) }
}

/// `Result` with a library error, made a Python exception.
pub(crate) trait OrRaise<T> {
    fn or_raise(self) -> pyo3::PyResult<T>;
}

impl<T> OrRaise<T> for Result<T, xent::Error> {
    fn or_raise(self) -> pyo3::PyResult<T> {
        self.map_err(from_xent)
    }
}

"""The package's exceptions: one base class, input errors also ``ValueError``, device
errors also ``RuntimeError``."""


class XentError(Exception):
    """Base class of every error xent raises."""


class XentInputError(XentError, ValueError):
    """Bad input: a shape, dtype, layout, label out of range (with its row) or option,
    named in the message."""


class XentDeviceError(XentError, RuntimeError):
    """The device failed: no adapter where ``device="gpu"`` was asked for, device lost,
    a limit of the device."""


class XentMemoryError(XentError, MemoryError):
    """The host had no memory for a buffer of the job."""

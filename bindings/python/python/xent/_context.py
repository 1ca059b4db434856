"""The default context: made lazily, once per process, never carried across ``fork``."""

from __future__ import annotations

import os
import threading

from ._xent import Context

_lock = threading.Lock()
_default: Context | None = None
_default_pid: int | None = None


def default_context() -> Context:
    """The process's default context: ``device`` from ``XENT_DEVICE`` (else ``"auto"``),
    opened on first use."""
    global _default, _default_pid
    with _lock:
        if _default is None or _default_pid != os.getpid():
            _default = Context(os.environ.get("XENT_DEVICE", "auto"))
            _default_pid = os.getpid()
        return _default


def _forget_in_child() -> None:
    # a device does not survive fork: the child opens its own on first use
    global _default, _default_pid, _lock
    _default, _default_pid = None, None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def resolve(context: Context | str | None) -> Context:
    """A context from a ``context=`` argument: a Context, a device name, or the default."""
    if context is None:
        return default_context()
    if isinstance(context, str):
        return Context(context)
    if isinstance(context, Context):
        return context
    from ._errors import XentInputError

    raise XentInputError(f"context: expected xent.Context, a device name or None, got {type(context).__name__}")

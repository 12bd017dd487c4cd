"""Errors raised when a backend or device cannot be used."""


class BackendError(RuntimeError):
    """A backend or device cannot be used here; the message says why and what to do."""


class DeviceMismatchError(ValueError):
    """Arrays from two namespaces or devices met in one operation."""

"""The errors an export raises: all ``ValueError`` subclasses, so that the
``csvae`` command prints them as one line and exits with status 2."""


class ExportError(ValueError):
    """An export that cannot be made: bad arguments, an occupied destination,
    a model that breaks the ``serving_functions()`` contract."""


class VerificationError(ExportError):
    """An exported artefact that does not behave like the Keras model (or that
    a server would refuse). Nothing is written when this is raised."""

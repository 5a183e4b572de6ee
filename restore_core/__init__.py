"""restore's core: models, engine, I/O and training behind the ``restore`` commands.

From Python, :func:`restore_core.load` (defined in :mod:`restore_core.api`) gives a
model ready to restore arrays and files::

    import restore_core
    derain = restore_core.load("taylor-derain")
    clear = derain(rainy)  # NumPy H x W x 3 uint8 -> same shape and type

``load`` and ``ImageRestorer`` are imported on first use, so that importing a
sub-module (the CLI answering ``--help``) does not pay for torch.
"""

__all__ = ["load", "ImageRestorer"]


def __getattr__(name: str):
    if name in __all__:
        from restore_core import api

        return getattr(api, name)
    raise AttributeError(f"module 'restore_core' has no attribute {name!r}")

"""Utilities every layer uses; import the modules themselves, e.g. ``from engine_lib.utils import
comm``.

- ``comm``: ranks, world size and collectives that also work in a single process.
- ``events``: ``EventStorage`` and the metric writers (console, ``metrics.json``, TensorBoard).
- ``logger``: ``setup_logger`` and rate-limited logging.
- ``env`` / ``collect_env``: seeding, the torch version, the environment report.
- ``registry``: ``Registry`` with "did you mean" errors.
- ``file_io``: the project's iopath ``PathManager``.
- ``errors``: the exceptions for mistakes a user can fix.

Nothing is imported here so that ``import engine_lib.utils.errors`` (used by the config layer)
stays free of torch.
"""

__all__: list = []

"""``python -m conclave_client``: see :mod:`conclave_client.cli`."""

from .cli import entry

entry()

"""``python -m fedjax_rhd.tune``: the ``fedjax-rhd-tune`` command."""

from fedjax_rhd.tune.cli import entry

entry()

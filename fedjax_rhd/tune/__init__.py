"""Hyperparameter searches on the federated validation objective (``fedjax-rhd-tune``).

:mod:`.space` reads a preset (``conf/hparams_search/``) into typed objects, :mod:`.search`
runs it with Optuna (sqlite storage, resumable), :mod:`.plot` draws its history and
:mod:`.cli` is the command.
"""

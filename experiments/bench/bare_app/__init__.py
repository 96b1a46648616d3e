"""A bare Flower 1.42 app of the Flower backend's size: the baseline of ``experiments/bench/backends.py``.

Five nodes, one parameter vector as long as DeepSurv's parameters, a jitted
local update in each ClientApp, and a ServerApp doing a plain FedAvg over
``grid.send_and_receive``, with one message exchange per round (``train``) or
two (``train`` then ``evaluate``, like the project's backend). It imports
nothing from ``fedjax_rhd``: what it costs is Flower's own cost plus JAX's.
"""

"""The data room: from an ML-ready table to federated node arrays.

Split, node partition (random, natural or case-mix shifted), node validation parts,
scenarios, federated preprocessing and feature-group reduction, packing into
time-sorted ``NodeData``, and cross-validation folds for public benchmarks.
"""

from fedjax_rhd.data.checks import UnusableData
from fedjax_rhd.data.federated import FederatedData, SplitSpec, build_federated_data
from fedjax_rhd.data.packing import make_node_data
from fedjax_rhd.data.scenario import ScenarioSpec

__all__ = [
    "FederatedData",
    "ScenarioSpec",
    "SplitSpec",
    "UnusableData",
    "build_federated_data",
    "make_node_data",
]

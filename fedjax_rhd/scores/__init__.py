"""Clinical prognostic scores as vectorised pure functions (numpy in, numpy out).

One module per disease: :mod:`ipss` (IPSS-R, IPSS-RA, IPSS-M; MDS), :mod:`cpss`
(CPSS-mol; CMML), :mod:`eln` (ELN 2022; AML), :mod:`riss` (R-ISS; myeloma). Each
run reports its use case's score on the model's test rows (:mod:`clinical`).
"""

from fedjax_rhd.scores import cpss, eln, ipss, riss

__all__ = ["cpss", "eln", "ipss", "riss"]

"""Optional treatment and response layer of the MDS and CMML simulators (off by default).

Treatment and response are measured *after* diagnosis: as predictors of overall
survival from diagnosis they leak outcome information (ARCHITECTURE §5;
``docs/treatment.md``). The layer exists for treatment-effect studies and for
exercising the FHIR ``MedicationStatement`` / ``Procedure`` / response paths, not
for prognostic models from diagnosis. With the option off the simulators' output
is unchanged bit for bit: the layer draws from its own random stream and only
runs when asked.

Generative story (one row per patient, decided at diagnosis: intention to treat):

1. **Risk group** from the use case's clinical score on complete covariates:
   MDS higher risk = IPSS-M raw score > 0 (moderate-high and above; Bernard E, et
   al. NEJM Evidence 2022;1(7), who place the treatment boundary between
   moderate-low and moderate-high); CMML higher risk = CPSS-mol >= 2
   (intermediate-2 and high; Elena C, et al. Blood 2016;128:1408-17).
2. **First-line therapy** (:func:`first_line_probabilities`), as the European
   recommendations describe practice (Malcovati L, et al. Blood 2013;122:2943-64
   for MDS; Itzykson R, et al. HemaSphere 2018;2:e150 for CMML): lower-risk
   patients get supportive care (transfusions, ESA; a few an HMA); higher-risk
   patients get a hypomethylating agent (HMA), or intensive chemotherapy when
   young (< ``ic_age_max``) with excess blasts (>= ``ic_blasts_min`` %), fewer an HMA
   when very old (>= ``old_age``). An HMA is azacitidine, or decitabine for a
   share ``p_decitabine``.
3. **Allogeneic HSCT** for higher-risk patients younger than ``hsct_age_max`` with
   a donor (drawn, ``p_donor``; not a column), with probability ``p_hsct``.
4. **Best response to the HMA** (HMA-treated patients only; null otherwise), in
   the IWG 2006 categories (Cheson BD, et al. Blood 2006;108:419-25; IWG 2023,
   Zeidan AM, et al. Blood 2023;141:2047-61, keeps CR/PR/HI): CR, PR, HI (without
   CR/PR), SD, PD at ``response_rates``. Defaults: CR 17% and PR 12% as in AZA-001
   (Fenaux P, et al. Lancet Oncol 2009;10:223-32); HI-only 16% so that overall
   response (CR+PR+HI) is 45%, within the 40-50% of azacitidine series under
   IWG 2006 (e.g. Itzykson R, et al. Blood 2011;117:403-11); SD 35%, PD 20%
   (assumed split of the rest).
5. **Hazard** (added to the simulator's true log-hazard, so ``oracle_risk``
   includes it; proportional hazards from diagnosis):

   * azacitidine ``log 0.58``: AZA-001 overall survival HR 0.58 (95% CI
     0.43-0.77) against conventional care in higher-risk MDS (Fenaux 2009);
   * decitabine ``log 0.88``: EORTC 06011, HR 0.88 (0.66-1.17) against supportive
     care in older higher-risk MDS (Lübbert M, et al. J Clin Oncol 2011;29:1987-96);
   * intensive chemotherapy ``log 0.76``: an assumption of this simulator (no
     randomised trial against supportive care; set between supportive care and
     azacitidine);
   * allogeneic HSCT ``log 0.56``: BMT CTN 1102 (Nakamura R, et al. J Clin Oncol
     2021;39:3328-39), 3-year OS 47.9% with a donor against 26.6% without;
     ``log 0.479 / log 0.266 = 0.56`` under proportional hazards (the real
     hazard is higher early, transplant-related mortality, and lower later);
   * response among HMA-treated patients: offsets ``response_log_hr`` (CR -0.5,
     PR -0.35, HI -0.25, SD 0, PD +0.6; assumed sizes, directions as in Gore SD,
     et al. Haematologica 2013;98:1067-72), centred on the configured response
     rates so that the HMA's average log-HR stays the trial's.

   CMML reuses these numbers (CMML patients were in AZA-001 and the decitabine
   trials; no CMML-specific randomised OS estimate against supportive care
   exists, and decitabine did not beat hydroxyurea in advanced proliferative CMML:
   Itzykson R, et al. J Clin Oncol 2023;41:1888-97), with fewer intensive
   treatments and transplants (``CMML``).

The columns are complete (no extra missingness): treatment registries are
incomplete in reality, which the ``worst`` scenario can mimic by dropping the
``treatment`` group.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

# Column name -> kind; the guide layer ``harmonize/guides/layers/treatment.yaml`` declares them.
FEATURES: dict[str, str] = {
    "hma_azacitidine": "binary",
    "hma_decitabine": "binary",
    "intensive_chemo": "binary",
    "allo_hsct": "binary",
    "hma_response": "categorical",
}
RESPONSE_LEVELS: tuple[str, ...] = ("cr", "pr", "hi", "sd", "pd")
FIRST_LINE: tuple[str, ...] = ("supportive", "hma", "intensive")
# The layer's own random stream: seeded from (STREAM, seed), never the simulator's stream,
# so the covariates, outcome draws and missingness are the same with the layer on or off.
STREAM = 0x7EA7


@dataclasses.dataclass(frozen=True)
class TreatmentParams:
    """Assignment rules, response rates and hazard ratios (module docstring for sources)."""

    p_hma_lower: float = 0.05  # lower risk: HMA first line (most get supportive care)
    p_hma_higher: float = 0.90  # higher risk, not given intensive chemotherapy
    p_hma_old: float = 0.60  # higher risk and age >= old_age (frailty)
    old_age: float = 80.0
    p_intensive: float = 0.40  # higher risk, age < ic_age_max, blasts >= ic_blasts_min
    ic_age_max: float = 65.0
    ic_blasts_min: float = 10.0
    p_decitabine: float = 0.20  # share of HMA-treated patients given decitabine
    hsct_age_max: float = 70.0
    p_donor: float = 0.70  # matched sibling or unrelated donor found
    p_hsct: float = 0.60  # eligible (higher risk, young enough, donor) and transplanted
    response_rates: tuple[float, ...] = (0.17, 0.12, 0.16, 0.35, 0.20)  # RESPONSE_LEVELS order
    log_hr_azacitidine: float = math.log(0.58)
    log_hr_decitabine: float = math.log(0.88)
    log_hr_intensive: float = math.log(0.76)
    log_hr_hsct: float = math.log(0.56)
    response_log_hr: tuple[float, ...] = (-0.5, -0.35, -0.25, 0.0, 0.6)  # before centring

    def __post_init__(self) -> None:
        if len(self.response_rates) != len(RESPONSE_LEVELS) or len(self.response_log_hr) != len(
            RESPONSE_LEVELS
        ):
            raise ValueError(f"TreatmentParams: response_rates and response_log_hr need {RESPONSE_LEVELS}")
        if not math.isclose(sum(self.response_rates), 1.0, abs_tol=1e-9) or min(self.response_rates) < 0:
            raise ValueError(
                f"TreatmentParams: response_rates must be >= 0 and sum to 1: {self.response_rates}"
            )

    @property
    def centred_response_log_hr(self) -> np.ndarray:
        """f64[5] response offsets with mean 0 over ``response_rates``."""
        beta = np.asarray(self.response_log_hr, dtype=np.float64)
        return beta - float(np.dot(self.response_rates, beta))


MDS = TreatmentParams()
CMML = TreatmentParams(p_intensive=0.10, p_hsct=0.40)
PARAMS: dict[str, TreatmentParams] = {"mds": MDS, "cmml": CMML}


def first_line_probabilities(
    higher_risk: np.ndarray, age: np.ndarray, blasts: np.ndarray, params: TreatmentParams
) -> np.ndarray:
    """Probabilities of supportive care, HMA and intensive chemotherapy.

    Args:
        higher_risk: bool[n] clinical-score risk group.
        age: f64[n] years at diagnosis.
        blasts: f64[n] bone-marrow blasts (%).
        params: the rules.

    Returns:
        f64[n, 3] in :data:`FIRST_LINE` order; each row sums to 1.
    """
    higher = np.asarray(higher_risk, dtype=bool)
    age = np.asarray(age, dtype=np.float64)
    p_ic = np.where(
        higher & (age < params.ic_age_max) & (np.asarray(blasts, np.float64) >= params.ic_blasts_min),
        params.p_intensive,
        0.0,
    )
    p_hma_if_not_ic = np.where(
        higher, np.where(age >= params.old_age, params.p_hma_old, params.p_hma_higher), params.p_hma_lower
    )
    p_hma = (1.0 - p_ic) * p_hma_if_not_ic
    return np.stack([1.0 - p_ic - p_hma, p_hma, p_ic], axis=1)


def hsct_probability(
    higher_risk: np.ndarray, age: np.ndarray, donor: np.ndarray, params: TreatmentParams
) -> np.ndarray:
    """f64[n] probability of an allogeneic transplant (higher risk, young enough, with a donor)."""
    eligible = np.asarray(higher_risk, bool) & (np.asarray(age, np.float64) < params.hsct_age_max)
    return np.where(eligible & np.asarray(donor, bool), params.p_hsct, 0.0)


def treatment_log_hazard(tx: dict[str, np.ndarray], params: TreatmentParams) -> np.ndarray:
    """f64[n] log-hazard added by the treatment columns (response codes -1 where not HMA-treated)."""
    eta = params.log_hr_azacitidine * tx["hma_azacitidine"] + params.log_hr_decitabine * tx["hma_decitabine"]
    eta = eta + params.log_hr_intensive * tx["intensive_chemo"] + params.log_hr_hsct * tx["allo_hsct"]
    code = np.asarray(tx["hma_response"], dtype=np.int64)
    offsets = params.centred_response_log_hr[np.clip(code, 0, None)]
    return eta + np.where(code >= 0, offsets, 0.0)


def assign_treatment(
    rng: np.random.Generator,
    higher_risk: np.ndarray,
    age: np.ndarray,
    blasts: np.ndarray,
    params: TreatmentParams,
) -> dict[str, np.ndarray]:
    """Draw the treatment columns.

    Consumes exactly five uniforms per patient in a fixed order (donor, first line,
    agent, transplant, response), so a patient's draws do not depend on the others'.

    Returns:
        ``hma_azacitidine``, ``hma_decitabine``, ``intensive_chemo``, ``allo_hsct``
        (int8 0/1) and ``hma_response`` (int64 code into :data:`RESPONSE_LEVELS`,
        -1 where no HMA was given).
    """
    n = np.asarray(age).shape[0]
    u = rng.random((5, n))
    donor = u[0] < params.p_donor
    cum = np.cumsum(first_line_probabilities(higher_risk, age, blasts, params), axis=1)
    line = np.minimum((u[1][:, None] >= cum).sum(axis=1), len(FIRST_LINE) - 1)
    hma = line == 1
    decitabine = hma & (u[2] < params.p_decitabine)
    hsct = u[3] < hsct_probability(higher_risk, age, donor, params)
    edges = np.cumsum(params.response_rates)[:-1]
    response = np.where(hma, np.searchsorted(edges, u[4], side="right"), -1)
    return {
        "hma_azacitidine": (hma & ~decitabine).astype(np.int8),
        "hma_decitabine": decitabine.astype(np.int8),
        "intensive_chemo": (line == 2).astype(np.int8),
        "allo_hsct": hsct.astype(np.int8),
        "hma_response": response.astype(np.int64),
    }


Layer = Callable[
    [dict[str, np.ndarray], np.ndarray], tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]
]


def layer(use_case: str, seed: int, higher_risk: Callable[[dict[str, np.ndarray]], np.ndarray]) -> Layer:
    """The simulator hook: ``(cov, eta) -> (cov + treatment, eta + treatment effect, absent)``.

    Args:
        use_case: ``mds`` or ``cmml`` (selects :data:`PARAMS`).
        seed: the simulator's seed; the layer draws from ``default_rng([STREAM, seed])``.
        higher_risk: complete covariates -> bool[n] risk group (the clinical score's cut).

    Returns:
        A pure function of the covariates and true log-hazard; ``absent`` marks values
        that do not exist (the response of patients not given an HMA), to be nulled.
    """
    if use_case not in PARAMS:
        raise ValueError(f"treatment layer: no parameters for use case {use_case!r}; known {sorted(PARAMS)}")
    params = PARAMS[use_case]

    def apply(
        cov: dict[str, np.ndarray], eta: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
        rng = np.random.default_rng([STREAM, seed])
        tx = assign_treatment(rng, higher_risk(cov), cov["age"], cov["bm_blasts"], params)
        absent = {"hma_response": tx["hma_response"] < 0}
        out = {**cov, **tx, "hma_response": np.maximum(tx["hma_response"], 0)}
        return out, eta + treatment_log_hazard(tx, params), absent

    return apply

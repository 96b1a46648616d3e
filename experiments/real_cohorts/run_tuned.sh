#!/usr/bin/env bash
# Issue 23 item 5: FedAvg DeepSurv tuned inside each split seed (fedjax-rhd-tune's search on that seed's
# training + validation rows, federated validation loss) against penalised Cox, a random survival forest
# and gradient-boosted Cox tuned on the same validation rows and refitted on the same training + validation
# rows, and against IPSS-M (mds_iwgpm) / ELN 2022 (aml_beat), 5 split seeds, paired on the same test rows.
# Needs ../shared/data (or FEDJAX_RHD_SHARED_DATA).
# Usage: bash experiments/real_cohorts/run_tuned.sh [out_dir] [trials per seed] [overrides for every run...]
#        (defaults multirun/real_cohorts_tuned, 25); writes <out_dir>/tuned.md
set -euo pipefail
out="${1:-multirun/real_cohorts_tuned}"
trials="${2:-25}"
extra=("${@:3}")
python experiments/tuning/run.py --preset deepsurv --seeds 0 1 2 3 4 --trials "$trials" \
    --out "$out/mds_iwgpm" -- use_case=mds_iwgpm split=five "${extra[@]}"
python experiments/tuning/run.py --preset deepsurv --seeds 0 1 2 3 4 --trials "$trials" \
    --out "$out/aml_beat" -- use_case=aml_beat split=natural "${extra[@]}"
python experiments/real_cohorts/peers.py --out "$out/peers/mds_iwgpm" --seeds 0 1 2 3 4 \
    -- use_case=mds_iwgpm split=five "${extra[@]}"
python experiments/real_cohorts/peers.py --out "$out/peers/aml_beat" --seeds 0 1 2 3 4 \
    -- use_case=aml_beat split=natural "${extra[@]}"
python experiments/real_cohorts/tuned.py "$out"

#!/usr/bin/env bash
# The study's pattern on the calibrated simulators: centralised, FedAvg and local DeepSurv,
# simulated MDS on five nodes (45/20/15/10/10) and simulated CMML on three (60/30/10),
# best and worst scenarios, 5 split seeds each; then the study table (paired bootstraps).
# Usage: bash experiments/simulation/run_study.sh [out_dir]   (default multirun/simulation_study)
set -euo pipefail
out="${1:-multirun/simulation_study}"
seeds="0,1,2,3,4"
for scenario in best worst; do
    python -m fedjax_rhd -m use_case=mds split=five scenario="$scenario" \
        strategy=centralized,fedavg,local seed.split="$seeds" progress=false \
        hydra.sweep.dir="$out/mds_$scenario"
    python -m fedjax_rhd -m use_case=cmml split=three scenario="$scenario" \
        strategy=centralized,fedavg,local seed.split="$seeds" progress=false \
        hydra.sweep.dir="$out/cmml_$scenario"
done
python -m fedjax_rhd.report "$out"/* --out "$out/report"
python experiments/simulation/study.py "$out"

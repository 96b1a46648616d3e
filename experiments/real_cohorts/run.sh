#!/usr/bin/env bash
# Real-cohort check: centralised, FedAvg and local DeepSurv on mds_iwgpm (five random
# nodes 45/20/15/10/10) and aml_beat (natural split: Beat AML's 8 centres), 5 split
# seeds each, then the comparison table. Needs ../shared/data (or FEDJAX_RHD_SHARED_DATA).
# Usage: bash experiments/real_cohorts/run.sh [out_dir]   (default multirun/real_cohorts)
set -euo pipefail
out="${1:-multirun/real_cohorts}"
seeds="0,1,2,3,4"
python -m fedjax_rhd -m use_case=mds_iwgpm split=five strategy=centralized,fedavg,local \
    seed.split="$seeds" progress=false hydra.sweep.dir="$out/mds_iwgpm"
python -m fedjax_rhd -m use_case=aml_beat split=natural strategy=centralized,fedavg,local \
    seed.split="$seeds" progress=false hydra.sweep.dir="$out/aml_beat"
python experiments/real_cohorts/compare.py "$out"
python experiments/real_cohorts/peer_cox.py "$out"

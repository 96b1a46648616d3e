#!/usr/bin/env bash
# The study's pattern on the simulated AML, MM and MDS-with-slides cohorts: 3 nodes,
# best and worst scenarios, centralised / FedAvg / local, 5 split seeds; plus the
# "without PET" (MM) and "without slides" (mds_wsi) arms. About 25 minutes on 2 cores.
# Writes multirun/sim_study/<name>/ and the report in experiments/simulation/study/.
set -euo pipefail
out=${1:-multirun/sim_study}
common=(strategy=centralized,fedavg,local seed.split=0,1,2,3,4 progress=false bootstrap=200)
for uc in aml mm mds_wsi; do
  fedjax-rhd -m use_case=$uc scenario=best,worst "${common[@]}" hydra.sweep.dir=$out/$uc
done
fedjax-rhd -m use_case=mm +use_case.reduce.pet=0 strategy=centralized,fedavg seed.split=0,1,2,3,4 \
  progress=false bootstrap=200 hydra.sweep.dir=$out/mm_no_pet
fedjax-rhd -m use_case=mds_wsi use_case.reduce.wsi=0 strategy=centralized,fedavg seed.split=0,1,2,3,4 \
  progress=false bootstrap=200 hydra.sweep.dir=$out/mds_wsi_no_wsi

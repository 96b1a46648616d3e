#!/usr/bin/env bash
# The study's pattern on the simulated AML, MM and MDS-with-slides cohorts: 3 nodes,
# best and worst scenarios, centralised / FedAvg / local, 5 split seeds; plus the
# "without PET" (MM) and "without slides" (mds_wsi) arms. About 30 minutes on 2 cores.
# Writes multirun/sim_study/<name>/; then
#   fedjax-rhd-report multirun/sim_study/{aml,mm,mds_wsi} --out <dir>
#   python experiments/simulation/compare_layers.py multirun/sim_study/mm multirun/sim_study/mm_no_pet
#   python experiments/simulation/compare_layers.py multirun/sim_study/mds_wsi multirun/sim_study/mds_wsi_no_wsi
set -euo pipefail
out=${1:-multirun/sim_study}
common=(strategy=centralized,fedavg,local seed.split=0,1,2,3,4 progress=false bootstrap=200)
for uc in aml mm mds_wsi; do
  fedjax-rhd -m use_case=$uc scenario=best,worst "${common[@]}" hydra.sweep.dir=$out/$uc
done
# the PET layer's raw 40 features instead of 8 federated components (reported beside them)
fedjax-rhd -m use_case=mm "~use_case.reduce.pet" strategy=centralized,fedavg seed.split=0,1,2,3,4 \
  progress=false bootstrap=200 hydra.sweep.dir=$out/mm_pet_raw
fedjax-rhd -m use_case=mm use_case.reduce.pet=0 strategy=centralized,fedavg seed.split=0,1,2,3,4 \
  progress=false bootstrap=200 hydra.sweep.dir=$out/mm_no_pet
fedjax-rhd -m use_case=mds_wsi use_case.reduce.wsi=0 strategy=centralized,fedavg seed.split=0,1,2,3,4 \
  progress=false bootstrap=200 hydra.sweep.dir=$out/mds_wsi_no_wsi

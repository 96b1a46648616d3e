#!/bin/bash
# usage: sweep.sh <outdir> <seeds> <use_case> <strategy> [overrides...]
cd /work/wt/vaetstr && . .venv/bin/activate
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
out=$1; seeds=$2; uc=$3; strat=$4; shift 4
extra=""
if [ "$uc" = "mds_iwgpm" ]; then extra="real_data_root=/work/shared/data model.n_synthetic=0"; else extra="model.n_synthetic=3188"; fi
nice -n 19 taskset -c 1 python -m fedjax_rhd -m +experiment=vae_bgm strategy=$strat seed.split=$seeds use_case=$uc \
  $extra fidelity_every=0 progress=false hydra/launcher=basic hydra.sweep.dir=$out data_root=/work/runs/s11_vaetstr/data "$@"

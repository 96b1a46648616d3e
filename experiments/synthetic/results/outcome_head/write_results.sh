#!/bin/bash
# writes experiments/synthetic/results/outcome_head/* from the confirmation sweeps
cd /work/wt/vaetstr && . .venv/bin/activate
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
C=/work/runs/s11_vaetstr/confirm; R=experiments/synthetic/results/outcome_head
mkdir -p $R
P="nice -n 19 taskset -c 1 python experiments/synthetic/paired.py"
F="nice -n 19 taskset -c 1 python experiments/synthetic/figure3.py"
for ds in mds iwgpm; do
  for st in fedavg centralized; do
    [ -d $C/${ds}_fix_$st ] && [ -d $C/${ds}_default_$st ] && \
      $P $C/${ds}_fix_$st $C/${ds}_default_$st --label-a "$st + fix" --label-b "$st default" > $R/${ds}_${st}_fix_vs_default.md
  done
  [ -d $C/${ds}_fix_centralized ] && $P $C/${ds}_fix_fedavg $C/${ds}_fix_centralized --label-a "fedavg + fix" --label-b "centralised + fix" > $R/${ds}_fix_fedavg_vs_centralised.md
  for arm in fix default; do
    dirs=$(ls -d $C/${ds}_${arm}_* 2>/dev/null)
    [ -n "$dirs" ] && $F $dirs --out $R/${ds}_${arm} > /dev/null
  done
done
[ -d $C/casemix_default_fedavg ] && $P $C/casemix_fix_fedavg $C/casemix_default_fedavg --label-a "fedavg + fix" --label-b "fedavg default" > $R/casemix_fedavg_fix_vs_default.md
for arm in fix default; do [ -d $C/casemix_${arm}_fedavg ] && $F $C/casemix_${arm}_fedavg --out $R/casemix_${arm} > /dev/null; done

$P $C/iwgpm5_fix_fedavg $C/iwgpm5_default_fedavg --label-a "fedavg + fix" --label-b "fedavg default" > $R/iwgpm_seeds5-9_fedavg_fix_vs_default.md
for arm in fix default; do $F $C/iwgpm5_${arm}_fedavg --out $R/iwgpm_seeds5-9_${arm} > /dev/null; done
cp /work/runs/s11_vaetstr/diag_default_fedavg.md $R/diagnosis_mds_seeds0-4_fedavg.md
cp /work/runs/s11_vaetstr/diag_default_centralized.md $R/diagnosis_mds_seeds0-4_centralized.md
cp /work/runs/s11_vaetstr/diag_iwgpm_default_fedavg.md $R/diagnosis_iwgpm_seeds0-4_fedavg.md
ls -R $R

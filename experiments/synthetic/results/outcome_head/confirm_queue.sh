#!/bin/bash
while kill -0 13226 2>/dev/null; do sleep 5; done
S=/work/runs/s11_vaetstr/sweep.sh; C=/work/runs/s11_vaetstr/confirm
FIX="model.outcome_head=row model.outcome_hidden=[]"
CM="split.name=three_casemix +split.case_mix.1=-1.0 +split.case_mix.3=1.0"
$S $C/mds_fix_fedavg 30,31,32,33,34 mds fedavg $FIX
$S $C/mds_default_fedavg 30,31,32,33,34 mds fedavg
$S $C/mds_fix_centralized 30,31,32,33,34 mds centralized $FIX
$S $C/mds_default_centralized 30,31,32,33,34 mds centralized
$S $C/iwgpm_fix_fedavg 0,1,2,3,4 mds_iwgpm fedavg $FIX
$S $C/iwgpm_default_fedavg 0,1,2,3,4 mds_iwgpm fedavg
$S $C/casemix_fix_fedavg 10,11,12,13,14 mds fedavg $CM $FIX
$S $C/casemix_default_fedavg 10,11,12,13,14 mds fedavg $CM
$S $C/iwgpm_fix_centralized 0,1,2,3,4 mds_iwgpm centralized $FIX
$S $C/iwgpm_default_centralized 0,1,2,3,4 mds_iwgpm centralized

#!/usr/bin/env bash
# The privacy study (issue 16 item 5): C-index against epsilon for client-level DP-FedAvg, beside
# non-private FedAvg and each node alone, on simulated MDS (five nodes) and real Beat AML (its centres).
# Every arm trains the same fixed budget (30 rounds, the last one kept): the DP guarantee does not cover
# choosing the round from validation losses, so no arm chooses it. ~10 CPU-min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-multirun/privacy}
COMMON="strategy.rounds=30 strategy.patience=null strategy.selection=last seed.split=0,1,2,3,4 progress=false bootstrap=100"
for CASE in "use_case=mds split=five" "use_case=aml_beat split=natural"; do
  NAME=$(echo "$CASE" | sed 's/use_case=\([a-z_]*\).*/\1/')
  if [[ $NAME == aml_beat && ! -d ../shared/data/aml_beat2 ]]; then
    echo "skipping Beat AML: ../shared/data/aml_beat2 is absent"; continue
  fi
  fedjax-rhd -m $CASE strategy=fedavg,local $COMMON hydra.sweep.dir="$OUT/$NAME/plain"
  fedjax-rhd -m $CASE strategy=dpfedavg strategy.dp.noise_multiplier=0.1,0.3,1.0,3.0 $COMMON \
    hydra.sweep.dir="$OUT/$NAME/dp"
done
python experiments/privacy/summarize.py "$OUT"

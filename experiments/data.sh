#!/usr/bin/env bash
# The runs behind docs/pretrain/ and docs/diet/ (issues #13 and #14): what the data contributes
# to the early phase. Everything goes through the run store (runs/pretrain, runs/diet), so a
# rerun trains only what is missing. On 2 CPU cores, one thread per process, the whole script
# takes about 3 hours; each command can be run on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
R=.venv/bin/rewind
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p docs/pretrain docs/diet

# Pretraining on altered data (early-phase paper, section 5)
$R pretrain-study --preset mnist1d_mlp --levels 6 --replicates 3 --steps 0it,40it,200it,800it --report-levels 3,6 \
  --root runs/pretrain --csv docs/pretrain/mnist1d_mlp.csv --plot docs/pretrain/mnist1d_mlp --quiet > docs/pretrain/mnist1d_mlp.txt
$R pretrain-study --preset mnist1d_conv --levels 6 --replicates 3 --steps 0it,200it,800it \
  --kinds random-labels,transform,blur,sparse --report-levels 3,6 \
  --root runs/pretrain --csv docs/pretrain/mnist1d_conv.csv --plot docs/pretrain/mnist1d_conv --quiet > docs/pretrain/mnist1d_conv.txt
$R pretrain-study --preset digits_cnn --levels 6 --replicates 3 --steps 0it,1ep,4ep,12ep \
  --kinds random-labels,rotation,blur,subset,sparse --pretrain-factor 2 --report-levels 3,6 \
  --root runs/pretrain --csv docs/pretrain/digits_cnn.csv --plot docs/pretrain/digits_cnn --quiet > docs/pretrain/digits_cnn.txt
$R pretrain-study --preset mnist1d_resnet --levels 5 --replicates 3 --steps 0it,200it,800it \
  --kinds random-labels,transform,blur,sparse --report-levels 3,5 \
  --root runs/pretrain --csv docs/pretrain/mnist1d_resnet.csv --plot docs/pretrain/mnist1d_resnet --quiet > docs/pretrain/mnist1d_resnet.txt
# Critical periods (Achille et al.)
$R critical-period --preset mnist1d_mlp --deficit blur --until 0it,40it,200it,800it,2000it --replicates 3 \
  --root runs/pretrain --csv docs/pretrain/critical-mnist1d_mlp.csv --plot docs/pretrain/critical-mnist1d_mlp --quiet \
  > docs/pretrain/critical-mnist1d_mlp.txt

# Data scores and data diets (Paul et al. 2021, 2022)
for m in el2n grand forgetting; do
  at=400it; [ $m = grand ] && at=0it; [ $m = forgetting ] && at=4000it
  $R scores --preset mnist1d_mlp --method $m --at $at --replicates 10 --root runs/diet --quiet \
    --plot docs/diet/scores-mnist1d_mlp-$m > docs/diet/scores-mnist1d_mlp-$m.txt
done
$R data-diet --preset mnist1d_mlp --keep 0.3,0.5,0.7,0.9 --methods random,el2n,grand,forgetting --replicates 3 \
  --root runs/diet --csv docs/diet/data-diet-mnist1d_mlp.csv --plot docs/diet/data-diet-mnist1d_mlp --quiet \
  > docs/diet/data-diet-mnist1d_mlp.txt

#!/usr/bin/env bash
# The runs behind docs/pretrain/ and docs/diet/ (issues #13 and #14): what the data contributes
# to the early phase. Everything goes through the run store (runs/pretrain, runs/diet), so a
# rerun trains only what is missing. On 2 CPU cores, one thread per process, the whole script
# takes about 3 hours; each command can be run on its own.
set -euo pipefail
export REWIND_FIGURES=svg   # the docs keep one file per figure
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
$R data-diet --preset mnist1d_mlp --keep 0.3,0.5,0.7,0.9 --methods el2n,grand,forgetting --keep-which easiest \
  --replicates 3 --root runs/diet --csv docs/diet/data-diet-easiest-mnist1d_mlp.csv \
  --plot docs/diet/data-diet-easiest-mnist1d_mlp --quiet > docs/diet/data-diet-easiest-mnist1d_mlp.txt
$R diet-lottery --preset mnist1d_mlp --sizes 400 --orders random,easiest,hardest --steps 0it,40it,200it --levels 6 \
  --replicates 3 --report-levels 3,6 --root runs/diet --csv docs/diet/diet-lottery-mnist1d_mlp.csv \
  --plot docs/diet/diet-lottery-mnist1d_mlp --quiet > docs/diet/diet-lottery-mnist1d_mlp.txt
$R instability --study 6446e24555c584a8 --at 0it,40it,200it,800it --levels 0 --points 5 --root runs/pretrain --quiet \
  > docs/diet/instability-mnist1d_mlp.txt   # the mnist1d_mlp reference study of the pretraining grid
for L in 3 6; do
  $R example-lmc --study 6446e24555c584a8 --imp-level $L --root runs/pretrain \
    --plot docs/diet/example-lmc-mnist1d_mlp-L$L > docs/diet/example-lmc-mnist1d_mlp-L$L.txt
done
$R data-diet --preset mnist1d_conv --keep 0.3,0.5,0.7,0.9 --methods random,el2n,grand --replicates 3 --root runs/diet \
  --csv docs/diet/data-diet-mnist1d_conv.csv --plot docs/diet/data-diet-mnist1d_conv --quiet > docs/diet/data-diet-mnist1d_conv.txt
export OMP_NUM_THREADS=2
$R diet-lottery --preset mnist1d_resnet --sizes 400 --orders random,easiest,hardest --steps 0it,50it,200it --levels 5 \
  --replicates 3 --report-levels 3,5 --root runs/diet --csv docs/diet/diet-lottery-mnist1d_resnet.csv \
  --plot docs/diet/diet-lottery-mnist1d_resnet --quiet > docs/diet/diet-lottery-mnist1d_resnet.txt
$R lottery --preset mnist1d_resnet --rewind 0it,20it,40it,100it,200it --levels 5 --replicates 3 --root runs/testbed \
  --quiet > docs/diet/lottery-mnist1d_resnet-5k.txt
KEY=$(head -1 docs/diet/lottery-mnist1d_resnet-5k.txt | awk '{print $2}')
$R instability --study $KEY --at 0it,20it,40it,100it,200it --levels 0 --points 5 --root runs/testbed --quiet \
  > docs/diet/instability-mnist1d_resnet.txt
for L in 3 5; do
  $R example-lmc --study $KEY --imp-level $L --root runs/testbed --plot docs/diet/example-lmc-mnist1d_resnet-L$L \
    > docs/diet/example-lmc-mnist1d_resnet-L$L.txt
done

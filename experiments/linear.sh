#!/usr/bin/env bash
# The network against Hu et al.'s linear model (docs/linear.md). Everything goes through the store:
# rerunning prints the same tables without training. Tables: experiments/linear_tables.py.
set -euo pipefail
export REWIND_FIGURES=svg   # the docs keep one file per figure
ROOT=${ROOT:-runs/linear}
OUT=${OUT:-docs/linear}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
G="--preset gaussian_two_layer --set data.train_size=4000 --full-batch --steps 1000it --root $ROOT --quiet"
# two-layer ReLU network, d = 100: departure against width (lr 1) and against learning rate (m = 1024)
rewind linear-sweep $G --widths 64,256,1024,4096 --lrs 1 --replicates 2 --csv "$OUT/width.csv" --plot "$OUT/width"
rewind linear-sweep $G --widths 1024 --lrs 0.25,0.5,1,2,4 --replicates 2 --csv "$OUT/lr.csv" --plot "$OUT/lr"
# input dimension d (m = 1024, lr 1): the theory's time scale is d / lr
for d in 25 50 200; do
  rewind linear-sweep $G --set data.dim=$d --widths 1024 --lrs 1 --replicates 2 --csv "$OUT/dim$d.csv"
done
# d = 25, where the models agree to within 10% at first: departure against width and learning rate
rewind linear-sweep $G --set data.dim=25 --widths 256,1024,4096 --lrs 1 --replicates 2 --csv "$OUT/dim25-width.csv" \
  --plot "$OUT/dim25-width"
rewind linear-sweep $G --set data.dim=25 --widths 1024 --lrs 0.5,1,2,4 --replicates 2 --csv "$OUT/dim25-lr.csv" \
  --plot "$OUT/dim25-lr"
# the paper's 20,000 training examples (m = 1024, lr 1)
rewind linear-sweep --preset gaussian_two_layer --full-batch --steps 1000it --root $ROOT --quiet --widths 1024 --lrs 1 \
  --replicates 2 --csv "$OUT/n20000.csv"
# first layer, second layer, both; the closed form against the fitted kernel; symmetric initialisation; SGD
for t in first second; do
  rewind linear-sweep $G --train $t --widths 1024 --lrs 1 --replicates 2 --csv "$OUT/train-$t.csv"
done
rewind linear-sweep $G --model-of closed-form --widths 1024 --lrs 1 --replicates 2 --csv "$OUT/closed-form.csv"
rewind linear-sweep $G --loss cross-entropy --widths 1024 --lrs 1 --replicates 2 --csv "$OUT/cross-entropy.csv"
rewind linear-sweep $G --loss cross-entropy --set data.dim=25 --widths 1024 --lrs 1 --replicates 2 \
  --csv "$OUT/cross-entropy-dim25.csv"
rewind linear-sweep $G --output symmetric --widths 1024 --lrs 1 --replicates 2 --csv "$OUT/symmetric.csv"
rewind linear-sweep --preset gaussian_two_layer --set data.train_size=4000 --steps 1000it --root $ROOT --quiet \
  --widths 1024 --lrs 1 --replicates 2 --csv "$OUT/sgd.csv"
# deeper networks on the binary image tasks (full batch, the preset's lr 0.1, 2000 it)
for p in mnist1d_binary_mlp mnist1d_binary_cnn digits_binary_mlp digits_binary_cnn; do
  rewind linear-sweep --preset $p --full-batch --root $ROOT --quiet --replicates 3 --csv "$OUT/$p.csv"
  rewind linear --preset $p --full-batch --root $ROOT --quiet --replicates 3 --plot "$OUT/$p"
done
rewind linear-sweep --preset mnist1d_binary_mlp --full-batch --root $ROOT --quiet --widths 64,256 \
  --lrs 0.001,0.002,0.004 --replicates 2 --csv "$OUT/mnist1d_mlp_grid.csv" --plot "$OUT/mnist1d_mlp_grid"
rewind linear $G --replicates 2 --plot "$OUT/gaussian"

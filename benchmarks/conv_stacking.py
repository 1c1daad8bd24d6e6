"""Ways to stack K copies of the MNIST-1D 1-D CNN (3 convs of 32 channels, batch 100, length 40)
for one training step (forward, loss, backward), in one process: K separate autograd passes,
one grouped convolution per layer (groups = K), torch.func.vmap of grad (what the vectorised
engine used for conv nets until session 10), im2col (unfold) + batched matmul in two layouts, and
grouped channels-last convolutions (through autograd, and rewind's hand-written backward).
Exploration for the performance issue's 3x population goal; prints ms per K = 16 step.

    .venv/bin/python benchmarks/conv_stacking.py

Measured (2 cores, torch 2.13 CPU, 2026-11-26), ms per K = 16 step (forward, loss, backward):
sequential 29.7, grouped 23.9, vmap(grad) 27.0, unfold+bmm 35.0, unfold+bmm channels-last 28.4.
Also tried, and removed again: the channels-last unfold+bmm with a hand-written backward (no
autograd graph; a strided scatter-add for the input gradient), exact to 1e-15 against autograd
and bit-identical in any stack or thread count, but 46.5 ms per K = 16 step (363 model-steps/s
in benchmarks/population.py against the engine's 731 through vmap, sequential 377-487): the
stacked activations (16 x 100 x 40 x 32 floats = 8 MB a layer) leave the caches, and the bmm's,
the column copies, the zero fills of the fold and the ReLU masks become memory-bound (profile:
bmm 36%, copy 18%, fill 14%, add 19%, threshold_backward 9%), while one member's activations
(0.5 MB) stay in L2. grouped convolution + aten::convolution_backward without autograd: 27.1 ms.
The 1-D CNN's step is about 60 MFLOP per member; at the ~50-80 GFLOP/s these small GEMMs reach
here, 3x over the sequential engine would need about 0.8 ms per member-step, near the CPU's
arithmetic bound, which none of these layouts approach.
Correction and more (session 9, same machine): big sgemm reaches 330 GFLOP/s on the 2 cores here
(165 with one thread; (2000 x 96) @ (96 x 32) 260-300), so the 1-D CNN's ~60 MFLOP step is not near
the arithmetic bound: its sequential step (2.6 ms) spends half its time in mkldnn's
convolution_backward (443 us a call). One member at a time through im2col and mm with a
hand-written backward (channels-last, taps-then-channels columns, preallocated buffers) took
1.1-1.3 ms per step; the same functions under torch.compile (inductor, fullgraph, static shapes)
0.68-0.90 ms after a 4-13 s compile, exact against autograd to 1e-8 in float32. The digits CNN's
version compiled for 98 s and then ran 20.7 ms a step (inductor's code for the 9-tap fold and the
max-pool scatter), so it was not pursued. Separately, glibc's allocator cost time here: with
the 1 MiB fixed mmap threshold of rewind/__init__.py, glibc's trim threshold stayed at 128 KiB and
every step's freed heap was returned and faulted in again: the sequential 1-D CNN trained at 341
model-steps/s against 425-434 with glibc's default policy; rewind now keeps 4 MiB of free heap (429).
The stacked (vmap) path suffered most: its K = 16 activations are 8 MB a layer, each mmapped and
faulted in afresh every step, so the vectorised 1-D CNN ran at 292-304 model-steps/s, slower than
sequential (the 731 in the README's older table predates the 1 MiB threshold). The vectorised
engine now trains inside rewind.alloc.roomy() (32 MiB thresholds): 873, 2.06x over sequential; the
digits CNN 717, 1.72x. A 32 MiB threshold everywhere also made the LeNet sweep ~1.6x faster, but
the LeNet run's peak RSS then varied from 403 to 562 MB between identical runs, so outside stacked
training the threshold stays at 1 MiB.
Session 10 (same machine, 2026-11-26): the layout was the rest of it. torch.func.vmap of a conv1d
lowers to a grouped convolution in the channels-first layout; the same grouped convolution in the
channels-last layout (a 1-D conv as a 2-D one of height 1) took 3.4 ms for one layer's forward and
backward at K = 16 against 7.0 ms channels-first, 5.3 ms as im2col + bmm and 10.8 ms as 16 separate
convolutions. This script now also runs that layout, through autograd and as the vectorised engine
runs it (models/stacked_conv.py: the library's convolution_backward without an autograd graph),
ms per K = 16 step: sequential 31.7, grouped 26.6, vmap(grad) 32.5 (23.6 inside alloc.roomy()),
unfold+bmm 33.4, unfold+bmm channels-last 29.3, grouped channels-last through autograd 14.5,
rewind's stacked_grad 11.9. In benchmarks/population.py the K = 16 1-D CNN went from 844 to
1,379-1,408 model-steps/s (3.28-3.32x over sequential) and the digits CNN from 748 to 1,120-1,266
(2.59-2.79x). The digits CNN's second layer (16 -> 32 channels, 3x3, 8x8) is ~70% of its stacked
step and runs at the library's speed: 6.4 us per member-example for forward and backward at K = 16,
the same at K = 4, 8 and 32 and at half the batch (116-168 GFLOP/s of the 330 these cores reach in a
large sgemm), so 3x over sequential is out of reach for it this way.
Session 12 (same machine): the digits CNN's K = 16 step is 11.8 ms (conv2 forward 1.8 ms and
backward 4.7-5.0 at 240-333 GFLOP/s; 3x needs ~10.9). Tried and dropped: the input gradient as a
forward convolution with flipped, transposed weights (identical bits, same 2.5 ms); the ReLU fused
into the convolution with torch.ops.mkldnn._convolution_pointwise (identical bits, ~0.45 ms faster,
but oneDNN's ReLU maps NaN to 0, so a member with NaN weights and a finite loss would not be
stopped as diverged); a two-stage pairwise-max max-pool (0.99 / 7.4 ms forward / backward against
the library's 0.47 / 0.49); heap huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1: no gain). One
thread per core beats two threads per process for these nets, for both engines: two 1-thread
processes of K = 8 gave 1,551 model-steps/s together against 1,300 for one 2-thread K = 16 process
(sequential: 749 against 478); two Python threads in one process gave 1,218-1,341, and 1,414-1,450
with MALLOC_ARENA_MAX=1 (one glibc arena for both threads; why a second arena costs this was not pinned down).
"""
import time

import torch
from torch.func import grad, vmap
from torch.nn import functional as F

torch.manual_seed(0)
K, B, L, C = 16, 100, 40, 32
specs = [(1, C, 5, 1, 2), (C, C, 3, 2, 1), (C, C, 3, 2, 1)]
lens = [40, 20, 10]
def make():
    ws = [torch.randn(K, co, ci, k, requires_grad=True) for ci, co, k, s, p in specs]
    bs = [torch.zeros(K, co, requires_grad=True) for ci, co, k, s, p in specs]
    wo = torch.randn(K, 10, C * 10, requires_grad=True); bo = torch.zeros(K, 10, requires_grad=True)
    return ws, bs, wo, bo
ws, bs, wo, bo = make()
x = torch.randn(K, B, L); y = torch.randint(0, 10, (K, B))
def seq():
    tot = 0
    for k in range(K):
        h = x[k].unsqueeze(1)
        for (ci, co, kk, s, p), w, b in zip(specs, ws, bs):
            h = F.relu(F.conv1d(h, w[k], b[k], stride=s, padding=p))
        out = h.flatten(1) @ wo[k].T + bo[k]
        tot = tot + F.cross_entropy(out, y[k])
    tot.backward()
def grouped(channels_last=False):
    h = x.permute(1, 0, 2).reshape(B, K, L)   # (B, K*1, L)
    for (ci, co, kk, s, p), w, b in zip(specs, ws, bs):
        h = F.relu(F.conv1d(h, w.reshape(K * co, ci, kk), b.reshape(-1), stride=s, padding=p, groups=K))
    h = h.reshape(B, K, C * 10).permute(1, 0, 2)   # (K, B, C*10)
    out = torch.baddbmm(bo.unsqueeze(1), h, wo.transpose(1, 2))
    F.cross_entropy(out.reshape(K * B, 10), y.reshape(-1), reduction="sum").backward()
def vm():
    def f(w0, w1, w2, b0, b1, b2, wo_, bo_, xk, yk):
        h = xk.unsqueeze(1)
        for (ci, co, kk, s, p), w, b in zip(specs, (w0, w1, w2), (b0, b1, b2)):
            h = F.relu(F.conv1d(h, w, b, stride=s, padding=p))
        return F.cross_entropy(h.flatten(1) @ wo_.T + bo_, yk)
    g = vmap(grad(f, argnums=(0,1,2,3,4,5,6,7)))(*ws, *bs, wo, bo, x, y)
def bench(fn, n=30):
    fn(); t = time.perf_counter()
    for _ in range(n): fn()
    return (time.perf_counter() - t) / n
for name, fn in (("sequential", seq), ("grouped", grouped), ("vmap(grad)", vm)):
    print(name, f"{1e3*bench(fn):.1f} ms per K=16 step")
def unfold_bmm():
    h = x.unsqueeze(2)   # (K, B, 1, L)
    for (ci, co, kk, s, p), w, b in zip(specs, ws, bs):
        Kk, Bb, Ci, Ll = h.shape
        hp = F.pad(h, (p, p))
        cols = hp.unfold(3, kk, s)                      # (K, B, Ci, Lout, k)
        Lout = cols.shape[3]
        cols = cols.permute(0, 1, 3, 2, 4).reshape(Kk, Bb * Lout, Ci * kk)
        out = torch.baddbmm(b.unsqueeze(1), cols, w.reshape(Kk, co, ci * kk).transpose(1, 2))  # (K, B*Lout, Co)
        h = F.relu(out).reshape(Kk, Bb, Lout, co).permute(0, 1, 3, 2)   # (K, B, Co, Lout)
    h = h.reshape(K, B, C * 10)
    out = torch.baddbmm(bo.unsqueeze(1), h, wo.transpose(1, 2))
    F.cross_entropy(out.reshape(K * B, 10), y.reshape(-1), reduction="sum").backward()
print("unfold+bmm", f"{1e3*bench(unfold_bmm):.1f} ms per K=16 step")
def unfold_bmm_cl():
    # channels-last layout (K, B, L, C): no permutes between layers
    h = x.unsqueeze(3)   # (K, B, L, 1)
    for (ci, co, kk, s, p), w, b in zip(specs, ws, bs):
        hp = F.pad(h, (0, 0, p, p))
        cols = hp.unfold(2, kk, s)                      # (K, B, Lout, Ci, k)
        Kk, Bb, Lout = cols.shape[:3]
        cols = cols.reshape(Kk, Bb * Lout, ci * kk)
        out = torch.baddbmm(b.unsqueeze(1), cols, w.reshape(Kk, co, ci * kk).transpose(1, 2))
        h = F.relu(out).reshape(Kk, Bb, Lout, co)
    h = h.permute(0, 1, 3, 2).reshape(K, B, C * 10)
    out = torch.baddbmm(bo.unsqueeze(1), h, wo.transpose(1, 2))
    F.cross_entropy(out.reshape(K * B, 10), y.reshape(-1), reduction="sum").backward()
print("unfold+bmm channels-last", f"{1e3*bench(unfold_bmm_cl):.1f} ms per K=16 step")


def grouped_channels_last():
    # one grouped 2-D convolution of height 1 per layer, channels-last, autograd for the backward
    h = x.permute(1, 2, 0).contiguous().unsqueeze(1).permute(0, 3, 1, 2)   # (B, K, 1, L) channels-last
    for (ci, co, kk, s, p), w, b in zip(specs, ws, bs):
        w2 = w.reshape(K * co, ci, 1, kk).contiguous(memory_format=torch.channels_last)
        h = F.relu(F.conv2d(h, w2, b.reshape(-1), stride=(1, s), padding=(0, p), groups=K))
    f = h.reshape(B, K, C, 10).transpose(0, 1).reshape(K, B, C * 10)
    out = torch.baddbmm(bo.unsqueeze(1), f, wo.transpose(1, 2))
    F.cross_entropy(out.reshape(K * B, 10), y.reshape(-1), reduction="sum").backward()


print("grouped channels-last (autograd)", f"{1e3*bench(grouped_channels_last):.1f} ms per K=16 step")

# what the vectorised engine runs: the same layout with the hand-written backward (models/stacked_conv.py),
# inside rewind's allocator policy for stacks (rewind/alloc.py)
import rewind  # noqa: E402
from rewind import alloc  # noqa: E402
from rewind.models.small import Conv1dNet  # noqa: E402

net = Conv1dNet(L, (C, C, C), 10)
params = {"convs.0.weight": ws[0].detach(), "convs.1.weight": ws[1].detach(), "convs.2.weight": ws[2].detach(),
          "convs.0.bias": bs[0].detach(), "convs.1.bias": bs[1].detach(), "convs.2.bias": bs[2].detach(),
          "out.weight": wo.detach(), "out.bias": bo.detach()}
grads = {n: torch.empty_like(v) for n, v in params.items()}
with alloc.roomy():
    print("rewind's stacked_grad (hand-written, channels-last)",
          f"{1e3*bench(lambda: net.stacked_grad(params, x, y, grads)):.1f} ms per K=16 step")
    print("vmap(grad) inside alloc.roomy()", f"{1e3*bench(vm):.1f} ms per K=16 step")

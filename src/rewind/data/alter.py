"""Altered data for pretraining (the early-phase paper, section 5): one registered function per
alteration, over whole tensors (a dataset split is one batch), seeded from its own seed.

Each function takes (x, y, classes, params, generator) and returns (x', y', classes'), where
``params`` is the spec's ``pretrain`` section. Train and test splits are altered with
separate generators, so the test split measures the pretext task on unseen examples.

- ``random-labels``: every example gets a label drawn uniformly, once: it keeps it for the whole
  pretraining (the altered set is built once per run, and rebuilt identically on resume).
- ``rotation``: every image in each of its four exact rotations (0/90/180/270 degrees, ``rot90``:
  no interpolation), labelled 0-3; the training set is four times larger (every epoch shows each
  image in all four). Square images only.
- ``transform``: the same 4-way task for 1-D signals: the group {identity, reverse, negate,
  reverse+negate} (element g = 2 * negate + reverse; g * h = g XOR h).
- ``blur``: average pooling to ceil(size / factor) per spatial axis, then upsampling back to the
  original size (``nearest``: each pooled value repeated; ``linear``: linear or bilinear
  interpolation with align_corners=False). Constant inputs are left unchanged.
- ``subset``: ``size`` examples drawn without replacement (kept in index order), or the easiest or
  hardest by a score set (data/subsets.py's rule; ``balance``: equally many per class); test
  unchanged.
- ``sparse``: the data unchanged (the network is masked instead).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

from ..spec import SpecError, register_alteration_catalogue, register_identity

Alteration = Callable[..., tuple[torch.Tensor, torch.Tensor, int]]
ALTERATIONS: dict[str, Alteration] = {}
_ORIGINS: dict[str, object] = {}


def register_alteration(name: str):
    """Decorator over ``fn(x, y, classes, params, generator) -> (x', y', classes')``: a pretraining
    alteration that ``pretrain.kind`` may name (a plugin's has no pretrain.* parameters of its own;
    it reads pretrain.seed through the generator). A name that is taken is refused."""
    from ..plugins import origin_of

    def deco(fn: Alteration) -> Alteration:
        if name in ALTERATIONS:
            raise SpecError(f"register_alteration: an alteration named {name!r} is already registered "
                            f"(by {_ORIGINS[name].group})")
        ALTERATIONS[name] = fn
        _ORIGINS[name] = origin_of(fn)
        return fn
    return deco


def _identity(spec) -> dict[str, str]:
    where = _ORIGINS.get(spec.pretrain.kind)
    return {"pretrain.kind": where.digest} if where is not None and where.digest else {}


register_alteration_catalogue(lambda name: name == "" or name in ALTERATIONS, lambda: sorted(ALTERATIONS))
register_identity(_identity)


@register_alteration("random-labels")
def random_labels(x, y, classes, params, g):
    return x, torch.randint(classes, (len(y),), generator=g).to(y.device), classes


def _rotations(x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise SpecError(f"pretrain.kind: rotation needs square images [N, C, H, W], got examples of shape "
                        f"{tuple(x.shape[1:])}" + ("; for 1-D data use transform" if x.dim() == 2 else ""))
    return torch.cat([torch.rot90(x, r, dims=(-2, -1)) for r in range(4)])


@register_alteration("rotation")
def rotation(x, y, classes, params, g):
    labels = torch.arange(4, device=y.device).repeat_interleave(len(y))
    return _rotations(x), labels, 4


def group_element(x: torch.Tensor, g: int) -> torch.Tensor:
    """Element g of {identity, reverse, negate, reverse+negate} applied to every example of x
    (reverse flips the last axis)."""
    out = x.flip(-1) if g & 1 else x
    return -out if g & 2 else out


@register_alteration("transform")
def transform(x, y, classes, params, g):
    labels = torch.arange(4, device=y.device).repeat_interleave(len(y))
    return torch.cat([group_element(x, e) for e in range(4)]), labels, 4


def blur_tensor(x: torch.Tensor, factor: int, upsample: str) -> torch.Tensor:
    """Average-pool x ([N, L] signals or [N, C, H, W] images) by ``factor`` per spatial axis and
    upsample back to the same size."""
    if factor < 2:
        raise SpecError(f"pretrain.factor: blur needs a factor of 2 or more, got {factor}")
    spatial = x.shape[1:] if x.dim() == 2 else x.shape[2:]
    if x.dim() not in (2, 4) or factor > min(spatial):
        raise SpecError(f"pretrain.factor: {factor} is larger than the input ({'x'.join(map(str, spatial))})")
    z = x.unsqueeze(1) if x.dim() == 2 else x
    size = tuple(z.shape[2:])
    pooled_size = tuple(-(-s // factor) for s in size)
    if z.dim() == 3:
        pooled = F.adaptive_avg_pool1d(z, pooled_size)
        mode = "nearest" if upsample == "nearest" else "linear"
    else:
        pooled = F.adaptive_avg_pool2d(z, pooled_size)
        mode = "nearest" if upsample == "nearest" else "bilinear"
    out = F.interpolate(pooled, size=size, mode=mode, **({} if mode == "nearest" else {"align_corners": False}))
    return out.squeeze(1) if x.dim() == 2 else out


@register_alteration("blur")
def blur(x, y, classes, params, g):
    return blur_tensor(x, params.factor, params.upsample), y, classes


@register_alteration("subset")
def subset(x, y, classes, params, g, split: str = "train", root=None):
    if split != "train":
        return x, y, classes
    if params.size > len(y):
        raise SpecError(f"pretrain.size: {params.size:,} is more than the {len(y):,} training examples")
    if params.order == "random" and not params.balance:
        idx = torch.randperm(len(y), generator=g)[:params.size].sort().values.to(y.device)
        return x[idx], y[idx], classes
    from ..spec import DataSpec
    from .subsets import choose, load_scores

    scores = None if params.order == "random" else load_scores(root, params.score, y)
    if scores is None:  # a balanced random subset: rank by a draw from the alteration's generator
        scores = torch.rand(len(y), generator=g, dtype=torch.float64)
    rule = DataSpec(subset="easiest" if params.order in ("easiest", "random") else "hardest",
                    subset_size=params.size, subset_score="-", subset_balance=params.balance)
    idx = choose(scores, y.cpu(), rule, classes).to(y.device)
    return x[idx], y[idx], classes


@register_alteration("sparse")
def sparse(x, y, classes, params, g):
    return x, y, classes


def check_alteration(params, input_shape: tuple[int, ...], n_train: int, batch_size: int, root=None) -> None:
    """Refuse (SpecError naming the field) an alteration that does not fit the data, before
    anything is computed or written."""
    kind = params.kind
    if kind == "rotation" and (len(input_shape) != 3 or input_shape[-1] != input_shape[-2]):
        raise SpecError(f"pretrain.kind: rotation needs square images, got examples of shape {tuple(input_shape)}"
                        + ("; for 1-D data use transform" if len(input_shape) == 1 else ""))
    if kind == "blur":
        spatial = input_shape if len(input_shape) == 1 else input_shape[1:]
        if params.factor < 2:
            raise SpecError(f"pretrain.factor: blur needs a factor of 2 or more, got {params.factor}")
        if params.factor > min(spatial):
            raise SpecError(f"pretrain.factor: {params.factor} is larger than the input "
                            f"({'x'.join(map(str, spatial))})")
    if kind == "subset":
        if params.size > n_train:
            raise SpecError(f"pretrain.size: {params.size:,} is more than the {n_train:,} training examples")
        if params.size < batch_size:
            raise SpecError(f"pretrain.size: {params.size:,} examples are fewer than a batch ({batch_size})")
        if params.order != "random" and root is not None:
            from .subsets import score_path

            if not score_path(root, params.score).exists():
                raise SpecError(f"pretrain.score: no score set {params.score!r} in {score_path(root, params.score).parent}"
                                " (rewind scores computes one and prints its key)")


def alter(kind: str, x: torch.Tensor, y: torch.Tensor, classes: int, params, g: torch.Generator,
          split: str, root=None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Split ``split`` (train or test) of a dataset as pretraining kind ``kind`` sees it (``root``:
    the data root, where scored subsets find their score set)."""
    fn = ALTERATIONS[kind]
    if kind == "subset":
        return fn(x, y, classes, params, g, split=split, root=root)
    return fn(x, y, classes, params, g)

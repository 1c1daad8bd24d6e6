"""The network against a linear model of its inputs in the early phase.

Three modules, by role:

- ``ntk``: the neural tangent kernel at initialisation and its affine approximation (Hu, Xiao,
  Adlam & Pennington 2020), closed form for two-layer networks or fitted to the empirical NTK.
- ``hu``: Hu et al.'s linear model trained beside the network on a binary task (full batch or
  SGD), the discrepancy between them, departure times, and sweeps over width, learning rate and
  input dimension (``rewind linear-sweep``, ``rewind linear --model-of hu``).
- ``offset``: rewind's own offset linear model for deep networks trained with momentum and weight
  decay, where Hu et al.'s derivation does not hold (``rewind linear --model-of offset``).
"""

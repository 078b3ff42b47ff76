"""What a checkpoint is: the networks a study trains, their loss and their model folder
(``unet``), and the closed-form denoisers that take a trained network's place (``closed_form``,
with ``memorizer`` and ``gaussian``).

This file imports nothing: ``import raystudy.models`` does not import torch.
"""

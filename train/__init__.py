"""nmrladder.train: simulator, datasets, model, losses, training, evaluation.

Importing this package does not import torch: the simulator is NumPy only, and each
torch module is imported where it is used.
"""

"""Training data: counter-based seeds, the Gaussian and GOE designs, materialised or regenerated, sharded."""
from quadflow.data.dataset import (BLOCK, DESIGNS, STORAGES, Dataset, ReplicaDataset, check_data_options,
                                   quadratic_form)
from quadflow.data.heldout import HeldOut
from quadflow.data.spec import DataSpec
from quadflow.data.seeds import Seeds, gaussian_weights, generator, initial_weights, teacher_matrix

__all__ = ["BLOCK", "DESIGNS", "STORAGES", "DataSpec", "Dataset", "ReplicaDataset", "HeldOut", "Seeds", "check_data_options", "gaussian_weights",
           "generator", "initial_weights", "quadratic_form", "teacher_matrix"]

"""Datasets (a registry of loaders) and scenarios (what to forget)."""

from .base import ArrayDataset, Concat, DatasetSplits, LabeledDataset, Relabeled, Subset, iterate_batches, targets_of
from .corrupt import CORRUPTION_KINDS, Corruption
from .datasets import CIFAR100_COARSE, DATASETS, default_root, from_arrays, from_dataset, load_dataset
from .scenario import SPLITS, Scenario, TrainingSet, parse_scenario, validation_split

__all__ = [
    "ArrayDataset",
    "CIFAR100_COARSE",
    "CORRUPTION_KINDS",
    "Concat",
    "Corruption",
    "DATASETS",
    "DatasetSplits",
    "LabeledDataset",
    "Relabeled",
    "SPLITS",
    "Scenario",
    "Subset",
    "TrainingSet",
    "default_root",
    "from_arrays",
    "from_dataset",
    "iterate_batches",
    "load_dataset",
    "parse_scenario",
    "targets_of",
    "validation_split",
]

"""Data sets for training and metrics: CIFAR-10, MNIST, Fashion-MNIST, image folders, procedural shapes."""
from stylelens.datasets.cifar10 import CIFAR10_DIR, CIFAR10_MEMBERS, CIFAR10_ROW_BYTES, read_cifar10
from stylelens.datasets.dataset import ImageDataset, load_dataset, to_float
from stylelens.datasets.download import data_dir, dataset_source, download_dataset, file_md5
from stylelens.datasets.folder import IMAGE_SUFFIXES, convert_arrays, read_image_folder
from stylelens.datasets.idx import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    IDX_PREFIXES,
    read_idx_dataset,
    read_idx_images,
    read_idx_labels,
)
from stylelens.datasets.shapes import SHAPES, SPLIT_SEEDS, SUPERSAMPLE, make_shapes, render, sample_factors
from stylelens.datasets.specs import (
    CHANNELS,
    CIFAR10_CLASSES,
    DATASETS,
    FASHION_MNIST_CLASSES,
    KINDS,
    MNIST_CLASSES,
    RESOLUTION_RANGE,
    SPLITS,
    UNLABELED,
    DatasetSource,
    DataSpec,
    RemoteFile,
    check_split,
    parse_classes,
    parse_data_spec,
)

__all__ = ['CHANNELS', 'CIFAR10_CLASSES', 'CIFAR10_DIR', 'CIFAR10_MEMBERS', 'CIFAR10_ROW_BYTES', 'DATASETS', 'DataSpec', 'DatasetSource', 'FASHION_MNIST_CLASSES', 'IDX_IMAGES_MAGIC', 'IDX_LABELS_MAGIC', 'IDX_PREFIXES', 'IMAGE_SUFFIXES', 'ImageDataset', 'KINDS', 'MNIST_CLASSES', 'RESOLUTION_RANGE', 'RemoteFile', 'SHAPES', 'SPLITS', 'SPLIT_SEEDS', 'SUPERSAMPLE', 'UNLABELED', 'check_split', 'convert_arrays', 'data_dir', 'dataset_source', 'download_dataset', 'file_md5', 'load_dataset', 'make_shapes', 'parse_classes', 'parse_data_spec', 'read_cifar10', 'read_idx_dataset', 'read_idx_images', 'read_idx_labels', 'read_image_folder', 'render', 'sample_factors', 'to_float']

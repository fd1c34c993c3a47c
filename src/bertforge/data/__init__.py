"""Pretraining data: raw text or a Wikipedia dump -> sentences -> MLM/NSP instances in shards -> a dataset."""

from bertforge.data.convert import convert_tfrecords
from bertforge.data.create import CreateOptions, CreateReport, create_pretraining_data
from bertforge.data.dataset import FEATURES, PretrainingDataset
from bertforge.data.inspect import dataset_statistics
from bertforge.data.pretraining_tfrecords import read_pretraining_tfrecords
from bertforge.data.sampler import DistributedSampler
from bertforge.data.sentences import split_sentences
from bertforge.data.wiki import WikiReport, extract_wiki

__all__ = [
    "FEATURES",
    "CreateOptions",
    "CreateReport",
    "DistributedSampler",
    "PretrainingDataset",
    "WikiReport",
    "convert_tfrecords",
    "create_pretraining_data",
    "dataset_statistics",
    "extract_wiki",
    "read_pretraining_tfrecords",
    "split_sentences",
]

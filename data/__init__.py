"""kgmm.data — datasets: readers, writers and metrics for the standard VQA and retrieval formats.

Readers return a sequence of plain records (:class:`VQARecord`, :class:`RetrievalRecord`)
with image paths, never opened images; images that are referenced but not on disk are listed
in the dataset's ``missing_images``. This package imports only :mod:`kgmm.graph` and the
standard library: no torch.
"""

from .coco import load_coco_captions, write_coco_captions
from .fvqa import load_fvqa
from .imagefolder import load_image_captions, write_image_captions
from .jsonl import read_jsonl, write_jsonl
from .records import CaptionDataset, RecordDataset, RetrievalRecord, VQADataset, VQARecord
from .retrieval import load_retrieval
from .vqa import load_vqa, vqa_paths, write_vqa
from .vqa_eval import evaluate_vqa, normalize_answer, vqa_accuracy

__all__ = [
    "CaptionDataset",
    "RecordDataset",
    "RetrievalRecord",
    "VQADataset",
    "VQARecord",
    "evaluate_vqa",
    "load_coco_captions",
    "load_fvqa",
    "load_image_captions",
    "load_retrieval",
    "load_vqa",
    "normalize_answer",
    "read_jsonl",
    "vqa_accuracy",
    "vqa_paths",
    "write_coco_captions",
    "write_image_captions",
    "write_jsonl",
    "write_vqa",
]

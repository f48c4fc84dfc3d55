"""napari-segkit: segment and count nuclei and cells by clicking.

The public core API, importable without Qt, napari or magicgui. Modules load on first
use, so ``import napari_segkit`` stays fast (torch is imported only when a model is used)::

    from napari_segkit import annotations, io, metrics, prediction, training, workflows
    napari_segkit.predict(model, image)   # == prediction.predict

``napari_segkit.convert`` and ``napari_segkit.data`` still work: deprecated namespaces
that forward to ``annotations`` and to ``normalization`` / ``sampling``.
"""


import importlib  # no "from __future__ import annotations" here: it would shadow the submodule

__version__ = "0.1.0"

_MODULES = (
    "annotations", "click_targets", "corrections", "finetune", "holdout", "io", "measure",
    "metrics", "model", "model_io", "normalization", "postprocess", "prediction", "runtime",
    "sampling", "scoring", "suggestions", "targets", "tiling", "train_config", "train_data",
    "training", "workflows",
    "color_augment", "instance_errors", "instance_refine", "losses", "nets", "object_size",
    "pixel_classifier", "pixel_features", "test_time_zoom",
    "convert", "data",  # deprecated: forward to their new homes
)
_FUNCTIONS = {
    "clicks_to_labels": "annotations",
    "clicks_to_sparse_labels": "annotations",
    "polygons_to_labels": "annotations",
    "boxes_to_labels": "annotations",
    "outline_to_labels": "annotations",
    "train": "training",
    "TrainConfig": "training",
    "run_training": "workflows",
    "targets_from_clicks": "click_targets",
    "suggest_clicks": "suggestions",
    "retrain_with_corrections": "corrections",
    "predict": "prediction",
    "load_model": "model_io",
    "save_model": "model_io",
    "load_default_model": "model_io",
    "evaluate_instances": "metrics",
    "match_instances": "metrics",
    "object_table": "measure",
    "PixelClassifier": "pixel_classifier",
}
__all__ = ["__version__", *_MODULES, *_FUNCTIONS]


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(f"{__name__}.{_FUNCTIONS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

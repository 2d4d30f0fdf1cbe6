"""Tasks: what a training step computes and how a model is scored, per kind of signal."""

from __future__ import annotations


def build_task(config):
    if config.task == "image":
        from .image import ImageRegression
        return ImageRegression(config)
    if config.task == "nvs":
        from .nvs import ViewSynthesis
        return ViewSynthesis(config)
    raise ValueError(f"unknown task {config.task!r}: expected 'image' or 'nvs'")

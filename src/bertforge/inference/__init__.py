"""Inference for every fine-tuned model: `Predictor.from_pretrained(folder).predict(texts)`."""

from bertforge.inference.predictor import Predictor

__all__ = ["Predictor"]

"""bertforge: pretrain, fine-tune, evaluate, export and serve BERT and NEZHA models on PyTorch."""

__version__ = "0.1.0"

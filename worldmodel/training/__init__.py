"""Training on recorded episodes: V-JEPA encoder pretraining (wm-pretrain), the frozen-feature
cache (wm-cache), the action-conditioned predictor (wm-train), their run folders and DDP setup.
Each CLI lives in its module (``pretrain``, ``cache``, ``train``); import what you need from there."""

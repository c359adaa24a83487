"""The networks: the V-JEPA encoder, the action-conditioned predictor and their parts (rotary
positions, KV cache, camera views side by side, pixel preprocessing, state propagation)."""

from worldmodel.models.encoder import ENCODER_PRESETS, EncoderConfig, VisionTransformer
from worldmodel.models.predictor import PREDICTOR_PRESETS, ACPredictor, PredictorConfig
from worldmodel.models.preprocess import PreprocessConfig, Preprocessor

__all__ = [
    "ENCODER_PRESETS", "PREDICTOR_PRESETS", "ACPredictor", "EncoderConfig", "PredictorConfig",
    "PreprocessConfig", "Preprocessor", "VisionTransformer",
]  # fmt: skip

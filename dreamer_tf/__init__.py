"""dreamer_tf: the Dreamer family of world-model agents in TensorFlow 2 + TFP."""

__version__ = '0.1.0'

"""dreamer_tf_runtime: run a policy exported by dreamer_tf with numpy and ONNX Runtime or
LiteRT, without TensorFlow (docs/export.md in the dreamer_tf repository)."""

from dreamer_tf_runtime.metadata import MetadataError
from dreamer_tf_runtime.observations import ObservationError
from dreamer_tf_runtime.policy import NonFiniteActionError, Policy, env_action, run_episodes

__all__ = ['MetadataError', 'NonFiniteActionError', 'ObservationError', 'Policy', 'env_action',
           'run_episodes']
__version__ = '0.1.0'

"""dreamer_tf: the Dreamer family of world-model agents in TensorFlow 2 + TFP.

`dreamer_tf.train(...)` trains on a named task or your own gymnasium env and
`dreamer_tf.load(logdir)` loads a run's policy (dreamer_tf/api.py); importing the
package does not import TensorFlow.
"""

from dreamer_tf.api import Policy, load, train

__all__ = ['Policy', 'load', 'train']
__version__ = '0.1.0'

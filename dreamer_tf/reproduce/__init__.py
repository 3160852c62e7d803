"""Reproducing the papers: read run directories, score them as the papers do, and
report them next to the published numbers (dreamer_tf.reference). Everything here
but `evaluate` reads files only and never imports TensorFlow."""

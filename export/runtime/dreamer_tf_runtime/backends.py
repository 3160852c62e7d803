"""Engines that run an exported policy step: ONNX Runtime (`.onnx`) and LiteRT (`.tflite`).

Each takes the step's inputs as a dict of numpy arrays and returns its outputs
(`action`, `next_deter`, `next_stoch`) as a dict.
"""

from dreamer_tf_runtime.metadata import STEP_OUTPUTS, MetadataError


class Onnx:
    """ONNX Runtime on the CPU; `threads` intra-op threads (None: one per core)."""

    def __init__(self, path, threads=None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=['CPUExecutionProvider'])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, inputs):
        return dict(zip(STEP_OUTPUTS, self.session.run(list(STEP_OUTPUTS), inputs)))


class LiteRT:
    """LiteRT (formerly TensorFlow Lite) through `ai_edge_litert`, the model's `step`
    signature; `threads` interpreter threads (None: LiteRT's default)."""

    def __init__(self, path, threads=None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ImportError(
                f'{path} is a TFLite model; its runtime is LiteRT: '
                "pip install 'dreamer-tf-runtime[litert]' (or ai-edge-litert)") from None
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.runner = self.interpreter.get_signature_runner('step')
        self.input_names = list(self.runner.get_input_details())

    def __call__(self, inputs):
        outputs = self.runner(**inputs)
        return {key: outputs[key] for key in STEP_OUTPUTS}


BACKENDS = {'onnx': Onnx, 'tflite': LiteRT}


def load(path, meta, threads=None):
    """The engine for the model at `path` in its metadata's format."""
    if meta['format'] not in BACKENDS:
        raise MetadataError(
            f'{path} is a {meta["format"]} export, which needs TensorFlow; this runtime runs '
            f'{" and ".join(BACKENDS)} models')
    return BACKENDS[meta['format']](path, threads)

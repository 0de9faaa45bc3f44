"""Run an ONNX model on saved inputs and save its outputs, with only numpy and onnxruntime installed.

    python benchmarks/onnx_run.py model.onnx inputs.npz outputs.npz

For comparing CPUs (tests/test_arm.py runs it on x86 and, under qemu-aarch64, on ARM): the
session settings are slimflow's (pipeline_lib.export.runtime.session_options: CPU provider, all
graph optimizations, sequential, 1 intra-op thread), written out here because pipeline_lib needs torch.
The inputs are fed by the graph's input names, in the .npz's order; outputs are saved as out0, out1, ...
"""
import sys

import numpy as np
import onnxruntime as ort


def main(model: str, inputs: str, outputs: str) -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    arrays = np.load(inputs)
    feed = {i.name: arrays[key] for i, key in zip(session.get_inputs(), arrays.files)}
    np.savez(outputs, **{f"out{k}": o for k, o in enumerate(session.run(None, feed))})


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Runs an int8 OpenVINO IR with its FakeQuantize ops computed in float, in a process of its own.

Started as a script by compress.export.runtimes.OpenVinoEmbedder (int8 "emulated"), never imported there: it
needs only numpy and openvino. Why a separate process: the CPU plugin compiled with low-precision transformations
off (LP_TRANSFORMS_MODE, an OpenVINO CPU property) left the test process crashing later, at random, once it had
also forked DataLoader workers; a process of its own keeps that state away from the caller.

Protocol on stdin / stdout: each message is an 8-byte little-endian length followed by that many bytes of
`numpy.save` output. The parent sends float32 NCHW batches; the worker answers each with the float32 output.
A first answer (a 1-element array) says the model compiled; EOF on stdin ends the worker.
"""

import io
import struct
import sys

import numpy as np


def read_array(stream) -> "np.ndarray | None":
    head = stream.read(8)
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head)
    return np.load(io.BytesIO(stream.read(n)), allow_pickle=False)


def write_array(stream, a: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    stream.write(struct.pack("<Q", buf.tell()) + buf.getvalue())
    stream.flush()


def main() -> None:
    import openvino as ov

    path, threads = sys.argv[1], int(sys.argv[2])
    config = {"LP_TRANSFORMS_MODE": False, **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
    request = ov.Core().compile_model(path, "CPU", config).create_infer_request()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    write_array(stdout, np.zeros(1, np.float32))  # ready
    while (x := read_array(stdin)) is not None:
        request.infer({0: x})
        write_array(stdout, np.array(request.get_output_tensor(0).data, dtype=np.float32))


if __name__ == "__main__":
    main()

"""A stand-in for NVIDIA's `tensorrt` Python bindings, for tests only: TensorRT cannot be installed on the
machines that run the test suite. It implements the part of the API that build_engine.py and run_on_board.py
use, and "builds" an engine that is the ONNX model itself, run by onnxruntime on the CPU. So a test checks the
bundle's plumbing (engine build call, buffers, input layout, output read-back, parity), never TensorRT's
numerics or speed. FAKE_TRT_API=8 (default) gives the bindings API of TensorRT 8.2 (JetPack 4.6);
FAKE_TRT_API=10 the named-tensor API of TensorRT 10.
"""

import ctypes
import os

import numpy as np
import onnxruntime as ort

__version__ = "0.0+fake-for-tests"
API = os.environ.get("FAKE_TRT_API", "8")
MAGIC = b"FAKE-TRT-ENGINE\n"


class Logger:
    WARNING = 2

    def __init__(self, severity=WARNING):
        self.severity = severity


class DataType:
    FLOAT = "float32"


class TensorIOMode:
    INPUT, OUTPUT = "input", "output"


class NetworkDefinitionCreationFlag:
    EXPLICIT_BATCH = 0


class BuilderFlag:
    FP16, INT8 = "fp16", "int8"


class MemoryPoolType:
    WORKSPACE = "workspace"


def nptype(dtype):
    return np.dtype(dtype).type


class _Network:
    onnx = b""


class OnnxParser:
    def __init__(self, network, logger):
        self.network, self.num_errors = network, 0

    def parse(self, data):
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])  # a broken model fails here
        self.network.onnx = data
        return True


class _Config:
    def __init__(self):
        self.flags, self.max_workspace_size = set(), 0

    def set_flag(self, flag):
        self.flags.add(flag)


class _Config10(_Config):
    def set_memory_pool_limit(self, pool, size):
        self.max_workspace_size = size


class Builder:
    platform_has_fast_fp16 = True
    platform_has_fast_int8 = False  # like the Nano's Maxwell GPU

    def __init__(self, logger):
        pass

    def create_network(self, flags=0):
        return _Network()

    def create_builder_config(self):
        return _Config10() if API == "10" else _Config()

    def build_serialized_network(self, network, config):
        return MAGIC + network.onnx


class _Engine:
    def __init__(self, onnx_bytes):
        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        i, o = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.tensors = [(i.name, True, tuple(i.shape)), (o.name, False, tuple(o.shape))]

    def create_execution_context(self):
        return _Context(self)


class _Engine8(_Engine):
    @property
    def num_bindings(self):
        return len(self.tensors)

    def get_binding_name(self, i):
        return self.tensors[i][0]

    def binding_is_input(self, i):
        return self.tensors[i][1]

    def get_binding_shape(self, i):
        return self.tensors[i][2]

    def get_binding_dtype(self, i):
        return DataType.FLOAT


class _Engine10(_Engine):
    @property
    def num_io_tensors(self):
        return len(self.tensors)

    def _t(self, name):
        return next(t for t in self.tensors if t[0] == name)

    def get_tensor_name(self, i):
        return self.tensors[i][0]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if self._t(name)[1] else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return self._t(name)[2]

    def get_tensor_dtype(self, name):
        return DataType.FLOAT


class _Context:
    def __init__(self, engine):
        self.engine, self.addresses = engine, {}

    def execute_v2(self, bindings):
        (i_name, _, i_shape), (_, _, o_shape) = self.engine.tensors
        n = int(np.prod(i_shape))
        x = np.ctypeslib.as_array((ctypes.c_float * n).from_address(bindings[0])).reshape(i_shape).copy()
        y = np.ascontiguousarray(self.engine.session.run(None, {i_name: x})[0], np.float32)
        ctypes.memmove(bindings[1], y.ctypes.data, y.nbytes)
        return True

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr

    def execute_async_v3(self, stream_handle):
        return self.execute_v2([self.addresses[t[0]] for t in self.engine.tensors])


class Runtime:
    def __init__(self, logger):
        pass

    def deserialize_cuda_engine(self, data):
        if not data.startswith(MAGIC):
            return None  # what TensorRT does with an engine from another version or GPU
        return (_Engine10 if API == "10" else _Engine8)(data[len(MAGIC):])

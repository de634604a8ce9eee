"""Stand-in for pycuda.driver: allocations are host buffers, copies are memmove."""

import ctypes


class DeviceAllocation:
    def __init__(self, nbytes):
        self.buf = ctypes.create_string_buffer(nbytes)

    def __int__(self):
        return ctypes.addressof(self.buf)


def mem_alloc(nbytes):
    return DeviceAllocation(nbytes)


def memcpy_htod(dest, src):
    ctypes.memmove(int(dest), src.ctypes.data, src.nbytes)


def memcpy_dtoh(dest, src):
    ctypes.memmove(dest.ctypes.data, int(src), dest.nbytes)


class Context:
    @staticmethod
    def synchronize():
        pass

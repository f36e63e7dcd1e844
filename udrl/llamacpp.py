"""llama.cpp settings shared by the teacher and the student's GGUF decoder."""

from __future__ import annotations

import contextlib
import functools
from unittest import mock


@functools.cache
def _has_amx() -> bool:
    import llama_cpp

    llama_cpp.llama_backend_init()
    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


def model_params():
    """llama.cpp's default model parameters, without its extra weight buffers where ggml was built for
    AMX: there, decoding the Q4_1 teacher from AMX buffers crashed the process (a segmentation fault in
    ``llama_decode``, seen on a 2-core KVM guest of an AMX Xeon), while plain CPU buffers run the same
    weights. Elsewhere the defaults stand (including ggml's repacked weights)."""
    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    if _has_amx():
        params.use_extra_bufts = False
    return params


@contextlib.contextmanager
def safe_model_params():
    """While open, ``llama_cpp.Llama`` loads models with :func:`model_params` (its constructor offers no
    argument for the extra buffers; it starts from ``llama_model_default_params``)."""
    import llama_cpp

    with mock.patch.object(llama_cpp.llama_cpp, "llama_model_default_params", model_params):
        yield

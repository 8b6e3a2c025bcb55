"""Device settings: when torch.compile is used, and CUDA graphs only where there is CUDA."""

import pytest
import torch

from core.runtime.device import compile_mode

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_compile_auto_means_cuda_only():
    assert compile_mode("auto", CPU) is None and compile_mode("auto", CUDA) == "default"
    assert compile_mode("on", CPU) == "default" and compile_mode("off", CUDA) is None


def test_cuda_graphs_on_cuda_only():
    assert compile_mode("graphs", CUDA) == "reduce-overhead"
    with pytest.raises(ValueError, match="graphs .CUDA graphs. needs a CUDA device; this run is on cpu"):
        compile_mode("graphs", CPU)

"""Device settings: when torch.compile is used."""

import torch

from core.train.device import compile_enabled


def test_compile_auto_means_cuda_only():
    assert not compile_enabled("auto", torch.device("cpu")) and compile_enabled("auto", torch.device("cuda"))
    assert compile_enabled("on", torch.device("cpu")) and not compile_enabled("off", torch.device("cuda"))

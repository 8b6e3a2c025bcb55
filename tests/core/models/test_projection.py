import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from core.models.projection import LoRASettings, Projection

PARTS = {"gate_proj": 6, "up_proj": 6}


def projection(dropout: float) -> Projection:
    torch.manual_seed(0)
    proj = Projection(5, PARTS, False, LoRASettings(r=2, alpha=4, dropout=dropout, targets=("gate_proj", "up_proj")))
    with torch.no_grad():
        proj.weight.normal_()
        for b in proj.lora_B.values():
            b.normal_()  # B starts at zero: make the adapters count
    return proj


def by_hand(proj: Projection, x: torch.Tensor, adapter_input: torch.Tensor) -> torch.Tensor:
    """peft's LoRA, part by part: W x + scale * B_p (A_p x'), x' the adapters' (dropped-out) input."""
    delta = torch.cat([adapter_input @ proj.lora_A[p].T @ proj.lora_B[p].T for p in PARTS], dim=-1)
    return x @ proj.weight.T + proj.lora_scale * delta


def test_lora_dropout_drops_the_adapters_input_only_while_training():
    proj, x = projection(dropout=0.4), torch.randn(7, 5)
    torch.manual_seed(1)
    out = proj.train()(x)
    torch.manual_seed(1)
    dropped = F.dropout(x, 0.4, True)  # the same draw: the mask and its 1 / (1 - p) scaling
    assert not torch.equal(dropped, x)
    torch.testing.assert_close(out, by_hand(proj, x, dropped))
    torch.testing.assert_close(proj.eval()(x), by_hand(proj, x, x))  # evaluation drops nothing


class _Names(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_lora_dropout_is_one_operator_each_way():
    # F.dropout decomposes into four operators on a CPU (empty_like, bernoulli_, div_, mul); the
    # fused one is what CUDA runs, here too
    proj, x = projection(dropout=0.1).train(), torch.randn(7, 5, requires_grad=True)  # an activation
    with _Names() as forward:
        out = proj(x)
    with _Names() as backward:
        out.sum().backward()
    assert [n for n in forward.names if "dropout" in n or "bernoulli" in n] == ["native_dropout.default"]
    assert "bernoulli_.float" not in forward.names
    assert [n for n in backward.names if "dropout" in n] == ["native_dropout_backward.default"]

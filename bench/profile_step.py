"""Where a teacher training step spends its time on a GPU: variants timed side by side, then the
top kernels of one step from torch.profiler. Prints JSON lines, then the kernel table.

    python -m bench.profile_step [--device cuda] [--batch 256] [--depth 30]

Variants (same shape as `slmrec bench`; each row's samples/s comes from the shared loop):
- lora:        the teacher as trained (LoRA on gate/up/down, shared prompt prefix, attention mask);
- full:        every layer weight trained, no LoRA wrappers (what the issue's reference measured);
- frozen:      the backbone frozen, only the input map and score head train (the backward floor);
- lora_nomask: LoRA with the attention calls given no mask (timing only: they then attend as if
               causal from the top left, which is wrong), to price the masked attention kernel.
"""

from __future__ import annotations

import argparse
import json

import torch

from bench import llm
from core.models import layers
from core.models.llmrec import LLMRec


def timed(model: LLMRec, data, n: int, shape: llm.Shape, device) -> float:
    return llm.timed_training(model, llm.plain_loss(model, data), n, shape, device)


def kernel_table(model: LLMRec, data, shape: llm.Shape, device, rows: int = 25) -> str:
    from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415

    items, targets = data.inputs[:shape.batch], data.targets[:shape.batch]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = model.loss(items, targets)
            loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--depth", type=int, default=30)
    args = parser.parse_args()
    device = torch.device(args.device)
    shape = llm.Shape(batch=args.batch, steps=5)
    n = 2 * shape.steps * shape.batch
    data = llm.examples(shape, n, device)
    for name, training in (("lora", "lora"), ("full", "full"), ("frozen", "frozen")):
        model = llm.recommender(args.depth, shape, device, training=training)
        print(json.dumps({"variant": name, "samples_per_s": round(timed(model, data, n, shape, device), 1)}),
              flush=True)
    original = layers.attend
    layers.attend = lambda q, k, v, mask: original(q, k, v, None)  # every attention call causal, unmasked
    try:
        model = llm.recommender(args.depth, shape, device)
        rate = timed(model, data, n, shape, device)
    finally:
        layers.attend = original
    print(json.dumps({"variant": "lora_nomask", "samples_per_s": round(rate, 1)}), flush=True)
    print(kernel_table(llm.recommender(args.depth, shape, device), data, shape, device))


if __name__ == "__main__":
    main()

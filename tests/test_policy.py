"""Policy: chunked log-probs equal the whole-batch ones (values and gradients), gradient
checkpointing changes nothing but memory, checkpoints of trainable state round-trip."""

from __future__ import annotations

import pytest
import torch

from rftlab.config import load_config
from rftlab.errors import RftlabError
from rftlab.policy import load_policy, load_policy_for, response_logp
from rftlab.rollout import generate


def logp_and_grads(policy, batch, **kw):
    """(logp, entropy, {name: grad}) of sum(logp * mask) under the policy."""
    policy.model.zero_grad(set_to_none=True)
    args = (batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    with policy.autocast():
        logp, entropy = response_logp(policy, *args, with_entropy=True, temperature=0.7, **kw)
    (logp * batch.response_mask).sum().backward()
    grads = {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.grad is not None}
    return logp.detach(), entropy, grads


def assert_same(a, b, atol=1e-5):
    (logp_a, ent_a, grad_a), (logp_b, ent_b, grad_b) = a, b
    mask_ok = torch.isfinite(logp_a)
    assert mask_ok.all()
    torch.testing.assert_close(logp_a, logp_b, atol=atol, rtol=1e-5)
    torch.testing.assert_close(ent_a, ent_b, atol=atol, rtol=1e-5)
    assert grad_a.keys() == grad_b.keys() and grad_a
    for name in grad_a:  # float32 sums in another order: equal to 1e-5 of the gradient's scale
        scale = float(grad_a[name].abs().max()) + 1e-12
        assert float((grad_a[name] - grad_b[name]).abs().max()) <= atol * scale, name


def two_prompt_batch(policy, max_new_tokens=20):
    prompts = ["<|user|>What is 12 + 30?\n<|assistant|>", "<|user|>Tom has 3 apples.\n<|assistant|>"]
    return generate(policy, prompts, samples_per_prompt=2, max_new_tokens=max_new_tokens, seed=3)


@pytest.fixture(scope="module")
def tiny():
    return load_policy("tiny")


@pytest.mark.parametrize("chunk_tokens", [1, 7, 64, 10_000])
def test_chunked_logp_equals_whole_batch(tiny, chunk_tokens):
    batch = two_prompt_batch(tiny)
    assert_same(logp_and_grads(tiny, batch), logp_and_grads(tiny, batch, chunk_tokens=chunk_tokens))


def test_gradient_checkpointing_gives_the_same_gradients():
    cfg = load_config("tiny", ["model.gradient_checkpointing=true"])
    plain, checkpointed = load_policy("tiny"), load_policy_for(cfg.model)
    assert any(getattr(m, "gradient_checkpointing", False) for m in checkpointed.model.modules())
    batch = two_prompt_batch(plain)
    plain.model.train(), checkpointed.model.train()
    assert_same(logp_and_grads(plain, batch), logp_and_grads(checkpointed, batch, chunk_tokens=16))


def test_lora_with_gradient_checkpointing_and_chunks_gets_adapter_gradients():
    cfg = load_config("tiny", ["model.gradient_checkpointing=true", "model.lora_rank=4"])
    policy = load_policy_for(cfg.model)
    policy.model.train()
    _, _, grads = logp_and_grads(policy, two_prompt_batch(policy), chunk_tokens=8)
    assert grads and all("lora_" in n for n in grads)
    assert any(g.abs().sum() > 0 for g in grads.values())


def test_a_head_with_unknown_post_processing_is_refused(tiny):
    policy = load_policy("tiny")
    policy.model.forward = _scaled_forward(policy.model)
    with pytest.raises(RftlabError, match="train.logprob_chunk_tokens=0"):
        logp_and_grads(policy, two_prompt_batch(tiny, 6), chunk_tokens=4)


def _scaled_forward(model):
    """The model's forward with an extra logit scale that head_logits does not know about."""
    forward = model.forward

    def scaled(*args, **kwargs):
        out = forward(*args, **kwargs)
        out.logits = out.logits * 3
        return out

    return scaled


def test_trainable_state_round_trips_for_full_and_lora():
    for overrides in ([], ["model.lora_rank=2"]):
        cfg = load_config("tiny", overrides)
        a, b = load_policy_for(cfg.model), load_policy_for(cfg.model)
        with torch.no_grad():
            for p in a.trainable_parameters():
                p.add_(0.01)
        b.load_trainable_state_dict(a.trainable_state_dict())
        assert all(torch.equal(x, y) for x, y in zip(a.model.parameters(), b.model.parameters(), strict=True))


def test_model_availability_is_one_answer_for_the_loader_and_the_sweep(tmp_path, monkeypatch):
    """`model_unavailable` says why a name cannot load; `resolve_model_path` raises exactly that, and the
    pipeline's `model_status` shows it (issue 10: one source of truth)."""
    from rftlab import policy
    from rftlab.pipeline.sweep import model_status

    monkeypatch.setenv("RFTLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(policy, "BUILTIN_DIR", tmp_path / "builtin")  # no built-in is built here
    no_config = tmp_path / "empty"
    no_config.mkdir()
    hints = {
        "tiny": "built-in model 'tiny' is not built; run: rftlab build-tiny --profile tiny",
        "qwen2.5-coder-0.5b": "not fetched yet; run: rftlab fetch qwen2.5-coder-0.5b",
        str(no_config): f"model directory {no_config} has no config.json",
        "/no/such/dir": "model.name=/no/such/dir: there is no such folder",
    }
    for name, hint in hints.items():
        assert hint in policy.model_unavailable(name)
        assert model_status(name, device="cpu") == policy.model_unavailable(name)
        with pytest.raises(RftlabError) as err:
            policy.resolve_model_path(name)
        assert str(err.value) == policy.model_unavailable(name)
    assert policy.model_unavailable("org/some-model", hub=False) is None  # a hub id, not checked on this machine
    monkeypatch.setattr(policy, "hub_model_unavailable", lambda name: None)  # cached, or the hub is reachable
    assert policy.model_unavailable("org/some-model") is None
    assert policy.resolve_model_path("org/some-model") == "org/some-model"
    (tmp_path / "builtin" / "tiny").mkdir(parents=True)
    (tmp_path / "builtin" / "tiny" / "config.json").write_text("{}")
    assert policy.model_unavailable("tiny") is None and model_status("tiny", device="cpu") is None
    assert policy.resolve_model_path("tiny") == str(tmp_path / "builtin" / "tiny")


# ------------------------------------------------------------------ hub models: one line, no network wait


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt at a connection or a name lookup fails the test (the HTTP layers all end here)."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"a network call was attempted: {args[:2]}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, online mode (the env may say offline; each test sets what it needs)."""
    from huggingface_hub import constants

    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def test_uncached_hub_model_offline_is_one_line_before_any_network_call(hub_cache, no_network, tmp_path, capsys):
    from huggingface_hub import constants

    from rftlab.cli import main

    constants.HF_HUB_OFFLINE = True  # restored by the hub_cache fixture's monkeypatch
    out = tmp_path / "run"
    assert main(["run", "tiny", "model.name=org/not-cached", "run.threads=1", "--out", str(out)]) == 2
    # the start line, then the error (progress lines such as "rftlab [0:00] start-up" aside)
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("rftlab [")]
    assert len(err) == 2 and err[0].startswith("rftlab run:")
    assert "model.name=org/not-cached: not in the Hugging Face cache" in err[1] and str(hub_cache) in err[1]
    assert "HF_HUB_OFFLINE is set" in err[1] and "hf download org/not-cached" in err[1]
    assert not out.exists()  # a refused run leaves no directory


def test_uncached_hub_model_with_an_unreachable_hub_is_one_line(hub_cache, no_network, monkeypatch):
    from rftlab import policy

    probed = []
    monkeypatch.setattr(policy, "hub_reachable", lambda endpoint: probed.append(endpoint) or False)
    with pytest.raises(RftlabError, match="cannot be reached; download it where there is network") as err:
        policy.load_policy("org/not-cached")
    assert "\n" not in str(err.value) and len(probed) == 1
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the environment variable alone also counts
    with pytest.raises(RftlabError, match="HF_HUB_OFFLINE is set"):
        policy.load_policy("org/not-cached")
    assert len(probed) == 1  # offline: not even the probe


def test_cached_hub_model_is_available_without_network(hub_cache, no_network):
    from rftlab import policy

    snapshot = hub_cache / "models--org--cached" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (hub_cache / "models--org--cached" / "refs").mkdir()
    (hub_cache / "models--org--cached" / "refs" / "main").write_text("abc123")
    assert policy.model_unavailable("org/cached") is None


def test_hub_probe_is_one_short_connection(monkeypatch):
    import socket

    from rftlab import policy

    calls = []

    def connect(address, timeout):
        calls.append((address, timeout))
        raise OSError("unreachable")

    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(socket, "create_connection", connect)
    assert policy.hub_reachable("https://huggingface.co") is False
    assert calls == [(("huggingface.co", 443), policy.HUB_PROBE_TIMEOUT_S)]
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")  # behind a proxy a direct probe proves nothing
    assert policy.hub_reachable("https://huggingface.co") is True and len(calls) == 1


# ----------------------------------------------------------------------------- logits_to_keep, shared log-softmax


def _response_logp(temperature):
    def compute(policy, *args):
        return response_logp(policy, *args, with_entropy=True, temperature=temperature)

    return compute


def _reference(fn, temperature):
    def compute(policy, *args):
        return fn(policy, *args, temperature=temperature)

    return compute


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logits_to_keep_changes_nothing_but_the_head_rows(tiny, temperature):
    """Response-only logits vs logits at every position, through the same log-softmax: 1e-6 (float32)."""
    from logp_reference import full_position_logp, logp_entropy_grads, worst_gradient_difference

    batch = two_prompt_batch(tiny)
    kept = logp_entropy_grads(tiny, batch, _response_logp(temperature))
    full = logp_entropy_grads(tiny, batch, _reference(full_position_logp, temperature))
    torch.testing.assert_close(kept[0], full[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(kept[1], full[1], atol=1e-6, rtol=0)
    assert worst_gradient_difference(full[2], kept[2]) <= 1e-6


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_response_logp_equals_the_earlier_computation(tiny, temperature):
    """Against token - logsumexp over every position's logits with a separate entropy log_softmax.

    The entropy is the same log_softmax (1e-6). The earlier logp rounded logsumexp to the ulp of the
    logits' magnitude (1.9e-6 for logits in [16, 32)), so values agree to 2 such ulps, and gradients,
    float32 sums over every token, to 1e-5 of their scale (measured 4e-6 on tiny; the float32 model is
    6e-6 from a float64 one either way).
    """
    from logp_reference import earlier_logp, full_position_logits, logp_entropy_grads, worst_gradient_difference

    batch = two_prompt_batch(tiny)
    args = (batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    with torch.no_grad():
        ulp = torch.finfo(torch.float32).eps * float(full_position_logits(tiny, *args).abs().max()) / temperature
    new = logp_entropy_grads(tiny, batch, _response_logp(temperature))
    old = logp_entropy_grads(tiny, batch, _reference(earlier_logp, temperature))
    torch.testing.assert_close(new[0], old[0], atol=2 * ulp, rtol=1e-6)
    torch.testing.assert_close(new[1], old[1], atol=1e-6, rtol=0)
    assert worst_gradient_difference(old[2], new[2]) <= 1e-5


def test_the_output_head_sees_only_the_response_positions(tiny):
    batch = two_prompt_batch(tiny)
    rows = []
    hook = tiny.model.get_output_embeddings().register_forward_hook(lambda m, inp, out: rows.append(inp[0].shape))
    try:
        response_logp(tiny, batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    finally:
        hook.remove()
    n, t = batch.response_ids.shape
    assert batch.prompt_ids.shape[1] > 1 and rows == [torch.Size([n, t + 1, tiny.model.config.hidden_size])]


class _NoLogitsToKeep(torch.nn.Module):
    """A causal LM whose forward does not take logits_to_keep (an older or custom model)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)


def test_a_model_without_logits_to_keep_gets_every_position_and_the_same_values(tiny):
    from rftlab.policy import takes_logits_to_keep

    batch = two_prompt_batch(tiny)
    args = (batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    plain = load_policy("tiny")
    plain.model = _NoLogitsToKeep(plain.model)
    assert takes_logits_to_keep(tiny.model) and not takes_logits_to_keep(plain.model)
    with torch.no_grad():
        want, want_entropy = response_logp(tiny, *args, with_entropy=True)
        got, got_entropy = response_logp(plain, *args, with_entropy=True)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(got_entropy, want_entropy, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- shared prompt forward


def three_group_batch(policy, samples=3, max_new_tokens=24):
    """Prompts of different lengths (left padding), `samples` rows each, responses of different lengths."""
    prompts = [
        "<|user|>What is 12 + 30?\n<|assistant|>",
        "<|user|>Tom has 3 apples and buys 4 more. How many now?\n<|assistant|>",
        "<|user|>7 * 6 = ?\n<|assistant|>",
    ]
    return generate(policy, prompts, samples_per_prompt=samples, max_new_tokens=max_new_tokens, seed=5)


def embedding_calls(policy):
    """Record the (rows, positions) of every input the model's token embedding sees."""
    seen = []
    hook = policy.model.get_input_embeddings().register_forward_hook(
        lambda m, inp, out: seen.append(tuple(inp[0].shape))
    )
    return seen, hook


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_shared_prompt_equals_the_plain_forward(tiny, temperature):
    """Values and gradients equal the per-row forward's to float32 rounding (other matmul shapes)."""
    batch = three_group_batch(tiny)
    lengths = batch.response_mask.sum(1)
    assert batch.prompt_mask.sum(1).unique().numel() == 3 and lengths.unique().numel() > 1
    tiny.model.train()
    try:
        plain = logp_and_grads(tiny, batch, shared_prompt=False)
        shared = logp_and_grads(tiny, batch, shared_prompt=True)
    finally:
        tiny.model.eval()
    mask = batch.response_mask.bool()  # positions past a row's end are not used by the loss
    masked = [(lp.masked_fill(~mask, 0), ent.masked_fill(~mask, 0), g) for lp, ent, g in (plain, shared)]
    assert_same(*masked)


def test_shared_prompt_is_as_close_to_float64_as_the_plain_forward(tiny):
    batch = three_group_batch(tiny)
    args = (batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    mask = batch.response_mask.bool()
    with torch.no_grad():
        plain, _ = response_logp(tiny, *args, shared_prompt=False)
        shared, _ = response_logp(tiny, *args, shared_prompt=True)
        wide = load_policy("tiny")
        wide.model.double()
        exact, _ = response_logp(wide, *args, shared_prompt=False)
    err_plain = float((plain.double() - exact)[mask].abs().max())
    err_shared = float((shared.double() - exact)[mask].abs().max())
    ulp = torch.finfo(torch.float32).eps * float(exact[mask].abs().max())
    assert err_shared <= max(2 * err_plain, 4 * ulp), (err_shared, err_plain, ulp)


def test_shared_prompt_runs_each_distinct_prompt_once_and_packs_the_responses(tiny):
    batch = three_group_batch(tiny, samples=4)
    (n, p), t = batch.prompt_ids.shape, batch.response_ids.shape[1]
    seen, hook = embedding_calls(tiny)
    try:
        with torch.no_grad():
            response_logp(
                tiny, batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask, shared_prompt=True
            )
            shared = list(seen)
            seen.clear()
            response_logp(tiny, batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    finally:
        hook.remove()
    # 3 prompts once, then the responses packed on their prompts' caches: fewer token positions than the
    # padded rows (each row's tokens up to the one before its last: the last one predicts nothing)
    (prompts, prompt_len), (rows, width) = shared
    assert (prompts, prompt_len) == (3, p)
    assert 3 <= rows <= n and rows * width < n * (t - 1)
    assert seen == [(n, p + t)]  # the plain forward: every row, prompt and response


def test_shared_prompt_falls_back_where_it_cannot_share(tiny):
    """Distinct prompts only (G = 1) or gradient checkpointing in training: the plain forward."""
    from rftlab.policy import shares_prompts

    one_each = generate(
        tiny, ["<|user|>1 + 1?\n<|assistant|>", "<|user|>2 + 3?\n<|assistant|>"], max_new_tokens=8, seed=1
    )
    assert not shares_prompts(tiny.model, one_each.prompt_ids, one_each.prompt_mask)
    batch = three_group_batch(tiny)
    assert shares_prompts(tiny.model, batch.prompt_ids, batch.prompt_mask)
    seen, hook = embedding_calls(tiny)
    try:
        with torch.no_grad():
            response_logp(tiny, *_args(one_each), shared_prompt=True)
    finally:
        hook.remove()
    assert seen == [(2, one_each.prompt_ids.shape[1] + one_each.response_ids.shape[1])]
    checkpointed = load_policy_for(load_config("tiny", ["model.gradient_checkpointing=true"]).model)
    checkpointed.model.train()
    assert not shares_prompts(checkpointed.model, batch.prompt_ids, batch.prompt_mask)
    checkpointed.model.eval()
    assert shares_prompts(checkpointed.model, batch.prompt_ids, batch.prompt_mask)  # no grad: a cache is fine


@pytest.mark.parametrize("chunk_tokens", [1, 7, 10_000])
def test_shared_prompt_with_chunked_logp_equals_the_plain_forward(tiny, chunk_tokens):
    """With train.logprob_chunk_tokens (the GPU recipes' setting) the shared, packed forward runs the
    head in chunks over the real positions only: the plain forward's values and gradients."""
    batch = three_group_batch(tiny)
    mask = batch.response_mask.bool()
    tiny.model.train()
    try:
        plain = logp_and_grads(tiny, batch, shared_prompt=False)
        seen, hook = embedding_calls(tiny)
        try:
            shared = logp_and_grads(tiny, batch, shared_prompt=True, chunk_tokens=chunk_tokens)
        finally:
            hook.remove()
    finally:
        tiny.model.eval()
    assert seen[-2][0] == 3 and seen[-1][0] <= len(batch)  # the 3 prompts once, then their packed rows
    masked = [(lp.masked_fill(~mask, 0), ent.masked_fill(~mask, 0), g) for lp, ent, g in (plain, shared)]
    assert_same(*masked)


def test_shared_prompt_with_rows_of_one_prompt_apart_and_after_their_end(tiny):
    """Rows of one prompt need not be adjacent (a micro-batch may hold any rows); positions after a
    row's end hold log p = 0 and entropy 0 (the loss masks them)."""
    batch = three_group_batch(tiny)
    perm = torch.tensor([4, 0, 8, 1, 5, 2, 7, 3, 6])
    args = [a[perm] for a in _args(batch)]
    with torch.no_grad():
        plain, plain_entropy = response_logp(tiny, *args, with_entropy=True)
        shared, shared_entropy = response_logp(tiny, *args, with_entropy=True, shared_prompt=True)
    mask = args[3].bool()
    assert (~mask).any()
    torch.testing.assert_close(shared[mask], plain[mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared_entropy[mask], plain_entropy[mask], atol=1e-5, rtol=1e-5)
    assert (shared[~mask] == 0).all() and (shared_entropy[~mask] == 0).all()


def test_shared_prompt_needs_sdpa_and_full_attention(tiny):
    """Its 4-D boolean mask is read as such by SDPA only; a sliding window would be replaced by it."""
    from rftlab.policy import shares_prompts

    batch = three_group_batch(tiny)
    config = tiny.model.config
    assert shares_prompts(tiny.model, batch.prompt_ids, batch.prompt_mask)
    saved = config._attn_implementation
    try:
        config._attn_implementation = "eager"
        assert not shares_prompts(tiny.model, batch.prompt_ids, batch.prompt_mask)
    finally:
        config._attn_implementation = saved
    config.sliding_window = 16
    try:
        assert not shares_prompts(tiny.model, batch.prompt_ids, batch.prompt_mask)
    finally:
        del config.sliding_window


def test_long_packings_split_into_rows_of_bounded_length(tiny, monkeypatch):
    """A prompt's responses fill packed rows of at most PACKED_ROW_TOKENS slots (or the longest response):
    more packed rows, each on its own copy of the prompt's cache, the same values and gradients."""
    import rftlab.policy

    batch = three_group_batch(tiny, samples=4)
    longest = int((batch.response_mask.sum(1) - 1).max())
    monkeypatch.setattr(rftlab.policy, "PACKED_ROW_TOKENS", 1)  # below every response: one per row at most
    tiny.model.train()
    try:
        plain = logp_and_grads(tiny, batch, shared_prompt=False)
        seen, hook = embedding_calls(tiny)
        try:
            shared = logp_and_grads(tiny, batch, shared_prompt=True)
        finally:
            hook.remove()
    finally:
        tiny.model.eval()
    (_, p), (rows, width) = seen
    assert p == batch.prompt_ids.shape[1] and 3 < rows <= 12 and width == longest
    mask = batch.response_mask.bool()
    masked = [(lp.masked_fill(~mask, 0), ent.masked_fill(~mask, 0), g) for lp, ent, g in (plain, shared)]
    assert_same(*masked)


def test_the_packing_layout_is_the_cheaper_one():
    """Unequal lengths: long rows remove padding; near-equal lengths: rows as long as the longest."""
    from rftlab.policy import _pack_responses

    prompt = torch.tensor([[1, 5, 6, 7]] * 4)
    prompt_mask = torch.ones_like(prompt)
    response = torch.full((4, 40), 9)

    def packed_shape(lengths, key_cost):
        mask = (torch.arange(40)[None] < torch.tensor(lengths)[:, None]).long()
        return tuple(_pack_responses(prompt, prompt_mask, response, mask, key_cost).packed_ids.shape)

    assert packed_shape([40, 5, 6, 7], key_cost=1e-3) == (1, 39 + 4 + 5 + 6)  # one row: no padding
    assert packed_shape([40, 40, 39, 40], key_cost=1e-3) == (4, 39)  # as the per-row forward
    assert packed_shape([40, 40, 39, 40], key_cost=0.0) == (1, 39 + 39 + 38 + 39)  # attention free: one row


def test_shared_prompt_with_a_one_token_response(tiny):
    batch = three_group_batch(tiny, max_new_tokens=1)
    assert batch.response_ids.shape[1] == 1
    with torch.no_grad():
        plain, _ = response_logp(tiny, *_args(batch))
        shared, _ = response_logp(tiny, *_args(batch), shared_prompt=True)
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-5)


def test_shared_prompt_under_bfloat16_autocast_and_lora():
    """The GPU recipes' setting (bfloat16 compute, float32 master) and a LoRA adapter: the adapter's
    gradients through the shared prompt's cache equal the plain forward's to bfloat16 rounding."""
    cfg = load_config("tiny", ["model.dtype=bfloat16", "model.lora_rank=4"])
    policy = load_policy_for(cfg.model)
    batch = three_group_batch(policy)
    policy.model.train()
    plain = logp_and_grads(policy, batch, shared_prompt=False)
    shared = logp_and_grads(policy, batch, shared_prompt=True)
    mask = batch.response_mask.bool()
    assert plain[2] and all("lora" in name for name in plain[2])
    torch.testing.assert_close(shared[0][mask], plain[0][mask], atol=0.1, rtol=0.02)
    for name, grad in plain[2].items():
        rel = float((shared[2][name] - grad).norm() / (grad.norm() + 1e-12))
        assert rel < 0.05, (name, rel)


def _args(batch):
    return batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask

"""Generation engines behind one interface: prompts in, a `RolloutBatch` of responses out.

`generate(policy, prompts, samples_per_prompt=G, temperature, top_p, max_new_tokens, greedy, seed,
batch_size, engine, sort_by_length)` is the only thing the trainer and the evaluation call. Engines
(`rollout.engine`):

- `lean` (`rollout.lean`, the config's default): an own decoding loop on the model's forward in
  which finished rows leave the batch and the KV cache. Same distribution and the same random stream
  as `hf`; not promised to be bit-identical (other batch shapes round differently), though on the
  main job every rollout and evaluation came out the same. Measured in BENCHMARKS.md.
- `hf` (the reference, and this function's default): `transformers`' `model.generate`, top-k and
  every other logits processor off.

How a vLLM or SGLang engine would plug in (not written: neither runs on this CPU-only machine, and
code that cannot run here cannot be tested here):

1. Interface. A function with `generate`'s signature that returns the same `RolloutBatch`: left-padded
   prompt ids and mask from the policy's own tokenizer (the loss re-tokenizes nothing: it reads these
   ids), response ids right-padded with pad, the mask up to and including the first eos, `truncated`,
   texts decoded without special tokens, rows grouped by prompt (b*G .. b*G+G-1). Submit token ids
   (`prompt_token_ids`), not text, so the engine conditions on exactly the ids the loss uses.
2. Weights sync each round. The engine holds its own copy of the weights; after every optimizer step
   (once per round, or after the last of the mu updates) and before the next round's rollouts, push
   the policy's current weights in the engine's dtype: the full state dict for a full fine-tune, or the
   LoRA adapter (or the merged weights) when `model.lora_rank` > 0. The reference model is never
   pushed (the KL term is computed by the trainer). Evaluation rounds use the weights of the round they
   evaluate, so sync before evaluating too. In vLLM this is `llm.collective_rpc` / `load_weights` on
   the worker's model (colocated) or an NCCL broadcast to a separate engine; in SGLang
   `update_weights_from_tensor` / `update_weights_from_distributed`. Flush the prefix cache after a
   sync: cached KV of the old weights is stale.
3. Same sampling. `temperature` = `rollout.temperature`, `top_p` = `rollout.top_p`, top-k off
   (vLLM `top_k=-1`, SGLang `top_k=-1`), `min_p=0`, repetition / presence / frequency penalties off
   (1.0 / 0 / 0), no min_tokens, `max_tokens` = `rollout.max_new_tokens`, stop on the policy's eos ids
   (`policy.eos_token_ids`, keep the eos in the output: `include_stop_str_in_output` / skip no
   special tokens), `n` = G. Greedy evaluation: `temperature=0`. Seeds: one per request derived from
   (run seed, round, purpose, row), so a round stays a function of the run's seed (the stream differs
   from `hf`'s, like any engine change).
4. Same log-prob check. Ask the engine for the log-prob of each sampled token (vLLM `logprobs=0`,
   SGLang `return_logprob=True`) and check it against the loss's `policy.response_logp` at the rollout
   temperature on the same ids: within 1e-4 in float32 (as `tests/rollout/test_lean.py` and
   `test_hf.py` check for the engines here), and within the bfloat16 tolerance of the mixed-precision
   tests when the engine computes in bfloat16. vLLM reports log-probs of the raw logits unless asked
   for the processed distribution (engine argument `logprobs_mode="processed_logprobs"`); with raw
   log-probs the temperature is missing and the check fails, which is the point of running it. A run
   should log the mean absolute difference per round (the training-inference mismatch) and stop when
   it exceeds the tolerance.
"""

from rftlab.rollout.hf import ENGINES, RolloutBatch, generate

__all__ = ["ENGINES", "RolloutBatch", "generate"]

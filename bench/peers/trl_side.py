"""TRL's side of bench/peers/trl_vs_skd.py: GKDTrainer steps on the benchmark pair.

Runs in bench/peers/.venv (bash bench/peers/setup_venv.sh). Settings: on-policy
GKD (lmbda 1.0: every step generates with the student), beta 0.0 (forward KL
KL(teacher || student)), 128 new tokens (no stop: the EOS id is unset so every
completion has 128), GKDConfig's default temperature 0.9 (generation; its loss is at
temperature 1), float32 on CPU, gradient checkpointing off, AdamW lr 1e-5, grad-norm
clip 1.0. Data: pre-tokenised rows (64-token prompt + 128-token completion,
``completion_mask``) through a collator that builds ``prompts`` /
``prompt_attention_mask`` / ``labels`` as TRL's ChatML collator does; the tokenizer
is a word-level one built offline over the pair's 32,000 ids (special tokens
``<pad>`` ``<eos>`` ``<bos>`` at Gemma's ids 0 / 1 / 2; no special token is a
substring of another token).

Timing: generation is ``GKDTrainer.generate_on_policy_outputs`` (wrapped); the
step is from the Trainer's ``on_step_begin`` to ``on_step_end`` (after the optimizer
step); loss + backward + optimizer = step - generation. ``warmup`` steps are left
out of the medians.

    bench/peers/.venv/bin/python bench/peers/trl_side.py --pair-dir DIR --batch 8
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import benchutil  # noqa: E402  (bench/ helper; jax-free)

PROMPTS = "/work/shared/bench/bench_prompts.json"
SPECIALS = {0: "<pad>", 1: "<eos>", 2: "<bos>"}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--pair-dir", default=os.path.expanduser("~/.cache/skd-bench-pair"))
  p.add_argument("--tiny", action="store_true", help="tiny random HF models (tests)")
  p.add_argument("--prompts", default=PROMPTS)
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--new-tokens", type=int, default=128)
  p.add_argument("--temperature", type=float, default=0.9, help="GKDConfig.temperature")
  p.add_argument("--threads", type=int, default=0,
                 help="torch.set_num_threads (0 = torch's default, one per core)")
  p.add_argument("--json", default="")
  args = p.parse_args(argv)
  if args.batch < 1 or args.steps < 1 or args.warmup < 0:
    p.error("--batch and --steps must be >= 1, --warmup >= 0")
  return args


def word_tokenizer(vocab_size: int):
  """A PreTrainedTokenizerFast whose words are the ids: "w1000" <-> 1000."""
  from tokenizers import Tokenizer, models, pre_tokenizers  # pylint: disable=import-outside-toplevel
  from transformers import PreTrainedTokenizerFast  # pylint: disable=import-outside-toplevel
  vocab = {SPECIALS.get(i, f"w{i}"): i for i in range(vocab_size)}
  names = list(SPECIALS.values())
  assert not any(s in w for s in names for w in vocab if w != s), "special is a substring"
  tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
  tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                 bos_token="<bos>", unk_token="<pad>")


def tiny_pair(out_dir: str) -> str:
  """Random tiny Gemma teacher/student HF dirs under out_dir (for the test)."""
  import torch  # pylint: disable=import-outside-toplevel
  from transformers import GemmaConfig, GemmaForCausalLM  # pylint: disable=import-outside-toplevel
  for role, layers in (("student", 1), ("teacher", 2)):
    torch.manual_seed(layers)
    cfg = GemmaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                      head_dim=16, max_position_embeddings=512)
    GemmaForCausalLM(cfg).save_pretrained(os.path.join(out_dir, role))
  return out_dir


def rows(prompts, batch: int, steps: int, new_tokens: int, vocab: int):
  """Pre-tokenised rows: prompt + a reference completion, with completion_mask."""
  out = []
  for i in range(batch * steps):
    prompt = [int(t) % vocab for t in prompts[1 + i % (len(prompts) - 1)]]
    completion = (prompt * (new_tokens // len(prompt) + 1))[:new_tokens]
    out.append({"input_ids": prompt + completion,
                "completion_mask": [0] * len(prompt) + [1] * len(completion)})
  return out


class Collator:
  """Pre-tokenised rows -> what GKDTrainer reads (TRL ChatML collator's keys)."""

  def __init__(self, pad_id: int):
    self.pad_id = pad_id

  def __call__(self, examples):
    import torch  # pylint: disable=import-outside-toplevel
    ids = torch.tensor([e["input_ids"] for e in examples])  # Equal lengths: no padding.
    mask = torch.tensor([e["completion_mask"] for e in examples])
    plen = int((mask == 0).sum(1).max())
    labels = ids.clone()
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
            "prompts": ids[:, :plen], "prompt_attention_mask": torch.ones_like(ids[:, :plen])}


def main(argv=None) -> dict:
  args = parse_args(argv)
  import torch  # pylint: disable=import-outside-toplevel
  if args.threads:
    torch.set_num_threads(args.threads)
  import transformers  # pylint: disable=import-outside-toplevel
  import trl  # pylint: disable=import-outside-toplevel
  from datasets import Dataset  # pylint: disable=import-outside-toplevel
  from transformers import AutoModelForCausalLM, TrainerCallback  # pylint: disable=import-outside-toplevel
  try:
    from trl.experimental.gkd import GKDConfig, GKDTrainer  # pylint: disable=import-outside-toplevel
    where = "trl.experimental.gkd"
  except ImportError:  # Older TRL kept it at the top level.
    from trl import GKDConfig, GKDTrainer  # pylint: disable=import-outside-toplevel
    where = "trl"

  tmp = tempfile.mkdtemp(prefix="trl_gkd_")
  pair = tiny_pair(tmp) if args.tiny else args.pair_dir
  load = lambda role: AutoModelForCausalLM.from_pretrained(os.path.join(pair, role),
                                                           dtype=torch.float32)
  student, teacher = load("student"), load("teacher")
  vocab = student.config.vocab_size
  for m in (student, teacher):  # No stop token: every completion is new_tokens long.
    m.generation_config.eos_token_id = None
  tokenizer = word_tokenizer(vocab)
  with open(args.prompts) as f:
    prompts = json.load(f)
  total = args.warmup + args.steps
  data = Dataset.from_list(rows(prompts, args.batch, total, args.new_tokens, vocab))
  config = GKDConfig(
      output_dir=os.path.join(tmp, "out"), per_device_train_batch_size=args.batch,
      max_steps=total, lmbda=1.0, beta=0.0, max_new_tokens=args.new_tokens,
      temperature=args.temperature, gradient_checkpointing=False, learning_rate=1e-5,
      max_grad_norm=1.0, lr_scheduler_type="linear", warmup_steps=0, logging_steps=10**6,
      save_strategy="no", report_to=[], use_cpu=True, bf16=False, fp16=False,
      dataloader_num_workers=0, disable_tqdm=True, seed=0, max_length=None)

  gen_s, gen_shapes, step_s, completion_tokens = [], [], [], []

  class Clock(TrainerCallback):
    def on_step_begin(self, *a, **k):
      self.start = time.perf_counter()

    def on_step_end(self, *a, **k):
      step_s.append(time.perf_counter() - self.start)

  trainer = GKDTrainer(model=student, teacher_model=teacher, args=config,
                       train_dataset=data, processing_class=tokenizer,
                       data_collator=Collator(tokenizer.pad_token_id), callbacks=[Clock()])
  # The Trainer aligns the models' generation configs with the tokenizer's EOS; unset
  # it again so that no completion stops early (checked: completion_tokens below).
  for m in (trainer.model, trainer.teacher_model, student):
    m.generation_config.eos_token_id = None
  trainer.generation_config.eos_token_id = None
  generate = trainer.generate_on_policy_outputs

  def timed_generate(model, inputs, generation_config):
    out, seconds = benchutil.timed(generate, model, inputs, generation_config)
    gen_s.append(seconds)
    gen_shapes.append(list(out[0].shape))
    completion_tokens.append(int((out[2] != -100).sum()))
    return out

  trainer.generate_on_policy_outputs = timed_generate
  before = benchutil.loadavg()
  trainer.train()
  after = benchutil.loadavg()
  w = args.warmup
  upd = [s - g for s, g in zip(step_s[w:], gen_s[w:])]
  result = {
      "side": "trl", "trl": trl.__version__, "gkd_trainer": where,
      "torch": torch.__version__, "transformers": transformers.__version__,
      "torch_threads": torch.get_num_threads(),
      "results": [{
          "method": "gkd_on_policy", "batch": args.batch,
          "step_s": benchutil.median(step_s[w:]), "generation_s": benchutil.median(gen_s[w:]),
          "update_s": benchutil.median(upd),
          "step_per_sequence_s": benchutil.median(step_s[w:]) / args.batch,
          "warmup_s": step_s[:w], "all_step_s": step_s[w:], "all_generation_s": gen_s[w:],
          "generated_shape": gen_shapes[-1], "completion_tokens": completion_tokens[-1], "loadavg_before": before, "loadavg_after": after,
      }],
  }
  return benchutil.emit_result(result, args.json)


if __name__ == "__main__":
  main()

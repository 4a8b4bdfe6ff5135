"""The fields of the transformers configs that the HF encoders build, so that a misspelled key in an encoder's
``overrides`` is caught by validation, without importing transformers (which imports torch).

Generated from transformers 5.x (``__init__`` parameters and ``to_dict()`` keys of each config class, as
:func:`rae_encoders.weights.hf_config` checks at build time); a test compares them with the installed
transformers, so a new version that adds or renames a field fails that test instead of a user's run.
"""

from __future__ import annotations

COMMON = frozenset({
    "_name_or_path", "architectures", "chunk_size_feed_forward", "dtype", "hidden_act", "hidden_size", "id2label",
    "image_size", "is_encoder_decoder", "label2id", "layer_norm_eps", "model_type", "num_attention_heads",
    "num_channels", "num_hidden_layers", "output_attentions", "output_hidden_states", "patch_size", "problem_type",
    "return_dict", "transformers_version",
})
_DINOV2 = frozenset({
    "_out_features", "_out_indices", "apply_layernorm", "attention_probs_dropout_prob", "drop_path_rate",
    "hidden_dropout_prob", "initializer_range", "layerscale_value", "mlp_ratio", "out_features", "out_indices",
    "qkv_bias", "reshape_hidden_states", "stage_names", "use_swiglu_ffn",
})
FIELDS: dict[str, frozenset[str]] = {
    "Dinov2Config": COMMON | _DINOV2 | {"use_mask_token"},
    "Dinov2WithRegistersConfig": COMMON | _DINOV2 | {"num_register_tokens"},
    "ViTMAEConfig": COMMON | {
        "attention_probs_dropout_prob", "decoder_hidden_size", "decoder_intermediate_size",
        "decoder_num_attention_heads", "decoder_num_hidden_layers", "hidden_dropout_prob", "initializer_range",
        "intermediate_size", "mask_ratio", "norm_pix_loss", "qkv_bias",
    },
    "SiglipVisionConfig": COMMON | {"attention_dropout", "intermediate_size", "vision_use_head"},
}
"""transformers config class name -> the keys its ``overrides`` may set."""

"""ONNX export of a warm-started BERT-to-BERT (`EncoderDecoderModel`) with its decoder's key/value cache, which
Optimum's exporter refuses for a BERT decoder. The files and their input and output names are those Optimum
writes for T5 (`--task text2text-generation-with-past`, not merged), so one generation loop serves both:

- `encoder_model.onnx`: input_ids, attention_mask -> last_hidden_state;
- `decoder_model.onnx` (the first step): input_ids, encoder_attention_mask, encoder_hidden_states -> logits,
  present.<i>.decoder.{key,value} (self-attention), present.<i>.encoder.{key,value} (cross-attention);
- `decoder_with_past_model.onnx` (every later step, one token): input_ids, encoder_attention_mask,
  past_key_values.<i>.{decoder,encoder}.{key,value} -> logits, present.<i>.decoder.{key,value}.

The decoder step is written out from the model's own modules (embeddings, projections, layer norms, feed-forward,
LM head), so that the cache is a plain tensor concatenation the exporter traces; the attention arithmetic is
BERT's (scaled dot product, the encoder's padding masked, a causal mask over the decoder's own tokens)."""

from __future__ import annotations

import math
from pathlib import Path

OPSET = 17


def _heads(x, heads: int):
    """[batch, seq, hidden] -> [batch, heads, seq, head_dim]."""
    batch, seq, hidden = x.shape
    return x.view(batch, seq, heads, hidden // heads).transpose(1, 2)


def _attend(query, key, value, bias):
    """Scaled dot-product attention of [batch, heads, seq, head_dim] tensors, `bias` added to the scores;
    returns [batch, seq, hidden]."""
    import torch

    scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(query.shape[-1]) + bias
    context = torch.matmul(torch.softmax(scores, dim=-1), value)
    batch, heads, seq, head_dim = context.shape
    return context.transpose(1, 2).reshape(batch, seq, heads * head_dim)


def _decoder_module(model, with_past: bool):
    """A torch module computing one decoder call of `model` (an EncoderDecoderModel with a BERT decoder) with
    explicit cache tensors, for export. Its submodules reuse the model's own (the weights are the model's); their
    names (`layer.<i>.attention`, `.crossattention`) become the exported nodes' scopes, which
    `quantpipe.seq2seq.graph` reads to find the cross-attention."""
    import torch

    decoder = model.decoder  # BertLMHeadModel
    heads = decoder.config.num_attention_heads

    class Attention(torch.nn.Module):
        """BERT's attention block (projections, scaled dot product, output dense + residual layer norm)."""

        def __init__(self, block):
            super().__init__()
            self.query, self.key, self.value = block.self.query, block.self.key, block.self.value
            self.output = block.output

        def forward(self, hidden, bias, source=None, past=None, cached=None):
            """The block's output for `hidden`, with the keys and values it attended to: projected from `source`
            (self-attention: `hidden`, `past`'s prepended; cross-attention: the encoder's states), or `cached`
            as they are (cross-attention at a later step). The projections run inside this forward, so their
            nodes carry the block's scope (`crossattention`: what `exclude: cross_attention` finds)."""
            if cached is not None:
                key, value = cached
            else:
                key, value = _heads(self.key(source), heads), _heads(self.value(source), heads)
                if past is not None:
                    key, value = torch.cat([past[0], key], dim=2), torch.cat([past[1], value], dim=2)
            context = _attend(_heads(self.query(hidden), heads), key, value, bias)
            return self.output(context, hidden), key, value

    class Layer(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.attention = Attention(layer.attention)
            self.crossattention = Attention(layer.crossattention)
            self.intermediate, self.output = layer.intermediate, layer.output

    class CachedDecoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = decoder.bert.embeddings
            self.layer = torch.nn.ModuleList(Layer(layer) for layer in decoder.bert.encoder.layer)
            self.cls = decoder.cls

        def forward(self, input_ids, encoder_attention_mask, *rest):
            embeddings = self.embeddings
            if with_past:
                past, encoder_hidden_states = rest, None
                past_length = past[0].shape[2]
            else:
                encoder_hidden_states, past, past_length = rest[0], None, 0
            positions = torch.arange(input_ids.shape[1], device=input_ids.device) + past_length
            hidden = (
                embeddings.word_embeddings(input_ids)
                + embeddings.position_embeddings(positions)[None]
                + embeddings.token_type_embeddings(torch.zeros_like(input_ids))
            )
            hidden = embeddings.LayerNorm(hidden)
            minimum = torch.finfo(hidden.dtype).min
            cross_bias = (1.0 - encoder_attention_mask[:, None, None, :].to(hidden.dtype)) * minimum
            seq = input_ids.shape[1]
            if with_past:  # one new token sees every cached one: no mask
                self_bias = torch.zeros((), dtype=hidden.dtype)
            else:
                self_bias = torch.triu(torch.full((seq, seq), minimum, dtype=hidden.dtype), diagonal=1)
            presents = []
            for i, layer in enumerate(self.layer):
                self_past = (past[4 * i], past[4 * i + 1]) if with_past else None
                hidden, key, value = layer.attention(hidden, self_bias, source=hidden, past=self_past)
                cross_cached = (past[4 * i + 2], past[4 * i + 3]) if with_past else None
                hidden, cross_key, cross_value = layer.crossattention(
                    hidden, cross_bias, source=encoder_hidden_states, cached=cross_cached
                )
                hidden = layer.output(layer.intermediate(hidden), hidden)
                presents += [key, value] if with_past else [key, value, cross_key, cross_value]
            return (self.cls(hidden), *presents)

    return CachedDecoder().eval(), len(decoder.bert.encoder.layer)


def _cache_names(prefix: str, layers: int, cross: bool) -> list[str]:
    parts = ("decoder", "encoder") if cross else ("decoder",)
    return [f"{prefix}.{i}.{part}.{kv}" for i in range(layers) for part in parts for kv in ("key", "value")]


def export_bert2bert(model, encoder_path: Path, decoder_path: Path, with_past_path: Path) -> None:
    """Write the three ONNX files of the module docstring for `model` (an EncoderDecoderModel in eval mode whose
    decoder is a BERT with cross-attention)."""
    import torch

    batch, source = 2, 5
    input_ids = torch.ones((batch, source), dtype=torch.long)
    attention_mask = torch.ones((batch, source), dtype=torch.long)

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = model.encoder
            self.proj = getattr(model, "enc_to_dec_proj", None)

        def forward(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return self.proj(hidden) if self.proj is not None else hidden

    encoder = Encoder().eval()
    sequence = {0: "batch_size", 1: "encoder_sequence_length"}
    with torch.inference_mode():
        hidden = encoder(input_ids, attention_mask)
    _export(
        encoder,
        (input_ids, attention_mask),
        encoder_path,
        ["input_ids", "attention_mask"],
        ["last_hidden_state"],
        {"input_ids": sequence, "attention_mask": sequence, "last_hidden_state": sequence},
    )
    first, layers = _decoder_module(model, with_past=False)
    decoder_ids = torch.ones((batch, 1), dtype=torch.long)
    with torch.inference_mode():
        presents = first(decoder_ids, attention_mask, hidden)[1:]
    self_axes = {0: "batch_size", 2: "past_decoder_sequence_length"}
    cross_axes = {0: "batch_size", 2: "encoder_sequence_length_out"}
    present_names = _cache_names("present", layers, cross=True)
    axes = {
        "input_ids": {0: "batch_size", 1: "decoder_sequence_length"},
        "encoder_attention_mask": sequence,
        "encoder_hidden_states": sequence,
        "logits": {0: "batch_size", 1: "decoder_sequence_length"},
        **{name: self_axes if ".decoder." in name else cross_axes for name in present_names},
    }
    _export(
        first,
        (decoder_ids, attention_mask, hidden),
        decoder_path,
        ["input_ids", "encoder_attention_mask", "encoder_hidden_states"],
        ["logits", *present_names],
        axes,
    )
    later, _ = _decoder_module(model, with_past=True)
    past_names = _cache_names("past_key_values", layers, cross=True)
    new_presents = _cache_names("present", layers, cross=False)
    step_axes = {
        "input_ids": {0: "batch_size"},
        "encoder_attention_mask": sequence,
        "logits": {0: "batch_size"},
        **{name: self_axes if ".decoder." in name else cross_axes for name in past_names},
        **{name: {0: "batch_size", 2: "past_decoder_sequence_length + 1"} for name in new_presents},
    }
    _export(
        later,
        (decoder_ids, attention_mask, *presents),
        with_past_path,
        ["input_ids", "encoder_attention_mask", *past_names],
        ["logits", *new_presents],
        step_axes,
    )


def _export(module, args, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    import torch

    with torch.inference_mode():
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )

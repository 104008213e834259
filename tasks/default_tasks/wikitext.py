"""GPT language modelling on WikiText (next-byte prediction).

Architecture: a GPT "nano" (Radford et al., 2018/2019; sizes after minGPT's
``gpt-nano``: 3 layers, 3 heads, 48 dimensions) over the project's byte-level tokenizer
(vocabulary 257: 256 UTF-8 bytes + pad/end-of-text), 128 tokens of context —
DISCO's ``wikitext`` task, rebuilt from layers that TensorFlow.js 4.22 ships:
``Embedding``, ``LayerNormalization``, ``Dense``, ``Dot``, ``Rescaling``, ``Add``,
``Activation``, ``Concatenate``. TF.js's ``Dot`` handles 3-D tensors only, so each of
the three attention heads is its own branch, joined by ``Concatenate``.

How a client feeds the model (three named inputs, all of length ``SEQUENCE_LENGTH``)::

    ids      = tokenizer.encode(text)              # disco_client.tokenizers.ByteTokenizer, "bytes"
    window   = left_pad(ids, SEQUENCE_LENGTH + 1)  # last 129 ids, left-padded with 256
    tokens   = window[:-1]                         # "tokens": int32 (batch, 128)
    targets  = window[1:]                          # next-token targets: tokens shifted by one
    positions(128)                                 # "positions": int32 (batch, 128), 0..127
    causal_mask(128)                               # "causal_mask": float32 (batch, 128, 128),
                                                   #   0 on/below the diagonal, -1e9 above

Longer texts are cut into consecutive windows of 129 ids. The output is a softmax over
the 257 ids at each of the 128 positions, shape (batch, 128, 257); the loss is sparse
categorical cross-entropy against ``targets`` of shape (batch, 128, 1). In TF.js 4.22 the
targets must be a float32 tensor (its sparse cross-entropy calls ``floor`` on them, which
rejects int32) and must keep the trailing 1 (``fit`` refuses (batch, 128)); Keras accepts
either. ``positions`` and ``causal_mask`` are the same for every sample: the client builds
them once and repeats them over the batch. (Checked: TF.js 4.22 loads the converted model
and trains it with these inputs on its cpu backend.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from disco_client.keras_env import tf_keras
from disco_client.tokenizers import get_tokenizer
from tasks.choices import Aggregator, DataType, Scheme, Tokenizer
from tasks.spec import TaskSpec

SEQUENCE_LENGTH = 128
VOCAB_SIZE = get_tokenizer(Tokenizer.BYTES).vocab_size  # 257
N_LAYERS = 3
N_HEADS = 3
D_MODEL = 48
D_HEAD = D_MODEL // N_HEADS  # 16
D_MLP = 4 * D_MODEL  # 192
MASK_VALUE = -1e9


def positions(length: int = SEQUENCE_LENGTH) -> np.ndarray:
    """The ``positions`` input of one sample: int32 ``[0, 1, ..., length - 1]``."""
    return np.arange(length, dtype=np.int32)


def causal_mask(length: int = SEQUENCE_LENGTH) -> np.ndarray:
    """The ``causal_mask`` input of one sample: float32 (length, length), 0 on/below the diagonal, -1e9 above."""
    above = np.triu(np.ones((length, length), dtype=bool), k=1)
    return np.where(above, np.float32(MASK_VALUE), np.float32(0.0)).astype(np.float32)


class WikitextProvider:
    """Provider of the ``wikitext`` task."""

    def get_task(self) -> TaskSpec:
        return TaskSpec(
            id="wikitext",
            title="GPT Language Modeling",
            summary_preview="Train a small GPT language model together on English text, one byte at a time.",
            summary_overview=(
                "A language model learns to predict the next piece of text from what came before; "
                "the same principle, at a vastly larger scale, drives today's chat assistants. This "
                "task trains a tiny GPT on text such as WikiText, a collection of good and featured "
                "Wikipedia articles.\n\n"
                "Each participant trains on their own text files in the browser, and the server "
                "averages the participants' weights every two epochs. The model reads text as UTF-8 "
                "bytes, so it handles any language and needs no vocabulary download."
            ),
            model_description=(
                "A GPT 'nano' decoder-only transformer: byte embeddings (257 ids) plus learned position "
                "embeddings for 128 positions, 3 transformer blocks of 48 dimensions with 3 causal "
                "self-attention heads and a GELU MLP of 192 units each, a final layer normalisation and "
                "a softmax over the 257 ids at every position (about 116k parameters). Trained with Adam "
                "on next-byte sparse categorical cross-entropy."
            ),
            data_format=(
                "One or more plain-text files (UTF-8). The text is split into bytes, cut into windows "
                "of 128 bytes (the last window is left-padded), and the model learns to predict each "
                "next byte. Any text works; WikiText files can be used as they are."
            ),
            data_example_text=(
                " = Valkyria Chronicles III = \n Senjō no Valkyria 3 : Unrecorded Chronicles is a "
                "tactical role @-@ playing video game developed by Sega and Media.Vision ..."
            ),
            sample_dataset_link="https://huggingface.co/datasets/Salesforce/wikitext",
            sample_dataset_instructions=(
                "Download WikiText-2 (raw), e.g. the wikitext-2-raw-v1 configuration, and save its "
                "training text as a .txt file. To simulate several participants, split it into a few "
                "files and give each participant one. Small files (a few hundred kB) keep browser "
                "training short."
            ),
            data_type=DataType.TEXT,
            scheme=Scheme.FEDERATED,
            epochs=6,
            round_duration=2,
            batch_size=1,
            validation_split=0.1,
            min_participants=2,
            preprocessing=["tokenize", "pad"],
            tokenizer=Tokenizer.BYTES,
            max_sequence_length=SEQUENCE_LENGTH,
            aggregator=Aggregator.MEAN,
        )

    def get_model(self) -> Any:
        keras = tf_keras()
        layers = keras.layers
        tokens = keras.Input(shape=(SEQUENCE_LENGTH,), dtype="int32", name="tokens")
        pos = keras.Input(shape=(SEQUENCE_LENGTH,), dtype="int32", name="positions")
        mask = keras.Input(shape=(SEQUENCE_LENGTH, SEQUENCE_LENGTH), dtype="float32", name="causal_mask")

        tok_emb = layers.Embedding(VOCAB_SIZE, D_MODEL, name="token_embedding")(tokens)
        pos_emb = layers.Embedding(SEQUENCE_LENGTH, D_MODEL, name="position_embedding")(pos)
        x = layers.Add(name="embeddings")([tok_emb, pos_emb])

        for b in range(N_LAYERS):
            h = layers.LayerNormalization(epsilon=1e-5, name=f"block{b}_ln1")(x)
            heads = []
            for i in range(N_HEADS):
                prefix = f"block{b}_head{i}"
                q = layers.Dense(D_HEAD, name=f"{prefix}_query")(h)
                k = layers.Dense(D_HEAD, name=f"{prefix}_key")(h)
                v = layers.Dense(D_HEAD, name=f"{prefix}_value")(h)
                scores = layers.Dot(axes=(2, 2), name=f"{prefix}_scores")([q, k])
                scores = layers.Rescaling(1.0 / math.sqrt(D_HEAD), name=f"{prefix}_scale")(scores)
                scores = layers.Add(name=f"{prefix}_mask")([scores, mask])
                weights = layers.Activation("softmax", name=f"{prefix}_softmax")(scores)
                heads.append(layers.Dot(axes=(2, 1), name=f"{prefix}_attend")([weights, v]))
            attended = layers.Concatenate(axis=-1, name=f"block{b}_heads")(heads)
            attended = layers.Dense(D_MODEL, name=f"block{b}_attn_proj")(attended)
            x = layers.Add(name=f"block{b}_attn_residual")([x, attended])
            h = layers.LayerNormalization(epsilon=1e-5, name=f"block{b}_ln2")(x)
            h = layers.Dense(D_MLP, activation="gelu", name=f"block{b}_mlp_fc")(h)
            h = layers.Dense(D_MODEL, name=f"block{b}_mlp_proj")(h)
            x = layers.Add(name=f"block{b}_mlp_residual")([x, h])

        x = layers.LayerNormalization(epsilon=1e-5, name="final_ln")(x)
        out = layers.Dense(VOCAB_SIZE, activation="softmax", name="next_token")(x)
        model = keras.Model([tokens, pos, mask], out, name="gpt_nano")
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=1e-3),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model


provider = WikitextProvider()

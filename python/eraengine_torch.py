"""An eraengine checkpoint as a PyTorch module, for places that run Python but not eraengine
(Numerai's model uploads, a notebook).

Written from SPEC section 3 (the base EraTransformer) and docs/model.md (era context + FiLM,
GRN, VSN, induced attention); the checkpoint layout is SPEC section 4 (safetensors, PyTorch's
nn.Linear layout, ``__metadata__.config``). Only inference: dropout, the losses, the context noise
and pretraining are training-only and never run here.

    import eraengine_torch as et
    model = et.load("model.safetensors")          # or et.load(open(...,"rb").read())
    raw = model.predict_raw(era_df)                # output 0 of one era, as `predict --raw`
    ranked = model.predict(era_df)                 # per-era ranks in (0, 1), as `predict`
    all_eras = model.predict_eras(df, era_col="era")
    ens = et.Ensemble.from_dir("ens/")             # `train --seeds` members, as `predict --model ens/`

A DataFrame holds one era per call of ``predict``/``predict_raw`` (the model reads the era as one
set). Feature columns are picked by the checkpoint's feature names (other columns are ignored);
values are Numerai's integer codes 0..4 with NaN/None as missing. Row order matters only with
``pos_enc`` (the encoding follows the row order of the frame, as it follows the store's order).

Evaluation runs in the parameters' dtype: float32 (as eraengine) by default, ``model.double()``
for float64. Every config key value this file does not implement raises NotImplementedError
naming it; nothing falls back silently to other math.
"""

from __future__ import annotations

import io
import json
import math
import os
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["EraEngineModel", "Ensemble", "load", "preprocess", "rank_unit"]

# Config keys that only shape training (losses, dropout, noise): read, never used here.
TRAINING_ONLY_KEYS = {
    "dropout",
    "lambda_sparsity",
    "corr_weight",
    "context_noise",
    "ortho_weight",
}
# Every key this file understands; anything else raises NotImplementedError.
KNOWN_KEYS = TRAINING_ONLY_KEYS | {
    "n_features",
    "n_targets",
    "d_model",
    "heads",
    "layers",
    "d_ff",
    "gate_rank",
    "threshold",
    "top_k",
    "pos_enc",
    "attention",
    "eps_attention",
    "eps_layer_norm",
    "context_dim",
    "ffn",
    "selection",
    "inducing",
}
SUPPORTED = {
    "attention": ("linear", "softmax", "induced"),
    "ffn": ("gelu", "grn"),
    "selection": ("gate", "vsn"),
}
# Added to the context's standard deviation before dividing (docs/model.md).
CONTEXT_STD_FLOOR = np.float32(1e-3)
# Query rows per block of softmax attention (bounds the [H, block, n] score matrix).
QUERY_BLOCK = 1024


class Config:
    """The checkpoint's ``config`` JSON with the defaults older writers imply (docs/model.md)."""

    def __init__(self, raw: dict):
        unknown = sorted(set(raw) - KNOWN_KEYS)
        if unknown:
            raise NotImplementedError(
                f"checkpoint config key(s) {unknown} are not implemented by eraengine_torch"
            )
        need = ["n_features", "n_targets", "d_model", "heads", "layers", "d_ff", "gate_rank",
                "threshold", "pos_enc", "attention", "eps_attention", "eps_layer_norm"]
        missing = [k for k in need if k not in raw]
        if missing:
            raise ValueError(f"checkpoint config lacks key(s) {missing}")
        self.raw = raw
        self.n_features = int(raw["n_features"])
        self.n_targets = int(raw["n_targets"])
        self.d_model = int(raw["d_model"])
        self.heads = int(raw["heads"])
        self.layers = int(raw["layers"])
        self.d_ff = int(raw["d_ff"])
        self.gate_rank = int(raw["gate_rank"])
        # thresholds compare in f32, as eraengine parses them
        self.threshold = np.float32(raw["threshold"])
        self.top_k = None if raw.get("top_k") is None else int(raw["top_k"])
        self.pos_enc = bool(raw["pos_enc"])
        self.attention = raw["attention"]
        self.eps_attention = float(raw["eps_attention"])
        self.eps_layer_norm = float(raw["eps_layer_norm"])
        self.context_dim = int(raw.get("context_dim", 0))
        self.ffn = raw.get("ffn", "gelu")
        self.selection = raw.get("selection", "gate")
        self.inducing = int(raw.get("inducing", 32))
        for key, allowed in SUPPORTED.items():
            if getattr(self, key) not in allowed:
                raise NotImplementedError(
                    f"checkpoint config {key} = {getattr(self, key)!r} is not implemented by "
                    f"eraengine_torch (it implements {', '.join(allowed)})"
                )
        if self.d_model <= 0 or self.heads <= 0 or self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be a positive multiple of heads ({self.heads})")
        if self.top_k is not None and not 1 <= self.top_k <= self.n_features:
            raise ValueError(f"top_k {self.top_k} outside 1..{self.n_features}")
        if self.attention == "induced" and self.inducing < 1:
            raise ValueError("induced attention needs at least one inducing point")


# ---- building blocks ---------------------------------------------------------------------------


def phi(x: Tensor) -> Tensor:
    """elu(x) + 1 (SPEC section 3)."""
    return torch.where(x > 0, x + 1, torch.exp(torch.clamp(x, max=0)))


def gelu(x: Tensor) -> Tensor:
    """GELU, tanh form (SPEC section 3)."""
    return F.gelu(x, approximate="tanh")


def select_keep(values: Tensor, threshold: np.float32, top_k: Optional[int]) -> Tensor:
    """1.0 where a feature is kept: value >= threshold, or the top-k values (ties to the lower
    index). Decided on the f32 values, as eraengine decides it."""
    v32 = values.detach().to(torch.float32)
    if top_k is None:
        return (v32 >= torch.tensor(threshold, dtype=torch.float32)).to(values.dtype)
    order = torch.sort(v32, descending=True, stable=True).indices[:top_k]
    keep = torch.zeros_like(values)
    keep[order] = 1
    return keep


def softmax_mha(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """Multi-head softmax attention of every query over every key (all keys valid: one era, no
    padding): q [nq, d], k, v [nk, d] -> [nq, d]; head t owns columns [t dh, (t+1) dh)."""
    nq, d = q.shape
    nk = k.shape[0]
    dh = d // heads
    if nk == 0:
        return torch.zeros_like(q)
    kh = k.reshape(nk, heads, dh).transpose(0, 1)  # [H, nk, dh]
    vh = v.reshape(nk, heads, dh).transpose(0, 1)
    out = []
    scale = 1.0 / math.sqrt(dh)
    for s in range(0, nq, QUERY_BLOCK):
        qh = q[s:s + QUERY_BLOCK].reshape(-1, heads, dh).transpose(0, 1)  # [H, b, dh]
        p = torch.softmax(torch.matmul(qh, kh.transpose(1, 2)) * scale, dim=-1)
        out.append(torch.matmul(p, vh).transpose(0, 1).reshape(-1, d))
    return torch.cat(out, 0) if out else q.new_zeros((0, d))


def linear_mha(q: Tensor, k: Tensor, v: Tensor, heads: int, eps: float) -> Tensor:
    """Masked multi-head linear attention (SPEC section 3) with every row real."""
    n, d = q.shape
    dh = d // heads
    pq = phi(q).reshape(n, heads, dh)
    pk = phi(k).reshape(n, heads, dh)
    vh = v.reshape(n, heads, dh)
    s = torch.einsum("nha,nhb->hab", pk, vh)  # [H, dh, dh]
    z = pk.sum(0)  # [H, dh]
    num = torch.einsum("nha,hab->nhb", pq, s)
    den = torch.einsum("nha,ha->nh", pq, z) + eps
    return (num / den.unsqueeze(-1)).reshape(n, d)


def positional_encoding(n: int, d: int, dtype: torch.dtype) -> Tensor:
    """PE(i, 2j) = sin(i / 10000^(2j/d)), PE(i, 2j+1) = cos(...), in f64 then the model dtype."""
    i = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    c = torch.arange(d)
    inv = 1.0 / torch.pow(torch.tensor(10000.0, dtype=torch.float64), (c - c % 2).to(torch.float64) / d)
    ang = i * inv
    pe = torch.where(c % 2 == 0, torch.sin(ang), torch.cos(ang))
    return pe.to(torch.float32).to(dtype)


# ---- modules (their state_dict names are the checkpoint's tensor names) ------------------------


class Gate(nn.Module):
    """SPEC section 3 feature gate: tensors gate.w [F], gate.a, gate.b [F, r]."""

    def __init__(self, cfg: Config):
        super().__init__()
        f, r = cfg.n_features, cfg.gate_rank
        self.w = nn.Parameter(torch.zeros(f))
        self.rank = r
        if r > 0:
            self.a = nn.Parameter(torch.zeros(f, r))
            self.b = nn.Parameter(torch.zeros(f, r))
        self.threshold, self.top_k = cfg.threshold, cfg.top_k

    def forward(self, x: Tensor) -> Tensor:
        # eraengine sums in f64 and rounds g to f32; so does this
        x64 = x.to(torch.float64)
        xbar = x64.mean(0) if x.shape[0] > 0 else x64.new_zeros(x.shape[1])
        logits = self.w.to(torch.float64)
        if self.rank > 0:
            logits = logits + self.b.to(torch.float64) @ (self.a.to(torch.float64).T @ xbar)
        g = torch.sigmoid(logits).to(torch.float32)
        keep = select_keep(g, self.threshold, self.top_k)
        return x * (g * keep).to(x.dtype)


class Grn(nn.Module):
    """TFT gated residual network (docs/model.md): w1..w5 (w3 only with an era context); the
    LayerNorm is passed in (it is norm2 of a layer, or vsn.norm)."""

    def __init__(self, inp: int, hid: int, mid: int, ctx: int):
        super().__init__()
        self.w1 = nn.Linear(hid, mid)
        self.w2 = nn.Linear(inp, hid)
        self.w3 = nn.Linear(ctx, hid) if ctx > 0 else None
        self.w4 = nn.Linear(mid, inp)
        self.w5 = nn.Linear(mid, inp)

    def forward(self, a: Tensor, c: Optional[Tensor], norm: nn.LayerNorm) -> Tensor:
        h = self.w2(a)
        if self.w3 is not None:
            if c is None:
                raise ValueError("the GRN has a context weight but no era context was given")
            h = h + self.w3(c)
        e = self.w1(F.elu(h))
        gl = torch.sigmoid(self.w4(e)) * self.w5(e)
        return norm(a + gl)


class Vsn(Grn):
    """Variable selection network in place of the gate (docs/model.md): a GRN with in = F,
    hid = mid = d (tensors vsn.w1..w5) and its LayerNorm vsn.norm [F]."""

    def __init__(self, cfg: Config):
        f, d = cfg.n_features, cfg.d_model
        super().__init__(f, d, d, cfg.context_dim)
        self.norm = nn.LayerNorm(f, eps=cfg.eps_layer_norm)
        self.f = f
        # tau / F rounded to f32, as eraengine compares it
        self.threshold = np.float32(cfg.threshold) / np.float32(f)
        self.top_k = cfg.top_k

    def select(self, x: Tensor, c: Optional[Tensor]) -> Tensor:
        z = super().forward(x, c, self.norm)
        v = torch.softmax(z, dim=-1)
        if x.shape[0] > 0:
            m = v.to(torch.float64).mean(0).to(torch.float32)
        else:
            m = torch.zeros(self.f, dtype=torch.float32)
        keep = select_keep(m, self.threshold, self.top_k).to(x.dtype)
        return x * (self.f * v * keep)


class Attention(nn.Module):
    """attn.q/k/v/o, and for induced attention attn.inducing [M, d] and attn.iq/ik/iv."""

    def __init__(self, cfg: Config):
        super().__init__()
        d = cfg.d_model
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.kind, self.heads, self.eps = cfg.attention, cfg.heads, cfg.eps_attention
        if self.kind == "induced":
            self.inducing = nn.Parameter(torch.zeros(cfg.inducing, d))
            self.iq, self.ik, self.iv = (nn.Linear(d, d) for _ in range(3))

    def forward(self, h: Tensor) -> Tensor:
        q, k, v = self.q(h), self.k(h), self.v(h)
        if self.kind == "linear":
            a = linear_mha(q, k, v, self.heads, self.eps)
        elif self.kind == "softmax":
            a = softmax_mha(q, k, v, self.heads)
        elif self.kind == "induced":
            hm = softmax_mha(self.iq(self.inducing), k, v, self.heads)  # the M points over the rows
            a = softmax_mha(q, self.ik(hm), self.iv(hm), self.heads)  # the rows over the M results
        else:  # Config refuses other values
            raise NotImplementedError(f"attention {self.kind!r}")
        return self.o(a)


class Film(nn.Module):
    """layers.{l}.film.gamma / .beta: [d, C] maps of the era context."""

    def __init__(self, d: int, c: int):
        super().__init__()
        self.gamma = nn.Linear(c, d)
        self.beta = nn.Linear(c, d)

    def forward(self, u: Tensor, c: Tensor) -> Tensor:
        return u * (1 + self.gamma(c)) + self.beta(c)


class Layer(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        d = cfg.d_model
        self.attn = Attention(cfg)
        self.norm1 = nn.LayerNorm(d, eps=cfg.eps_layer_norm)
        if cfg.ffn == "gelu":
            self.ffn = nn.ModuleList([nn.Linear(d, cfg.d_ff), nn.Linear(cfg.d_ff, d)])
            self.grn = None
        else:
            self.ffn = None
            self.grn = Grn(d, cfg.d_ff, d, cfg.context_dim)
        self.norm2 = nn.LayerNorm(d, eps=cfg.eps_layer_norm)
        self.film = Film(d, cfg.context_dim) if cfg.context_dim > 0 else None

    def forward(self, h: Tensor, c: Optional[Tensor]) -> Tensor:
        h1 = self.norm1(h + self.attn(h))
        if self.ffn is not None:
            n2 = self.norm2(h1 + self.ffn[1](gelu(self.ffn[0](h1))))
        else:
            n2 = self.grn(h1, c, self.norm2)
        if self.film is not None:
            n2 = self.film(n2, c)
        return n2


class Context(nn.Module):
    """The era context (docs/model.md): buffers context.mean / context.std [2F] and the map
    context.proj [C, 2F]."""

    def __init__(self, cfg: Config):
        super().__init__()
        f = cfg.n_features
        self.register_buffer("mean", torch.zeros(2 * f))
        self.register_buffer("std", torch.zeros(2 * f))
        self.proj = nn.Linear(2 * f, cfg.context_dim)

    def forward(self, x: Tensor) -> Tensor:
        # era statistics in f64, rounded to f32, standardised in f32 (as eraengine does)
        x64 = x.to(torch.float64)
        if x.shape[0] > 0:
            mu = x64.mean(0)
            sd = torch.sqrt(((x64 - mu) ** 2).mean(0))
            s = torch.cat([mu, sd]).to(torch.float32)
        else:
            s = torch.zeros(2 * x.shape[1], dtype=torch.float32)
        mean = self.mean.to(torch.float32)
        std = self.std.to(torch.float32)
        st = (s - mean) / (std + torch.tensor(CONTEXT_STD_FLOOR))
        return self.proj(st.to(self.proj.weight.dtype))


class EraEngineModel(nn.Module):
    """The EraTransformer of an eraengine checkpoint. ``forward(x)`` maps one era's preprocessed
    features x [n, F] (SPEC section 3: (X - 2) / 2 after imputation, model feature order) to the
    outputs [n, T]; output 0 is the prediction."""

    def __init__(self, config: dict, features: Sequence[str], targets: Sequence[str]):
        super().__init__()
        cfg = Config(config)
        self.cfg = cfg
        self.features: List[str] = list(features)
        self.targets: List[str] = list(targets)
        if len(self.features) != cfg.n_features:
            raise ValueError(f"{len(self.features)} feature names for n_features {cfg.n_features}")
        if len(set(self.features)) != len(self.features):
            raise ValueError("the checkpoint lists a feature name twice")
        if len(self.targets) != cfg.n_targets:
            raise ValueError(f"{len(self.targets)} target names for n_targets {cfg.n_targets}")
        d = cfg.d_model
        if cfg.selection == "gate":
            self.gate = Gate(cfg)
            self.vsn = None
        else:
            self.gate = None
            self.vsn = Vsn(cfg)
        self.mapper = nn.ModuleList([nn.Linear(cfg.n_features, d), nn.Linear(d, d)])
        self.layers = nn.ModuleList([Layer(cfg) for _ in range(cfg.layers)])
        self.context = Context(cfg) if cfg.context_dim > 0 else None
        self.head = nn.ModuleList([nn.Linear(d, d), nn.Linear(d, cfg.n_targets)])
        self.eval()

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_safetensors(cls, source: Union[str, os.PathLike, bytes]) -> "EraEngineModel":
        """Builds the model from a checkpoint file path or its bytes."""
        data = source if isinstance(source, (bytes, bytearray)) else open(source, "rb").read()
        meta, tensors = _parse_safetensors(bytes(data))
        if meta.get("format") != "eraengine" or meta.get("format_version") != "1":
            raise ValueError(
                f"not an eraengine checkpoint of format_version 1 (format {meta.get('format')!r}, "
                f"format_version {meta.get('format_version')!r})"
            )
        pre = meta.get("pretrained")
        if any(k.startswith("pretrain.") for k in tensors):
            if pre != "masked-feature":
                raise ValueError("pretrain.* tensors without __metadata__.pretrained = 'masked-feature'")
            tensors = {k: v for k, v in tensors.items() if not k.startswith("pretrain.")}
        try:
            config = json.loads(meta["config"])
            features = json.loads(meta["features"])
            targets = json.loads(meta["targets"])
        except KeyError as e:
            raise ValueError(f"checkpoint __metadata__ lacks {e}") from None
        model = cls(config, features, targets)
        state = model.state_dict()
        missing = sorted(set(state) - set(tensors))
        extra = sorted(set(tensors) - set(state))
        if missing or extra:
            raise ValueError(f"checkpoint tensors do not fit its config: missing {missing}, unexpected {extra}")
        for name, t in tensors.items():
            if tuple(t.shape) != tuple(state[name].shape):
                raise ValueError(f"tensor {name} has shape {tuple(t.shape)}, the config needs {tuple(state[name].shape)}")
            if not torch.isfinite(t).all():
                raise ValueError(f"tensor {name} holds a non-finite value")
        model.load_state_dict(tensors, strict=True)
        return model

    # -- the model ------------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        dtype = self.mapper[0].weight.dtype
        x = x.to(dtype)
        c = self.context(x) if self.context is not None else None
        xt = self.gate(x) if self.gate is not None else self.vsn.select(x, c)
        h = self.mapper[1](self.mapper[0](xt))
        if self.cfg.pos_enc:
            h = h + positional_encoding(h.shape[0], h.shape[1], dtype)
        for layer in self.layers:
            h = layer(h, c)
        return self.head[1](gelu(self.head[0](h)))

    # -- pandas ---------------------------------------------------------------------------------

    def preprocess(self, era: pd.DataFrame, legacy_floats: bool = False) -> Tensor:
        """One era's model input x [n, F] (see :func:`preprocess`)."""
        return preprocess(era, self.features, legacy_floats).to(self.mapper[0].weight.dtype)

    @torch.no_grad()
    def outputs(self, era: pd.DataFrame, legacy_floats: bool = False) -> np.ndarray:
        """All T outputs of one era, [n, T] in the model dtype."""
        return self.forward(self.preprocess(era, legacy_floats)).cpu().numpy()

    def predict_raw(self, era: pd.DataFrame, legacy_floats: bool = False) -> pd.Series:
        """Output 0 of one era (what `eraengine predict --raw` writes), indexed like ``era``."""
        return pd.Series(self.outputs(era, legacy_floats)[:, 0], index=era.index, name="prediction")

    def predict(self, era: pd.DataFrame, legacy_floats: bool = False) -> pd.Series:
        """Output 0 of one era ranked into (0, 1) as `eraengine predict` writes it."""
        raw = self.predict_raw(era, legacy_floats)
        return pd.Series(rank_unit(raw.to_numpy(np.float64)), index=era.index, name="prediction")

    def predict_eras(self, df: pd.DataFrame, era_col: str = "era", raw: bool = False,
                     legacy_floats: bool = False) -> pd.Series:
        """``predict`` (or ``predict_raw``) of every era of ``df`` (grouped by ``era_col``, each
        era's rows in frame order), in the row order of ``df``."""
        if era_col not in df.columns:
            raise KeyError(f"no era column {era_col!r} in the frame")
        out = np.empty(len(df), dtype=np.float64)
        for _, pos in df.groupby(era_col, sort=False).indices.items():
            era = df.iloc[pos]
            p = self.predict_raw(era, legacy_floats) if raw else self.predict(era, legacy_floats)
            out[pos] = p.to_numpy(np.float64)
        return pd.Series(out, index=df.index, name="prediction")


class Ensemble(nn.Module):
    """Several checkpoints predicting as `eraengine predict --model A --model B ...` (or
    ``--model DIR``) does: ``predict`` ranks each member's output 0 per era into (0, 1), averages
    the ranks and ranks the average again; ``predict_raw`` is the mean of the raw outputs."""

    def __init__(self, members: Sequence[EraEngineModel]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @classmethod
    def from_dir(cls, path: Union[str, os.PathLike], dtype: torch.dtype = torch.float32) -> "Ensemble":
        """The members listed in DIR/ensemble.json (what `train --seeds` writes)."""
        manifest = os.path.join(path, "ensemble.json")
        with open(manifest) as f:
            m = json.load(f)
        if m.get("format") != "eraengine-ensemble":
            raise ValueError(f"{manifest}: format is not 'eraengine-ensemble'")
        files = [e["file"] for e in m.get("members", [])]
        if not files or any("/" in n or "\\" in n or n.startswith(".") for n in files):
            raise ValueError(f"{manifest}: members must be file names inside the directory")
        return cls([load(os.path.join(path, n), dtype) for n in files])

    @staticmethod
    def _combine(cols: List[np.ndarray]) -> np.ndarray:
        # each row's values summed in sorted order, as eraengine does (member order changes nothing)
        return np.sort(np.stack(cols), axis=0).sum(0) / len(cols)

    def predict_raw(self, era: pd.DataFrame, legacy_floats: bool = False) -> pd.Series:
        cols = [m.predict_raw(era, legacy_floats).to_numpy(np.float64) for m in self.members]
        return pd.Series(self._combine(cols), index=era.index, name="prediction")

    def predict(self, era: pd.DataFrame, legacy_floats: bool = False) -> pd.Series:
        cols = [m.predict(era, legacy_floats).to_numpy(np.float64) for m in self.members]
        return pd.Series(rank_unit(self._combine(cols)), index=era.index, name="prediction")

    predict_eras = EraEngineModel.predict_eras


def load(source: Union[str, os.PathLike, bytes], dtype: torch.dtype = torch.float32) -> EraEngineModel:
    """An eraengine checkpoint (path or bytes) as an :class:`EraEngineModel` in ``dtype``."""
    return EraEngineModel.from_safetensors(source).to(dtype)


def preprocess(era: pd.DataFrame, features: Sequence[str], legacy_floats: bool = False) -> Tensor:
    """SPEC section 3 preprocessing of one era: the ``features`` columns by name, a missing value
    (NaN/None) replaced by the feature's lower median over the era's present values (2 when none),
    then x = (X - 2) / 2. Values must be integer codes 0..4; with ``legacy_floats`` the values
    0, 0.25, ..., 1 of old data sets map to round(4v), as `eraengine import` maps float columns."""
    missing = [f for f in features if f not in era.columns]
    if missing:
        raise KeyError(
            f"the model needs {len(features)} features; {len(missing)} of them are not columns of "
            f"the frame: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"
        )
    try:
        # numeric columns (int8, nullable Int8, float with NaN) convert in one go
        X = era[list(features)].to_numpy(dtype=np.float64, na_value=np.nan).copy()
        columns = []
    except (TypeError, ValueError):
        X = np.empty((len(era), len(features)), dtype=np.float64)
        columns = list(enumerate(features))
    for j, f in columns:
        X[:, j] = pd.to_numeric(era[f], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad_text = era[f].notna().to_numpy() & np.isnan(X[:, j])
        if bad_text.any():
            r = int(np.flatnonzero(bad_text)[0])
            raise ValueError(f"column {f}, row {era.index[r]!r}: {era[f].iloc[r]!r} is not a number")
    if legacy_floats:
        s = 4 * X
        r = np.round(s)
        bad = ~np.isnan(X) & ((np.abs(s - r) > 1e-6) | (r < 0) | (r > 4))
        X = np.where(np.isnan(X), np.nan, r)
    else:
        bad = ~np.isnan(X) & ((X != np.round(X)) | (X < 0) | (X > 4))
    if bad.any():
        i, j = (int(v[0]) for v in np.nonzero(bad))
        hint = "" if legacy_floats else " (legacy 0..1 float features: pass legacy_floats=True)"
        raise ValueError(
            f"column {features[j]}, row {era.index[i]!r}: value {era[features[j]].iloc[i]!r} is not "
            f"an integer code 0..4{hint}"
        )
    nan = np.isnan(X)
    if nan.any():
        for j in np.flatnonzero(nan.any(0)):
            present = np.sort(X[~nan[:, j], j])
            med = present[(len(present) - 1) // 2] if len(present) else 2.0
            X[nan[:, j], j] = med
    return torch.from_numpy((X.astype(np.float32) - 2) / 2)


def rank_unit(values: np.ndarray) -> np.ndarray:
    """Tie-kept (average) rank mapped to (rank - 0.5) / count: strictly inside (0, 1)."""
    n = len(values)
    if n == 0:
        return np.empty(0)
    r = pd.Series(values).rank(method="average").to_numpy(np.float64)
    return (r - 0.5) / n


def _parse_safetensors(data: bytes):
    """(metadata, {name: f32 tensor}) of safetensors bytes; every offset checked. (A small reader
    of its own, so neither the safetensors package nor a file on disk is needed.)"""
    if len(data) < 8:
        raise ValueError("not a safetensors file: shorter than its 8-byte header length")
    hlen = int.from_bytes(data[:8], "little")
    if hlen > len(data) - 8:
        raise ValueError(f"safetensors header claims {hlen} bytes, the file has {len(data) - 8} after the length")
    header = json.loads(data[8:8 + hlen].decode("utf-8"))
    body = memoryview(data)[8 + hlen:]
    meta = header.pop("__metadata__", {}) or {}
    tensors: Dict[str, Tensor] = {}
    for name, spec in header.items():
        if spec.get("dtype") != "F32":
            raise ValueError(f"tensor {name}: dtype {spec.get('dtype')} (eraengine writes F32)")
        shape = [int(s) for s in spec["shape"]]
        a, b = (int(v) for v in spec["data_offsets"])
        count = int(np.prod(shape)) if shape else 1
        if not 0 <= a <= b <= len(body) or b - a != 4 * count:
            raise ValueError(f"tensor {name}: data offsets {a}..{b} do not fit shape {shape}")
        arr = np.frombuffer(body[a:b], dtype="<f4").reshape(shape).copy()
        tensors[name] = torch.from_numpy(arr)
    return meta, tensors

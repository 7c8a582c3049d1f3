"""The parts of eraengine_torch that check_twin.py does not compare (scripts/check_torch_twin.sh):
the checkpoint reader against the safetensors package, the errors a user can meet, and the
README's upload recipe (a cloudpickled predict function run where eraengine_torch is not
importable).

usage: python check_twin_errors.py CKPT LIVE_PARQUET      (CKPT: a recommended-preset checkpoint)"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import eraengine_torch as et  # noqa: E402

failures = []


def check(what, cond):
    print(f"{'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        failures.append(what)


def raises(what, exc, fn, *words):
    try:
        fn()
    except exc as e:
        msg = str(e)
        check(f"{what}: {exc.__name__} naming {', '.join(words)}", all(w in msg for w in words))
        return
    except Exception as e:  # noqa: BLE001
        check(f"{what}: expected {exc.__name__}, got {type(e).__name__}: {e}", False)
        return
    check(f"{what}: expected {exc.__name__}, nothing raised", False)


def with_config(data, **change):
    """The checkpoint bytes with __metadata__.config changed."""
    hlen = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + hlen])
    cfg = json.loads(header["__metadata__"]["config"])
    cfg.update(change)
    header["__metadata__"]["config"] = json.dumps(cfg)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return len(h).to_bytes(8, "little") + h + data[8 + hlen:]


ckpt, live_path = sys.argv[1], sys.argv[2]
data = open(ckpt, "rb").read()
model = et.load(data)
live = pd.read_parquet(live_path)
if "id" in live.columns:
    live = live.set_index("id")

# the reader against the safetensors package
from safetensors.torch import load_file  # noqa: E402

ref = load_file(ckpt)
state = model.state_dict()
check("every tensor as the safetensors package reads it",
      set(ref) == set(state) and all(torch.equal(ref[k], state[k]) for k in ref))
check("the recommended preset has the era context", model.context is not None)

# the era context matters: a test that passes with it zeroed would prove nothing
x = model.preprocess(live)
with torch.no_grad():
    base = model(x)[:, 0]
    saved = [(ly.film.gamma.weight.clone(), ly.film.beta.weight.clone()) for ly in model.layers]
    for ly in model.layers:
        ly.film.gamma.weight.zero_()
        ly.film.beta.weight.zero_()
    moved = float((model(x)[:, 0] - base).abs().max())
    for ly, (g, b) in zip(model.layers, saved):
        ly.film.gamma.weight.copy_(g)
        ly.film.beta.weight.copy_(b)
check(f"the trained FiLM changes the output by {moved:.2e} (>> the 1e-5 tolerance)", moved > 1e-4)

# errors
feats = model.features
raises("a missing feature column", KeyError, lambda: model.predict(live.drop(columns=[feats[1]])), feats[1])
bad = live.copy()
bad[feats[0]] = bad[feats[0]].astype("float64")
bad.iloc[3, bad.columns.get_loc(feats[0])] = 7.0
raises("a feature value outside 0..4", ValueError, lambda: model.predict(bad), feats[0], "0..4")
bad.iloc[3, bad.columns.get_loc(feats[0])] = 0.25
raises("a legacy float without legacy_floats", ValueError, lambda: model.predict(bad), "legacy_floats")
raises("attention 'flash'", NotImplementedError, lambda: et.load(with_config(data, attention="flash")),
       "attention", "flash")
raises("ffn 'swiglu'", NotImplementedError, lambda: et.load(with_config(data, ffn="swiglu")), "ffn", "swiglu")
raises("selection 'lasso'", NotImplementedError, lambda: et.load(with_config(data, selection="lasso")),
       "selection", "lasso")
raises("an unknown config key", NotImplementedError, lambda: et.load(with_config(data, moe_experts=4)),
       "moe_experts")
raises("a config that does not fit the tensors", ValueError, lambda: et.load(with_config(data, d_ff=7)),
       "layers.0.ffn.0", "the config needs")
raises("a truncated file", ValueError, lambda: et.load(data[:len(data) // 2]), "offsets")

# legacy floats map to round(4v) like `eraengine import`
legacy = live.copy()
for f in feats:
    legacy[f] = legacy[f].astype("float64") / 4
check("legacy_floats=True gives the same predictions as the integer codes",
      np.array_equal(model.predict_raw(legacy, legacy_floats=True).to_numpy(),
                     model.predict_raw(live).to_numpy()))

# ranks: one era, strictly inside (0, 1), the order of the raw output
ranked, raw = model.predict(live), model.predict_raw(live)
check("predict ranks into (0, 1) in the order of predict_raw",
      bool(((ranked > 0) & (ranked < 1)).all()) and np.corrcoef(ranked.rank(), raw.rank())[0, 1] > 0.9999)

# the README's upload recipe: cloudpickle by value, run where eraengine_torch cannot be imported
import cloudpickle  # noqa: E402

cloudpickle.register_pickle_by_value(et)
up = et.load(data)


def predict(live_features: pd.DataFrame) -> pd.DataFrame:
    return up.predict(live_features).to_frame("prediction")


with tempfile.TemporaryDirectory() as tmp:
    pkl, inp, out = (os.path.join(tmp, n) for n in ("predict.pkl", "live.parquet", "out.parquet"))
    with open(pkl, "wb") as f:
        f.write(cloudpickle.dumps(predict))
    live.to_parquet(inp)
    script = (
        "import sys, pickle, pandas as pd\n"
        "try:\n    import eraengine_torch\n    sys.exit('eraengine_torch importable: the test proves nothing')\n"
        "except ImportError:\n    pass\n"
        f"fn = pickle.load(open({pkl!r}, 'rb'))\n"
        f"fn(pd.read_parquet({inp!r})).to_parquet({out!r})\n"
    )
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp, capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    ok = r.returncode == 0 and os.path.exists(out)
    if ok:
        sub = pd.read_parquet(out)
        ok = list(sub.columns) == ["prediction"] and sub.index.equals(live.index) and \
            np.array_equal(sub["prediction"].to_numpy(), ranked.to_numpy())
    check("a cloudpickled predict(live_features) runs without eraengine_torch installed and matches", ok)
    if r.returncode != 0:
        print(r.stderr[-2000:])

sys.exit(1 if failures else 0)

"""Quantiles of relu² outputs h on validation batches at the end of a GPT-nano cpu run."""
import json, sys
import numpy as np, jax, jax.numpy as jnp
from driftlab.models.arch.base import get_arch
from driftlab.models.engine.train import TrainConfig, model_config
from driftlab.models.arch.params import unflatten_dict
run = sys.argv[1]
conf = json.load(open(f"{run}/config.json"))
t = conf["train"]; t["model_overrides"] = tuple(tuple(x) for x in t["model_overrides"])
cfg = TrainConfig(**{k: v for k, v in t.items() if k in TrainConfig.__dataclass_fields__})
arch = get_arch(cfg.arch)
mcfg = model_config(arch, cfg)
mcfg, ds = arch.data(cfg.data, mcfg, cfg.seed)
z = np.load(f"{run}/checkpoint.npz")
flat = {k[len("params/"):]: z[k] for k in z.files if k.startswith("params/")}
params = unflatten_dict(flat)
rec = {}
def tap(name, p, act):
    h = act(p); rec.setdefault(name, []).append(np.asarray(h)); return h
for i in range(8):
    b = ds.sample("val", i, cfg.batch_size, cfg.seed)
    arch.apply(params, b, mcfg, tap)
out = {}
for name, hs in rec.items():
    h = np.concatenate([x.ravel() for x in hs]); nz = np.abs(h[h != 0])
    out[name] = {"n": int(h.size), "frac_nonzero": float(nz.size / h.size),
                 **{f"q{q}": float(np.quantile(nz, q / 100)) for q in (50, 90, 99, 99.9, 99.99)},
                 "max": float(nz.max())}
print(json.dumps(out, indent=1))

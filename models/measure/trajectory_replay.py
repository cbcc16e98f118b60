"""The optimizer replayed at θ₀: frozen and linearized gradients, on a batch stream.

For the engine's optimizer ``tx`` (models/optim.py's ``make_optimizer``; SGD, heavy ball,
AdamW or Muon) and a stream of batches x_0, x_1, … of one seed, two replays run from θ₀:

* **frozen** — every gradient is taken at θ₀: g_r⁰ = ∇ℓ(θ₀; x_r), Δ⁰_{r+1} = Δ⁰_r + u_r with
  (u_r, state) = tx.update(g_r⁰, state). For SGD/heavy ball Δ⁰_t = −η Σ_r w_r(t) g_r⁰, the
  first-order term of theory/trajectory.py on this stream. For AdamW it is Adam's moment
  recursion over gradient draws at θ₀ (u₁ = −η g/(|g| + ε) elementwise: a sign, after bias
  correction), for Muon the orthogonalized momentum at θ₀.
* **linear** — gradients linearized at θ₀: g_r¹ = ∇ℓ(θ₀; x_r) + H(θ₀; x_r) Δ¹_r (one
  Hessian-vector product per step, jax.jvp of jax.grad with the smoothed ReLU kink), the same
  optimizer on this linear field (linearized / NTK-type dynamics). For SGD it holds every
  η^k H̄^{k−1}ḡ term of the expansion and misses the ∇³ℓ ones; its first correction over the
  frozen replay is the η² term.

Each quantity Q of models/measure/trajectory.py's ``Problem`` is read along the replay: a
downstream mean as mean(Δ_W)/s_W (Q is linear), a tap on the step's own batch x_t as
Q(θ₀; x_t) + ∇Q·Δ_t (frozen) or Q(θ₀; x_t) + ∇Q·Δ_t + ½ Δ_tᵀ∇²Q Δ_t (linear), by jax.jvp,
or exactly as Q(θ₀ + Δ_t; x_t) (``exact``: AdamW, Muon).

Streams: ``"train"`` is the seed's own training stream (ds.sample("train", t, B, s), the
batches the measured run sees), ``"replay"`` independent draws (sampler seed s +
:data:`REPLAY_SEED_OFFSET`). A replay on independent draws is a prediction: an unbiased
estimate of E Q(θ⁰_t) over the data at this seed's init. On the training stream it has the
same expectation, and it shares the measured run's batch noise, so (replay on training
stream − measured) is a control variate for the check (montecarlo/trajectory_check.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

REPLAY_SEED_OFFSET = 2_000_003  # sampler seed of the replay draws: apart from training and coefficients


def engine_init(arch, cfg, seed: int):
    """The engine's init for ``seed`` (models/engine/train.py: fold_in(PRNGKey(seed), 0),
    float32); the trajectory's training side uses it too."""
    p = arch.init(jax.random.fold_in(jax.random.PRNGKey(seed), 0), cfg)
    return jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x, p)


def batch_stream(ds, steps: int, batch_size: int, seed: int) -> dict:
    """Batches of steps 0 … steps − 1 of sampler seed ``seed``, stacked on a leading axis."""
    if ds.sample_steps is not None:
        return ds.sample_steps("train", 0, steps, batch_size, seed)
    b = [ds.sample("train", t, batch_size, seed) for t in range(steps)]
    return {k: np.stack([x[k] for x in b]) for k in b[0]}


def replay(spec, stream: str = "train", linear: bool = False, seeds=None,
           exact: bool = False, *, model, problem) -> dict:
    """Frozen (and, with ``linear``, linearized) replays of ``spec.optimizer`` at θ₀ of each
    seed, ``spec.steps`` steps at constant lr: {"frozen"/"linear": {Q: (seeds, steps + 1)}}
    in models/measure/trajectory.py's layout (means: change at t = 0 … steps; taps: value at
    t = 0 … steps − 1, then NaN), and "base": Q(θ₀; x_t) (0 for the means). ``exact``: read
    the taps as Q(θ₀ + Δ_t; x_t) instead of their Taylor polynomial in Δ_t (the replays of
    AdamW/Muon, whose displacement ‖Δ‖ ~ η t √P is too large for a second-order Q; the SGD
    control variate needs the linear reading, whose mean is the expansion's first order).
    ``model``: (arch, config) of the spec and ``problem``: the Problem class of
    models/measure/trajectory.py, passed in so that the two modules import one way."""
    import optax

    from driftlab.models.engine.optim import make_optimizer

    if stream not in ("train", "replay"):
        raise ValueError(f"stream={stream!r} invalid; allowed: train, replay")
    arch, cfg0 = model
    seeds = list(range(spec.seeds)) if seeds is None else list(seeds)
    stacks, params, cfg = [], [], None
    for s in seeds:
        cfg_s, ds = arch.data(spec.data, cfg0, s)
        cfg = cfg or cfg_s
        bs = s if stream == "train" else s + REPLAY_SEED_OFFSET
        stacks.append(batch_stream(ds, spec.steps, spec.batch_size, bs))
        params.append(engine_init(arch, cfg_s, s))
    prob = problem(arch, cfg, {k: v[0] for k, v in stacks[0].items()}, spec.kink_width)
    batches = {k: jnp.asarray(np.stack([st[k] for st in stacks], axis=1)) for k in stacks[0]}
    theta0 = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *params)
    tx = make_optimizer(spec.optimizer, optax.constant_schedule(spec.lr))
    n_mean = len(prob.downstream)
    zeros = lambda p: jax.tree_util.tree_map(jnp.zeros_like, p)

    def read(th0, delta, batch, second: bool):
        Q = lambda th_: prob.q_vector(th_, batch, True)
        if exact:
            q0 = Q(th0)
            return q0, Q(jax.tree_util.tree_map(jnp.add, th0, delta)) - q0
        if not second:
            q0, q1 = jax.jvp(Q, (th0,), (delta,))
            return q0, q1
        dQ = lambda th_: jax.jvp(Q, (th_,), (delta,))[1]
        q0, q1 = jax.jvp(Q, (th0,), (delta,))
        q2 = jax.jvp(dQ, (th0,), (delta,))[1]
        return q0, q1 + 0.5 * q2

    def one(th0, carry, batch):
        g = jax.grad(prob.loss)(th0, batch)
        out = {}
        new = {}
        for name in carry:
            opt, delta = carry[name]
            q0, q = read(th0, delta, batch, name == "linear")
            out[name] = jnp.concatenate([q[:n_mean], q0[n_mean:] + q[n_mean:]])
            out["base"] = jnp.concatenate([jnp.zeros_like(q0[:n_mean]), q0[n_mean:]])
            gg = g
            if name == "linear":
                hd = jax.jvp(lambda t_: jax.grad(lambda t2: prob.loss(t2, batch, True))(t_),
                             (th0,), (delta,))[1]
                gg = jax.tree_util.tree_map(jnp.add, g, hd)
            upd, opt = tx.update(gg, opt, jax.tree_util.tree_map(jnp.add, th0, delta))
            new[name] = (opt, jax.tree_util.tree_map(jnp.add, delta, upd))
        return new, out

    names = ("frozen", "linear") if linear else ("frozen",)

    def run_all(th0, b):
        carry = {n: (jax.vmap(tx.init)(th0), zeros(th0)) for n in names}
        vone = jax.vmap(one)

        def body(c, batch):
            return vone(th0, c, batch)

        carry, obs = jax.lax.scan(body, carry, b)
        last = {n: jax.vmap(prob.means)(carry[n][1]) for n in names}
        return obs, last

    obs, last = jax.jit(run_all)(theta0, batches)
    out = {}
    last["base"] = {k: jnp.zeros_like(v) for k, v in last["frozen"].items()}
    for n in (*names, "base"):
        v = np.asarray(obs[n], np.float64)  # (steps, seeds, n_quantities)
        res = {}
        for j, q in enumerate(prob.quantities):
            col = v[:, :, j].T
            if j < n_mean:
                path = q[5:]
                tail = np.asarray(last[n][path], np.float64)[:, None]
            else:
                tail = np.full((col.shape[0], 1), np.nan)
            res[q] = np.concatenate([col, tail], axis=1)
        out[n] = res
    return out


def replay_horizon(frozen: np.ndarray, linear: np.ndarray, base: np.ndarray, lr: float,
                   fraction: float, level: float) -> float:
    """The last step t such that at every step 1 … t the next order is at most κ/2 of the
    first, with confidence: |E(L − F)| + q·SE ≤ (κ/2)(|E(F − base)| − q·SE), q = Student
    t_{1−level} at S − 1 df, F the frozen and L the linear replay (S, T+1), ``base`` Q(θ₀; x_t).
    For SGD L − F ≈ η² W₂ b and F − base ≈ −η W₁ a, so this is theory/trajectory.py's
    η T(t) |b/a| ≤ κ measured on the replays. 0 when step 1 fails."""
    from scipy import stats as sps

    S = frozen.shape[0]
    q = float(sps.t.ppf(1 - level, S - 1))
    se = lambda x: x.std(0, ddof=1) / np.sqrt(S)
    corr, first = linear - frozen, frozen - base
    lhs = np.abs(corr.mean(0)) + q * se(corr)
    rhs = 0.5 * fraction * (np.abs(first.mean(0)) - q * se(first))
    ok = lhs <= rhs
    h = 0
    for t in range(1, frozen.shape[1]):
        if np.isnan(frozen[:, t]).any():
            break
        if not ok[t]:
            break
        h = t
    return float(h)


__all__ = ["replay", "replay_horizon", "REPLAY_SEED_OFFSET"]

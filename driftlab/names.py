"""The suite's valid names and the few constants declared with them: JAX-free, at the
bottom of the import graph (docs/architecture.md), so that ``driftlab --help`` lists them
without starting JAX and theory/ can name an engine constant without importing the engine.

Each is declared here only; the modules that use them (models/arch/base.py,
models/engine/optim.py, muon.py, pins.py, train_config.py) import them from here.
"""

SIZES = ("tiny", "small", "paper")  # model sizes every architecture defines
# Architecture name -> module exposing ARCH; imported lazily (models/arch/base.get_arch)
# so that a broken or heavy architecture does not slow down the others.
ARCH_MODULES = {
    "mlp": "driftlab.models.arch.mlp",
    "resnet": "driftlab.models.arch.resnet",
    "vit": "driftlab.models.arch.vit",
    "gpt": "driftlab.models.arch.gpt",
    "mpsenet": "driftlab.models.arch.mpsenet",
}
DTYPES = ("float32", "bfloat16")  # TrainConfig.dtype

OPTIMIZERS = ("sgd", "momentum", "adamw", "muon")
SCHEDULES = ("constant", "cosine", "linear", "wcd")
MOMENTUM = 0.9  # β of the engine's ``momentum`` optimizer (heavy ball, optax.sgd)

SCALINGS = ("jordan", "moonlight", "paper")  # Muon's update scale rules
MOMENTUM_FORMS = ("ema", "sum")  # Muon's momentum forms (sum: the paper's)
NS_DTYPES = ("float32", "bfloat16")  # Muon's Newton-Schulz dtype

DOWNSTREAM_MEAN = "downstream-mean"
READER_STREAM_MEAN = "reader-stream-mean"
SHAM = "sham"
SHAM_DIRECTION = "sham-direction"
PINS = (DOWNSTREAM_MEAN, READER_STREAM_MEAN, SHAM, SHAM_DIRECTION)  # TrainConfig.pins

"""TrainState: everything a training step reads and writes, as one pytree."""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from skd_jax.train import optim


def to_float32(tree: Any) -> Any:
  """A float32 copy of every floating leaf of a pytree (master weights).

  Always a copy, so that donating the state never invalidates the caller's
  arrays.
  """
  return jax.tree.map(
      lambda x: jnp.array(x, jnp.float32, copy=True)
      if jnp.issubdtype(x.dtype, jnp.floating) else jnp.array(x, copy=True),
      tree)


class TrainState(flax.struct.PyTreeNode):
  """Student training state.

  Attributes:
    step: int32 scalar, optimizer updates applied so far.
    params: student master parameters, float32 pytree.
    opt_state: optax state of ``tx`` (float32).
    rng: PRNG key of the run (split by the caller for sampling/dropout).
    tx: the optax transformation (static: part of the jit cache key).
    lr_schedule: update count -> learning rate, for logging (static).
  """
  step: jax.Array
  params: Any
  opt_state: optax.OptState
  rng: jax.Array
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  lr_schedule: optax.Schedule = flax.struct.field(pytree_node=False)

  @classmethod
  def create(cls, params: Any, rng: jax.Array,
             optimizer_config: Any = None) -> "TrainState":
    """A fresh state: float32 copy of ``params``, optimizer from the config."""
    params = to_float32(params)
    tx = optim.make_optimizer(optimizer_config)
    return cls(step=jnp.zeros((), jnp.int32), params=params,
               opt_state=tx.init(params), rng=rng, tx=tx,
               lr_schedule=optim.make_schedule(optimizer_config))

  @property
  def learning_rate(self) -> jax.Array:
    """The learning rate the next update will use."""
    return jnp.asarray(self.lr_schedule(self.step), jnp.float32)

  def apply_gradients(self, grads: Any) -> "TrainState":
    """One optimizer update with float32 ``grads`` shaped like ``params``."""
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(step=self.step + 1,
                        params=optax.apply_updates(self.params, updates),
                        opt_state=opt_state)

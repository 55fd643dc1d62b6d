"""The divergence registry: names map to entries, a registered entry works everywhere."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import skd_jax
from skd_jax import divergences, losses
from skd_jax.train import step as step_lib
from skd_jax.train import validate


@pytest.fixture
def registered():
  """Registers a one-hyperparameter divergence for one test, then removes it."""
  @divergences.register_divergence("test_power_tvd")
  @dataclasses.dataclass(frozen=True)
  class PowerTVD(divergences.Divergence):
    """``0.5 * sum_v |p_v - q_v| ** power``."""
    power: float = 1.0

    def __post_init__(self):
      if float(self.power) <= 0:
        raise ValueError(f"power={self.power} must be > 0.")

    def __call__(self, log_p, log_q):
      return 0.5 * jnp.sum(jnp.abs(jnp.exp(log_p) - jnp.exp(log_q)) ** self.power, -1)

  yield PowerTVD
  divergences._REGISTRY.pop("test_power_tvd")  # pylint: disable=protected-access


def _logits(seed, shape=(2, 5, 11)):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.normal(size=shape) * 2, jnp.float32)


def test_builtin_names_map_to_hashable_entries():
  assert list(losses.DIVERGENCES) == ["fkl", "rkl", "jsd", "tvd", "skl"]
  assert divergences.get_divergence("jsd", beta=0.3) == losses.JSD(0.3)
  assert divergences.get_divergence("skl", alpha=0.2, beta=0.9) == losses.SKL(0.2)
  assert divergences.get_divergence("fkl", beta=0.3) == losses.FKL()  # Other entries' fields.
  assert hash(losses.JSD(0.3)) == hash(losses.JSD(beta=0.3)) != hash(losses.JSD(0.4))
  assert losses.JSD(1) == losses.JSD(1.0)  # Values normalised: one jit cache entry.
  # An entry with hyperparameters given: its own fields are replaced.
  assert divergences.get_divergence(losses.JSD(0.3), beta=0.6) == losses.JSD(0.6)


def test_name_and_entry_give_bitwise_the_same_loss():
  t, s = _logits(0), _logits(1)
  mask = jnp.asarray(np.random.default_rng(2).random((2, 5)) > 0.3)
  for name, kw, entry in [("jsd", dict(beta=0.3), losses.JSD(0.3)),
                          ("skl", dict(alpha=0.4), losses.SKL(0.4)),
                          ("tvd", {}, losses.TVD()), ("rkl", {}, losses.RKL())]:
    by_name = skd_jax.divergence(name, t, s, mask, temperature=0.7, **kw)
    by_entry = skd_jax.divergence(entry, t, s, mask, temperature=0.7)
    assert np.asarray(by_name).tobytes() == np.asarray(by_entry).tobytes(), name


def test_loss_config_builds_the_entry_from_the_section():
  cfg = step_lib.loss_config(dict(divergence="jsd", beta=0.3, alpha=0.2, chunk_size=5))
  assert cfg.divergence == losses.JSD(0.3) and cfg.chunk_size == 5
  assert step_lib.LossConfig(divergence="skl").divergence == losses.SKL()
  assert step_lib.loss_config(cfg, beta=0.7).divergence == losses.JSD(0.7)
  assert hash(cfg) == hash(step_lib.loss_config(dict(divergence="jsd", beta=0.3,
                                                     chunk_size=5)))


@pytest.mark.parametrize("section,message", [
    (dict(divergence="kl"), "divergence='kl': unknown divergence"),
    (dict(beta=1.5), "beta=1.5 must be in [0, 1]"),  # Checked under "fkl" too.
    (dict(divergence="skl", alpha=1.0), "alpha=1.0 must be in [0, 1)"),
    (dict(divergence="fkl", betta=0.3), "betta: not a loss key"),
    (dict(reduction="mean"), "reduction='mean' must be"),
])
def test_bad_sections_name_the_key(section, message):
  with pytest.raises(ValueError, match=None) as info:
    step_lib.loss_config(section)
  assert str(info.value).startswith(message), str(info.value)
  # The driver's validation prefixes the config section.
  with pytest.raises(validate.ConfigError) as info:
    validate._check_loss(section)  # pylint: disable=protected-access
  assert str(info.value).startswith("loss." + message), str(info.value)


def test_a_registered_divergence_works_from_the_config(registered):
  # The config section names it and sets its hyperparameter as a loss key.
  cfg = step_lib.loss_config(dict(divergence="test_power_tvd", power=2.0, beta=0.5))
  assert cfg.divergence == registered(power=2.0)
  validate._check_loss(dict(divergence="test_power_tvd", power=2.0))  # pylint: disable=protected-access
  with pytest.raises(validate.ConfigError, match=r"^loss.power=-1.0 must be > 0"):
    validate._check_loss(dict(divergence="test_power_tvd", power=-1.0))  # pylint: disable=protected-access
  # Its value is its formula, reduced like the built-in ones.
  t, s = _logits(3), _logits(4)
  mask = jnp.ones((2, 5), bool)
  p, q = jax.nn.softmax(t), jax.nn.softmax(s)
  want = np.mean(0.5 * np.sum(np.abs(np.asarray(p - q)) ** 2, -1))
  got = skd_jax.divergence("test_power_tvd", t, s, mask, power=2.0)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_a_registered_divergence_runs_in_the_chunked_loss(registered):
  t_hidden, s_hidden = _logits(5, (2, 7, 4)), _logits(6, (2, 7, 3))
  t_w, s_w = _logits(7, (4, 11)), _logits(8, (3, 11))
  head = lambda w, h: h @ w
  mask = jnp.asarray(np.random.default_rng(9).random((2, 7)) > 0.2)
  entry = registered(power=1.5)

  def chunked(w):
    total, count = losses.chunked_divergence(
        entry, t_hidden, s_hidden, head, head, mask, teacher_params=t_w,
        student_params=w, chunk_size=3)
    return total / count

  def full(w):
    return losses.divergence(entry, t_hidden @ t_w, s_hidden @ w, mask)

  np.testing.assert_allclose(chunked(s_w), full(s_w), rtol=1e-6)
  np.testing.assert_allclose(jax.grad(chunked)(s_w), jax.grad(full)(s_w), rtol=1e-5,
                             atol=1e-7)


def test_registration_rules(registered):
  with pytest.raises(ValueError, match="already registered"):
    @divergences.register_divergence("fkl")
    @dataclasses.dataclass(frozen=True)
    class Other(divergences.Divergence):  # pylint: disable=unused-variable
      def __call__(self, log_p, log_q):
        return log_p[..., 0]
  with pytest.raises(TypeError, match="frozen dataclass"):
    @divergences.register_divergence("test_mutable")
    @dataclasses.dataclass
    class Mutable(divergences.Divergence):  # pylint: disable=unused-variable
      x: float = 1.0
  with pytest.raises(TypeError, match="must subclass"):
    divergences.register_divergence("test_plain")(type("Plain", (), {}))
  # The same class again (a config module imported twice) replaces itself.
  assert divergences.register_divergence("test_power_tvd")(registered) is registered
  assert "test_power_tvd" in losses.DIVERGENCES and "power" in divergences.hyperparameter_names()
  with pytest.raises(TypeError, match="unknown divergence hyperparameter"):
    skd_jax.divergence("fkl", _logits(0), _logits(1), jnp.ones((2, 5), bool), betta=0.1)

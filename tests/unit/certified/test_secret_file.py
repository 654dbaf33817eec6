"""The secret file of a certified model is private (issue 13, item 2).

- ``save(secret_path=)`` creates the file with mode 0600 (created so, never widened by the umask,
  never chmod-ed afterwards), also when it replaces an existing file.
- ``load(secret_path=)`` refuses a secret file that group or others can read, naming the file and
  the fix, unless the caller passes ``allow_insecure=True``.
"""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest

from obliviate.certified import CertifiedLogisticRegression
from obliviate.errors import InvalidConfigError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] + 0.3 * rng.normal(size=60) > 0).astype(int)
    return CertifiedLogisticRegression(epsilon=1.0, lam=1e-2, sigma=1.0).fit(x, y)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_secret_file_is_created_0600_whatever_the_umask(tmp_path, model, umask):
    old = os.umask(umask)
    try:
        model.save(tmp_path / "m.safetensors", secret_path=tmp_path / "secret.safetensors")
    finally:
        os.umask(old)
    assert mode(tmp_path / "secret.safetensors") == 0o600
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_replacing_a_world_readable_secret_file_makes_it_0600(tmp_path, model):
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(b"old")
    secret.chmod(0o644)
    model.save(tmp_path / "m.safetensors", secret_path=secret)
    assert mode(secret) == 0o600
    assert CertifiedLogisticRegression.load(tmp_path / "m.safetensors", secret_path=secret)._b is not None


@pytest.mark.parametrize("bits", [0o644, 0o640, 0o604])
def test_a_secret_file_others_can_read_is_refused_unless_overridden(tmp_path, model, bits):
    path = model.save(tmp_path / "m.safetensors", secret_path=tmp_path / "secret.safetensors")
    secret = tmp_path / "secret.safetensors"
    secret.chmod(bits)
    with pytest.raises(InvalidConfigError, match=r"(?s)secret\.safetensors.*chmod 600"):
        CertifiedLogisticRegression.load(path, secret_path=secret)
    q = CertifiedLogisticRegression.load(path, secret_path=secret, allow_insecure=True)
    np.testing.assert_array_equal(q._b, model._b)
    secret.chmod(0o600)
    np.testing.assert_array_equal(CertifiedLogisticRegression.load(path, secret_path=secret)._b, model._b)

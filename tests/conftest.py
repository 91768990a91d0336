"""For the whole session: temporary files of the code under test (MLflow's SQLite lock files,
``tempfile`` users, the subprocesses tests start) go under pytest's temporary directory, never
loose into the machine's /tmp."""

import tempfile

import pytest


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_under_pytest(tmp_path_factory):
    private = tmp_path_factory.mktemp("tmpdir")
    patch = pytest.MonkeyPatch()
    patch.setenv("TMPDIR", str(private))
    patch.setattr(tempfile, "tempdir", str(private))
    yield private
    patch.undo()

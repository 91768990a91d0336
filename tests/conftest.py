"""For the whole session: temporary files of the code under test (MLflow's SQLite lock files,
``tempfile`` users, the subprocesses tests start) go under pytest's temporary directory, never
loose into the machine's /tmp; so does Prefect's home (the results storage where failed flows
pickle their exceptions, its memo file), never the shell's PREFECT_HOME (the Makefile's
``<repo>/.prefect``)."""

import contextlib
import sys
import tempfile

import pytest

# Prefect settings that would put its files somewhere else than under PREFECT_HOME.
PREFECT_PATH_VARIABLES = ("PREFECT_LOCAL_STORAGE_PATH", "PREFECT_RESULTS_LOCAL_STORAGE_PATH",
                          "PREFECT_MEMO_STORE_PATH", "PREFECT_SERVER_MEMO_STORE_PATH")


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_under_pytest(tmp_path_factory):
    private = tmp_path_factory.mktemp("tmpdir")
    patch = pytest.MonkeyPatch()
    patch.setenv("TMPDIR", str(private))
    patch.setattr(tempfile, "tempdir", str(private))
    yield private
    patch.undo()


@pytest.fixture(scope="session", autouse=True)
def _prefect_home_under_pytest(tmp_path_factory):
    """PREFECT_HOME under pytest's temporary directory for every flow the tests run: in this process
    and in the commands they start (tests that need their own home still set one)."""
    home = tmp_path_factory.mktemp("prefect-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("PREFECT_HOME", str(home))
    for name in PREFECT_PATH_VARIABLES:
        patch.delenv(name, raising=False)
    with contextlib.ExitStack() as stack:
        if "prefect" in sys.modules:  # imported while collecting: its settings were read from the shell's environment
            from prefect.settings import PREFECT_HOME, temporary_settings

            stack.enter_context(temporary_settings({PREFECT_HOME: home}))  # storage and memo paths follow home
        yield home
    patch.undo()

"""Session fixtures: a tiny toy world with sample stores, a tiny random verifier/drafter pair, and one finished
run of the test config's whole pipeline, shared by the pytest-xdist workers (pyproject.toml: ``-n 2``).

The models are untrained (random weights): every mechanism under test (greedy
decoding, caches, hidden-state convention, storage) holds for any weights, and
building them takes a second instead of minutes.
"""

import os
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

# One compute thread (torch's OpenMP, numpy's OpenBLAS) by default in every process of the test run that reads these
# before it loads them: the xdist workers, started after this file is read, and every process the tests start. Two
# workers share 2 cores, so a second thread mostly waits on a core that the other worker holds (writing a test
# feature store of 3000 rows: 37 s on 2 OpenBLAS threads beside a busy core, 6.6 s on 1). Commands that say how
# many threads they use (the rules' --threads, the benchmark's plans) still use that many.
os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")

import pytest  # noqa: E402
import torch  # noqa: E402
from filelock import FileLock  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

import slurm_cluster  # noqa: E402
from eventspec import config as config_mod  # noqa: E402

slurm_cluster.use(slurm_cluster.NO_CLUSTER_CONF)  # every `python -m snakemake` without a 10 s wait for SLURM

TINY_MODELS = {
    "image_size": 32,
    "vision_hidden": 32,
    "vision_layers": 1,
    "llm": {"hidden": 64, "layers": 2, "heads": 2, "intermediate": 128, "max_positions": 512},
    "verifier": {"patch_size": 8},
    "drafter": {"patch_size": 16},
}


LONGEST_FIRST = ("test_slurm.py", "test_decoding.py", "test_pipeline.py", "test_gpu_check.py", "test_adapters.py",
                 "test_tree.py", "test_profiling.py", "test_extract.py", "test_drafter_states.py", "test_memory.py")
"""The slowest test files, in the order the two xdist workers start them (pyproject.toml: ``--dist loadscope``,
a whole file per worker), the others after them in their own order: the longest first, so that neither worker is
left with a long file at the end. The SLURM tests lead: they mostly wait on the plugin's polling, and make the
shared pipeline run meanwhile (tests/test_slurm.py's ``runs``) before the next files read it."""


LAST = "test_profiling.py"
"""Its projection check times a benchmark that must have the cores to itself (``Cores.alone``): last, the other
worker is then on its last short tests, or done."""


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)} | {LAST: len(LONGEST_FIRST) + 1}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))


class Cores:
    """The machine's cores between the xdist workers. Every test runs inside ``shared()`` (the whole test: setup,
    call, teardown); a measurement that must find the cores free of other work runs inside ``alone()``, which waits
    for the other workers' running tests to end and holds back their next ones. Only one test file uses it (two at
    once would wait on each other). Without xdist both do nothing."""

    def __init__(self, folder: Path | None, worker: str):
        self.folder, self.worker = folder, worker

    @contextmanager
    def shared(self):
        if self.folder is None:
            yield
            return
        busy, hold = self.folder / f"busy-{self.worker}", self.folder / "alone"
        busy.touch()  # before looking at `hold`, as alone() makes `hold` before looking at the busy files
        while hold.exists():
            busy.unlink()
            while hold.exists():
                time.sleep(0.2)
            busy.touch()
        try:
            yield
        finally:
            busy.unlink()

    @contextmanager
    def alone(self):
        if self.folder is None:
            yield
            return
        hold = self.folder / "alone"
        hold.touch()
        try:
            while [p for p in self.folder.glob("busy-*") if p.name != f"busy-{self.worker}"]:
                time.sleep(0.2)
            yield
        finally:
            hold.unlink()


CORES = pytest.StashKey[Cores]()


def pytest_configure(config):
    worker = getattr(config, "workerinput", {}).get("workerid")  # set in xdist's workers only
    folder = None
    if worker is not None:  # the workers' temp folders lie in this run's: there
        folder = Path(config.option.basetemp).parent / "cores"
        folder.mkdir(exist_ok=True)
    config.stash[CORES] = Cores(folder, worker or "master")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item):
    """Each test, its fixtures included (module ones too), starts on one torch thread: a test that needs more sets
    them, and none inherits the count a test before it left (float sums, hence digests, depend on it). The two xdist
    workers share 2 cores: a worker's second thread would wait on a core the other worker holds at every op, and the
    tiny models' ops are too small for two threads to pay anyway (a test-split extraction: 68 s on 2 threads beside
    one busy core, 2.2 s on 1)."""
    torch.set_num_threads(1)
    with item.config.stash[CORES].shared():
        yield


@pytest.fixture(scope="session")
def cores(pytestconfig) -> Cores:
    return pytestconfig.stash[CORES]


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """Config + sample stores of a 3-train/2-test-sequence toy world at 64x48."""
    from eventspec.digest import write_digest
    from eventspec.samples import prepare_samples
    from eventspec.toyworld.generate import generate_toy_world

    root = tmp_path_factory.mktemp("world")
    cfg = config_mod.validate(
        {
            "data": {"source": "toy", "root": str(root / "dsec")},
            "toy": {"seed": 3, "sequences": {"train": 3, "test": 2}, "duration_s": 2, "width": 64, "height": 48},
            "toy_models": TINY_MODELS,
        }
    )
    generate_toy_world(root / "dsec", cfg["toy"], workers=1)
    stores = {}
    for split in ("train", "test"):
        store = prepare_samples(cfg, split, root / f"{split}.zarr")
        write_digest(store, root / f"{split}.digest.json")
        stores[split] = (store, root / f"{split}.digest.json")
    return cfg, stores


@pytest.fixture(scope="session")
def tiny_models(tiny_world, tmp_path_factory):
    """Paths of a random tiny verifier and drafter saved like the toy_models rule saves them."""
    from eventspec.toy.trainer import ToySplit, corpus, tiny_drafter, tiny_verifier, toy_image_processor
    from eventspec.toy.tokenizer import build_word_tokenizer

    cfg, stores = tiny_world
    frames, events = (ToySplit.read(stores["train"][0], m) for m in ("frames", "event_images"))
    tokenizer = build_word_tokenizer(corpus(frames))
    out = tmp_path_factory.mktemp("models")
    # A seed whose random verifier varies its greedy tokens on the test windows (seed 0 repeats one token under the
    # current toy vocabulary): the EOS, tie and partial-acceptance tests need distinct tokens to place things on.
    torch.manual_seed(3)
    size = cfg["toy_models"]["image_size"]
    verifier = tiny_verifier(tokenizer, cfg["toy_models"], size, frames.images.shape[1])
    verifier.save_pretrained(out / "verifier")
    toy_image_processor(size).save_pretrained(out / "verifier")
    tiny_drafter(tokenizer, cfg["toy_models"], size, events.images.shape[1]).save_pretrained(out / "drafter")
    for name in ("verifier", "drafter"):
        tokenizer.save_pretrained(out / name)
    return {"verifier": out / "verifier", "drafter": out / "drafter"}


@pytest.fixture(scope="session")
def real_shaped_models(tiny_world, tmp_path_factory):
    """Tiny checkpoints shaped like Video-LLaVA-7B-hf and EventGPT-7B (see real_checkpoints.py), sized for the
    tiny world's windows: each model has its own tokenizer files, as in real life."""
    import zarr

    from real_checkpoints import write_eventgpt, write_video_llava

    samples = zarr.open_group(tiny_world[1]["test"][0], mode="r")
    out = tmp_path_factory.mktemp("real_shaped")
    verifier = write_video_llava(out / "Video-LLaVA-7B-hf", samples["frames"].shape[1])
    drafter = write_eventgpt(out, samples["event_images"].shape[1])
    return {"verifier": verifier, "drafter": drafter}


@pytest.fixture(scope="session")
def system_packages():
    """Debian's Chromium (the report's browser test), apt-got in a background thread when the machine lacks it (CI
    machines do), so that the download and unpacking overlap the CPU-bound pipeline run. The browser fixture joins
    the thread, then installs through browser.py as before: finds it, or installs and reports what failed.

    Not slurm-wlm: the SLURM tests install it when they start their cluster (tests/slurm_cluster.py)."""
    import browser

    def install():
        try:
            browser.install()
        except Exception:  # the browser fixture installs again and reports the error
            pass

    thread = threading.Thread(target=install, name="apt-get", daemon=True)
    thread.start()
    return thread


def once_per_run(tmp_path_factory, worker_id: str, name: str, make) -> Path:
    """A folder that ``make(folder)`` fills once per test run, shared by the pytest-xdist workers: the first worker
    to ask makes it, a worker asking meanwhile waits for it, and one asking after a failed try fails with its error
    (without xdist: a folder of this session's own)."""
    if worker_id == "master":
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent  # this run's temp folder, above each worker's own
    folder, done, failed = (shared / f"{name}{end}" for end in ("", ".done", ".failed"))
    with FileLock(shared / f"{name}.lock"):
        if failed.exists():
            pytest.fail(f"{name}: failed on another worker: {failed.read_text()}")
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                make(folder)
            except BaseException as error:
                failed.write_text(str(error)[-3000:])
                raise
            done.touch()
    return folder


@pytest.fixture(scope="session")
def pipeline_run(system_packages, tmp_path_factory, worker_id):
    """Workdir of the whole DAG run once on tests/config.test.yaml, for every test that reads a finished run (the
    pipeline's outputs, its report, what an edit reruns, the local reference of the SLURM run, the GPU check's
    pipeline step). Tests must not change it: a test that runs jobs in it works on a copy (tests/test_pipeline.py's
    ``finished_copy``)."""
    from pipeline_run import snakemake

    def run(workdir):
        res = snakemake(workdir)
        assert res.returncode == 0, res.stderr[-3000:]

    return once_per_run(tmp_path_factory, worker_id, "pipeline", run)

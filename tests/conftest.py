"""Session fixtures: a tiny toy world with sample stores, a tiny random verifier/drafter pair, and one finished
run of the test config's whole pipeline, shared by the pytest-xdist workers (pyproject.toml: ``-n 2``).

The models are untrained (random weights): every mechanism under test (greedy
decoding, caches, hidden-state convention, storage) holds for any weights, and
building them takes a second instead of minutes.
"""

import shutil
import sys
import threading
from pathlib import Path

import pytest
import torch
from filelock import FileLock

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


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))


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

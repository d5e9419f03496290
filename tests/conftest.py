"""Session fixtures: a tiny toy world with sample stores, a tiny random verifier/drafter pair, and one finished
run of the test config's whole pipeline.

The models are untrained (random weights): every mechanism under test (greedy
decoding, caches, hidden-state convention, storage) holds for any weights, and
building them takes a second instead of minutes.
"""

import sys
import threading
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(scope="session")
def pipeline_run(system_packages, tmp_path_factory):
    """Workdir of the whole DAG run once on tests/config.test.yaml, for every test that reads a finished run (the
    pipeline's outputs, its report, what an edit reruns, the local reference of the SLURM run). Tests must not
    change it: a test that runs jobs in it works on a copy (tests/test_pipeline.py's ``finished_copy``)."""
    from pipeline_run import snakemake

    workdir = tmp_path_factory.mktemp("pipeline")
    res = snakemake(workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    return workdir

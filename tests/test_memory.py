"""Memory at real scale: peak RSS of the digest, sample-check and LM-head readers at DSEC/7B sizes.

Each measurement runs in a fresh interpreter and reports the peak RSS the
operation added over the imports; the bound must hold and must not grow with
the number of rows in the store.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from eventspec import store
from eventspec.digest import write_digest

FRAMES = (8, 1080, 1440, 3)  # one DSEC clip: 8 RGB frames of 1440x1080 = 37 MB per window
EVENT_IMAGES = (5, 480, 640, 3)  # 5 event chunk renders at the 640x480 sensor size
MB = 1 << 20


def sample_store(path, n_rows):
    """A sample store of ``n_rows`` DSEC-size windows (structured, compressible pixel values)."""
    from eventspec.samples import write_rows

    layout = {
        "frames": store.ArraySpec(FRAMES, np.uint8),
        "event_images": store.ArraySpec(EVENT_IMAGES, np.uint8),
        "window": store.ArraySpec((), np.int32, 16),
    }
    rows = write_rows(layout)
    group = store.open_for_writing(path, layout, {"stage": "samples"}, rows, resume=False)
    frame = (np.arange(np.prod(FRAMES), dtype=np.uint32) % 251).astype(np.uint8).reshape(FRAMES)
    events = np.full(EVENT_IMAGES, 255, np.uint8)
    for start in range(0, n_rows, rows):
        k = min(rows, n_rows - start)
        store.append_rows(group, {"frames": np.stack([frame] * k), "event_images": np.stack([events] * k),
                                  "window": np.arange(start, start + k, dtype=np.int32)})
    return store.finish(path)


def peak_rss_added(module: str, code: str) -> float:
    """MB of peak RSS that ``code`` adds over the resident set after importing ``module`` (the one it calls: the
    digest's reader needs neither torch nor transformers, and a fresh interpreter is quicker without them).

    The kernel's peak (VmHWM) is reset after importing (``/proc/self/clear_refs``),
    so import-time peaks do not hide what the operation itself holds.
    """
    script = textwrap.dedent(
        """
        import re
        import {module}

        def status(field):
            return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))

        open("/proc/self/clear_refs", "w").write("5")
        before = status("VmRSS")
        {code}
        print((status("VmHWM") - before) / 1024)
        """
    ).format(module=module, code=textwrap.dedent(code).strip())
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


@pytest.fixture(scope="module")
def dsec_stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsec_size")
    return {n: sample_store(root / f"s{n}.zarr", n) for n in (16, 40)}


def test_sample_store_writes_are_bounded_in_bytes():
    from eventspec.samples import WRITE_BYTES, write_rows

    layout = {"frames": store.ArraySpec(FRAMES, np.uint8), "event_images": store.ArraySpec(EVENT_IMAGES, np.uint8)}
    rows = write_rows(layout)
    assert 1 <= rows < 16
    assert rows * (np.prod(FRAMES) + np.prod(EVENT_IMAGES)) <= WRITE_BYTES


def test_digest_peak_rss_is_bounded_and_flat_in_rows(dsec_stores, tmp_path):
    added = {
        n: peak_rss_added("eventspec.digest",
                          f"eventspec.digest.write_digest({str(path)!r}, {str(tmp_path / f'{n}.json')!r})")
        for n, path in dsec_stores.items()
    }
    print(f"digest peak RSS added (MB) by rows: {added}")
    window_mb = np.prod(FRAMES) / MB
    # One bound for both sizes: a few windows' worth (one read block plus decode buffers and allocator
    # slack), where reading 256 rows at a time held 256 windows (9.5 GB).
    for n, mb in added.items():
        assert mb < 6 * window_mb, f"{n} rows: {mb:.0f} MB"


def test_extraction_checks_only_the_rows_it_reads(dsec_stores, tmp_path):
    path = dsec_stores[40]
    write_digest(path, tmp_path / "d.json")
    added = peak_rss_added(
        "eventspec.extract",
        f"""
        import numpy as np
        eventspec.extract.check_sample_store({str(path)!r}, {str(tmp_path / 'd.json')!r}, np.array([5]))
        """
    )
    print(f"sample-store check of one window: peak RSS added {added:.0f} MB")
    assert added < 4 * np.prod(FRAMES) / MB


def test_lm_head_is_read_without_the_rest_of_the_checkpoint(tmp_path):
    """A 32000 x 4096 float16 head beside 1 GB of other weights: only the head is read."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "video_llava", "text_config": {}}))
    head = torch.zeros(32000, 4096, dtype=torch.float16)
    head[7, 3] = 1.5
    other = {f"language_model.model.layers.{i}.mlp.up_proj.weight": torch.ones(11008, 4096, dtype=torch.float16)
             for i in range(6)}
    save_file({"language_model.lm_head.weight": head, **other}, str(ckpt / "model.safetensors"))
    out = tmp_path / "head.safetensors"
    added = peak_rss_added(
        "eventspec.lm_head",
        f"eventspec.lm_head.extract_lm_head({{'path': {str(ckpt)!r}, 'dtype': 'float16'}}, {str(out)!r})",
    )
    from safetensors.torch import load_file

    weight = load_file(str(out))["weight"]
    assert weight.dtype == torch.float32 and weight.shape == (32000, 4096) and weight[7, 3] == 1.5
    head_mb = head.numel() * 2 / MB
    print(f"LM head extraction: peak RSS added {added:.0f} MB (head {head_mb:.0f} MB fp16, checkpoint ~800 MB)")
    assert added < 4 * head_mb, added

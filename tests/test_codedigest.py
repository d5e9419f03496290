import shutil
from pathlib import Path

from eventspec import codedigest


def test_stage_digest_covers_imported_modules():
    assert codedigest.modules_of("eventspec.samples") == [
        "eventspec", "eventspec.dsec", "eventspec.event_images", "eventspec.event_window", "eventspec.questions",
        "eventspec.samples", "eventspec.schemas",
        "eventspec.store", "eventspec.store_layout", "eventspec.toyworld.layout",
    ]


def test_comments_do_not_count_code_does(tmp_path, monkeypatch):
    package = tmp_path / "eventspec"
    shutil.copytree(Path(codedigest.__file__).parent, package)
    monkeypatch.setattr(codedigest, "PACKAGE_DIR", package)
    samples_before = codedigest.code_digest("samples")
    lm_head_before = codedigest.code_digest("lm_head")
    questions = package / "questions.py"
    questions.write_text(questions.read_text() + "\n# a comment\n\n\n")
    assert codedigest.code_digest("samples") == samples_before
    store = package / "store.py"
    store.write_text(store.read_text().replace('"""Zarr v3 stores', '"""Zarr (version 3) stores').replace(
        '    """Write ``rows`` after the committed ones', '    """Append ``rows`` after the committed ones'))
    assert codedigest.code_digest("samples") == samples_before  # module and function docstrings
    questions.write_text(questions.read_text().replace('"yes , there is a pedestrian ."', '"yes , a pedestrian ."'))
    assert codedigest.code_digest("samples") != samples_before
    assert codedigest.code_digest("lm_head") == lm_head_before  # Stage 0 does not run the question code

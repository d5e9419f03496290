"""Store layouts against their contracts in xsd/: stores from the real writers validate, drifted ones fail
naming the store and what drifted, and the schemas document every array the layout functions define."""

import jsonschema
import numpy as np
import pytest
import zarr

from adapter_fixtures import write_feature_store
from dsec_fixtures import make_sequence
from eventspec import config as config_mod
from eventspec import samples, store
from eventspec.extract import feature_layout, gather_features
from eventspec.features import FeatureStore
from eventspec.schemas import _schema
from eventspec.store_layout import validate_layout

T, DV, DD = 12, 24, 16


def documented(kind: str) -> tuple[set, set]:
    """(documented, required) array names of ``xsd/<kind>_store.schema.json``."""
    arrays = _schema(f"{kind}_store")["properties"]["arrays"]
    return set(arrays["properties"]), set(arrays["required"])


def test_schemas_are_json_schemas():
    for name in ("sample_store", "feature_store"):
        jsonschema.Draft202012Validator.check_schema(_schema(name))


def test_schemas_document_exactly_the_arrays_the_layouts_define():
    names, required = documented("feature")
    assert set(feature_layout(T, DV, DD, "float16", 8, 8)) == names == required
    names, required = documented("sample")
    assert set(samples.store_layout(64, 48, (48, 64, 3), 8, 5, 3, toy=True)) == names
    assert set(samples.store_layout(64, 48, (48, 64, 3), 8, 5, 3, toy=False)) == required


def test_feature_store_from_the_writer_validates(tmp_path):
    layout = validate_layout(write_feature_store(tmp_path / "f.zarr", rows=40, T=T, dd=DD, dv=DV), "feature")
    hidden, lengths = layout["arrays"]["verifier_hidden"], layout["arrays"]["verifier_len"]
    # read from the store's metadata: chunks inside shards, shard positions rounded up to whole chunks
    assert (hidden["shape"], hidden["chunks"], hidden["shards"]) == ([40, T, DV], [8, 8, DV], [32, 16, DV])
    assert [c["name"] for c in hidden["codecs"]] == ["bytes", "blosc"] and hidden["codecs"][1]["cname"] == "lz4"
    assert lengths["codecs"][1]["cname"] == "zstd" and layout["attributes"]["n_committed"] == 40


def test_dsec_sample_store_from_the_writer_validates(tmp_path):
    make_sequence(tmp_path, "a", duration_ms=1000)
    cfg = config_mod.validate({"data": {"source": "dsec", "root": str(tmp_path)},
                               "samples": {"window_ms": 500, "questions": "dsec", "max_questions": 3}})
    layout = validate_layout(samples.prepare_samples(cfg, "train", tmp_path / "s.zarr"), "sample")
    assert set(layout["arrays"]) == documented("sample")[1]  # no toy arrays
    assert layout["arrays"]["sequence"]["shards"] is None
    assert [c["name"] for c in layout["arrays"]["answers"]["codecs"]] == ["vlen-utf8", "blosc"]


def test_toy_sample_store_validates(tiny_world):
    _, stores = tiny_world
    for path, _ in stores.values():
        assert {"object_maps", "objects"} <= set(validate_layout(path, "sample")["arrays"])


def write_store(out, change=lambda layout: layout, logical_dtype="float16", rows=8):
    """A feature store written by the real store code through ``change(feature_layout(...))``, left unfinished
    (at ``<out>.partial``, which is returned)."""
    layout = change(feature_layout(T, DV, DD, logical_dtype, 4, 4))
    group = store.open_for_writing(out, layout, {"test": 0}, rows, resume=False)
    group.attrs["logical_dtype"] = logical_dtype
    store.append_rows(group, {name: np.zeros((rows, *spec.row_shape), spec.dtype) for name, spec in layout.items()})
    return store.partial_path(out)


def with_spec(name, **changes):
    def change(layout):
        spec = layout[name]
        fields = {f: getattr(spec, f) for f in ("row_shape", "dtype", "chunk_rows", "chunk_inner", "compressor")}
        return layout | {name: store.ArraySpec(**(fields | changes))}
    return change


@pytest.mark.parametrize("change, expected", [
    (with_spec("verifier_len", dtype=np.int64), "arrays/verifier_len/data_type: 'int32' was expected"),
    (lambda layout: {k: v for k, v in layout.items() if k != "drafter_len"}, "'drafter_len' is a required property"),
    (lambda layout: layout | {"extra": store.ArraySpec((), np.int32)}, "'extra' was unexpected"),
    (with_spec("drafter_hidden", compressor=store.COMPRESSOR),
     "arrays/drafter_hidden/codecs/1/cname: 'lz4' was expected"),
    (with_spec("drafter_hidden_tf", row_shape=(T, DD + 1), chunk_inner=(4, DD + 1)),
     "arrays/drafter_hidden_tf/shape: axis Dd has size 17, but 16 in arrays/drafter_hidden$"),
    (with_spec("verifier_tokens", row_shape=()), "arrays/verifier_tokens/shape: .* is too short"),
], ids=["dtype", "missing", "undocumented", "codec", "axis", "rank"])
def test_finish_refuses_a_drifted_feature_store(tmp_path, change, expected):
    out = tmp_path / "f.zarr"
    write_store(out, change)
    with pytest.raises(store.StoreError, match=expected) as err:
        store.finish(out, kind="feature")
    assert str(store.partial_path(out)) in str(err.value) and "feature_store.schema.json" in str(err.value)
    assert not out.exists()  # the declared output never appears


def test_bfloat16_is_stored_as_uint16_bits(tmp_path):
    write_store(tmp_path / "ok.zarr", logical_dtype="bfloat16")
    store.finish(tmp_path / "ok.zarr", kind="feature")
    bad = write_store(tmp_path / "bad.zarr", with_spec("verifier_hidden", dtype=np.float16), logical_dtype="bfloat16")
    with pytest.raises(store.StoreError, match="arrays/verifier_hidden/data_type: 'uint16' was expected"):
        validate_layout(bad, "feature")


def test_missing_n_committed_fails_writer_check_and_reader(tmp_path):
    path = write_feature_store(tmp_path / "f.zarr", rows=8, T=T, dd=DD, dv=DV)
    del zarr.open_group(path, mode="r+").attrs["n_committed"]
    for check in (lambda: validate_layout(path, "feature"), lambda: FeatureStore(path)):
        with pytest.raises(store.StoreError, match=f"{path}: .*attributes: 'n_committed' is a required property"):
            check()


def test_fewer_rows_than_committed_fail(tmp_path):
    path = write_feature_store(tmp_path / "f.zarr", rows=8, T=T, dd=DD, dv=DV)
    zarr.open_group(path, mode="r+").attrs["n_committed"] = 9
    with pytest.raises(store.StoreError, match="attributes/n_committed is 9, but arrays/.* has 8 rows"):
        validate_layout(path, "feature")


def test_gathered_store_keeps_the_layout(tmp_path):
    """Gathering copies each array's codec: hidden states stay lz4 (finish would refuse zstd)."""
    parts = [write_feature_store(tmp_path / f"{i}.zarr", rows=20, T=T, dd=DD, dv=DV, seed=i, shard_rows=8)
             for i in range(2)]
    layout = validate_layout(gather_features(parts, tmp_path / "all.zarr"), "feature")
    assert layout["attributes"]["n_committed"] == 40
    assert layout["arrays"]["verifier_hidden"]["codecs"][1]["cname"] == "lz4"


def test_sample_writer_refuses_a_layout_drift(tmp_path, monkeypatch):
    make_sequence(tmp_path, "a", duration_ms=1000)
    cfg = config_mod.validate({"data": {"source": "dsec", "root": str(tmp_path)}, "samples": {"window_ms": 500}})
    real = samples.store_layout
    monkeypatch.setattr(samples, "store_layout", lambda *a: with_spec("window", dtype=np.int64)(real(*a)))
    with pytest.raises(store.StoreError, match="arrays/window/data_type: 'int32' was expected"):
        samples.prepare_samples(cfg, "train", tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()


def test_unknown_kind():
    with pytest.raises(ValueError, match="store kind 'features'"):
        validate_layout("anything", "features")

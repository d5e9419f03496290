"""The whole DAG on the tiny test config, through Snakemake; then what reruns after each kind of edit.

Rerun checks are dry runs against the finished workdir, with the Snakefile and
package copied to a scratch source tree that the test edits (the checkout is
never touched). Snakemake re-runs a job when its params (config slice, code
digest) change, so the dry-run job set is exactly what an edit would rerun.
"""

import base64
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
import zarr
from PIL import Image

import browser
from pipeline_run import ROOT, TEST_CONFIG, snakemake


@pytest.fixture
def finished(pipeline_run):
    """The session's finished run of the test config (tests/conftest.py): read it, never change it."""
    return pipeline_run


@pytest.fixture
def source(tmp_path):
    """A scratch copy of the Snakefile, rules, package, schemas and conda env files, to edit."""
    src = tmp_path / "src"
    src.mkdir()
    for part in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / part, src / part)
    for part in ("workflow", "xsd", "envs"):
        shutil.copytree(ROOT / part, src / part, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    return src


def rerun_jobs(workdir, snakefile, configfile=TEST_CONFIG) -> dict[str, int]:
    """Rule -> job count of a dry run (empty when nothing would run)."""
    return job_stats(snakemake(workdir, "-n", snakefile=snakefile, configfile=configfile))


def job_stats(res) -> dict[str, int]:
    """Rule -> job count of a snakemake run or dry run (empty when there was nothing to do)."""
    assert res.returncode == 0, res.stderr[-3000:]
    text = res.stdout + res.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1].split("total", 1)[0]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M) if rule != "all"}


def measured(edit: str, jobs: dict[str, int]) -> dict[str, int]:
    """Print what an edit reruns (shown by pytest -s), for the record."""
    print(f"\n{edit}: {sum(jobs.values())} jobs {dict(sorted(jobs.items()))}")
    return jobs


@pytest.fixture
def finished_copy(finished, tmp_path):
    """A copy of the finished workdir (outputs, their mtimes, Snakemake's metadata) for tests that run jobs."""
    copy = tmp_path / "workdir"
    shutil.copytree(finished, copy, symlinks=True)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path}: {old!r} not found"
    path.write_text(text.replace(old, new, 1))


def test_pipeline_outputs_are_complete_and_valid(finished):
    out = finished / "results-test"
    for split in ("train", "test"):
        digest = json.loads((out / f"features/{split}.digest.json").read_text())
        jsonschema.validate(digest, json.loads((ROOT / "xsd/digest.schema.json").read_text()))
        g = zarr.open_group(out / f"features/{split}.zarr", mode="r")
        windows = zarr.open_group(out / f"samples/{split}.zarr", mode="r").attrs["n_committed"]
        assert digest["n_committed"] == g.attrs["n_committed"] == windows * 4
        assert not (out / f"features/{split}.zarr.partial").exists()
    report = json.loads((out / "models/toy_eval.json").read_text())
    jsonschema.validate(report, json.loads((ROOT / "xsd/toy_eval.schema.json").read_text()))
    assert report["language_prior"]["n_windows"] == report["verifier"]["test"]["n_windows"]
    assert set(report["language_prior"]["per_question"]) == set(report["verifier"]["test"]["per_question"])
    assert (out / "models/verifier_lm_head.safetensors").stat().st_size > 0


def test_a_second_run_does_nothing(finished):
    assert rerun_jobs(finished, ROOT / "Snakefile") == {}


def test_docstring_and_comment_edits_rerun_nothing(finished, source):
    package = source / "workflow/eventspec"
    edit(package / "models/drafter.py", '"""The drafter:', '# The drafter module.\n"""The drafter, reading events:')
    edit(package / "extract.py", '    """One batch of pairs', '    # one batch\n    """A batch of pairs')
    edit(package / "samples.py", '"""Write ``out`` (a sample store)', '"""Write the sample store ``out``')
    assert measured("docstring and comment edits", rerun_jobs(finished, source / "Snakefile")) == {}


DOWNSTREAM_OF_TRAINING = {
    "train_adapter": 2, "figure_training_curves": 2, "evaluate_adapter": 2, "evaluate_two_phase": 1,
    "figure_metrics_summary": 2, "figure_stage_timeline": 3, "figure_token_metrics": 2, "figure_adapter_comparison": 1,
    "report": 1, "benchmark": 1, "project": 1,
    "figure_benchmark_acceptance": 1, "figure_benchmark_breakdown": 1, "figure_benchmark_histogram": 1,
    "figure_benchmark_speedup": 1, "figure_benchmark_timeline": 1,
}
"""Every job that reads trained adapters in the test config (2 adapters, 1 two-phase pair, the benchmark)."""


def test_lm_head_code_edit_reruns_only_the_lm_head_and_what_reads_it(finished, source):
    edit(source / "workflow/eventspec/lm_head.py", "    vocab, hidden = weight.shape",
         "    weight = weight.clone()\n    vocab, hidden = weight.shape")
    jobs = measured("LM head code edit", rerun_jobs(finished, source / "Snakefile"))
    assert jobs == {"extract_lm_head": 1} | DOWNSTREAM_OF_TRAINING


def test_extraction_setting_reruns_everything_downstream_of_extraction(finished, tmp_path):
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["extract"]["max_new_tokens"] = 12
    configfile = tmp_path / "c.yaml"
    configfile.write_text(yaml.safe_dump(config))
    shards = config["extract"]["shards"]
    jobs = measured("extraction setting", rerun_jobs(finished, ROOT / "Snakefile", configfile))
    assert jobs == {"extract_features": 2 * shards, "gather_features": 2} | DOWNSTREAM_OF_TRAINING


def test_drafter_setting_does_not_rerun_the_verifier_lm_head(finished, tmp_path):
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["models"]["drafter"]["dtype"] = "bfloat16"
    configfile = tmp_path / "c.yaml"
    configfile.write_text(yaml.safe_dump(config))
    jobs = rerun_jobs(finished, ROOT / "Snakefile", configfile)
    assert "extract_lm_head" not in jobs and jobs["extract_features"] == 2 * config["extract"]["shards"]
    config["models"]["verifier"]["dtype"] = "bfloat16"
    configfile.write_text(yaml.safe_dump(config))
    assert rerun_jobs(finished, ROOT / "Snakefile", configfile)["extract_lm_head"] == 1


def test_feature_reader_does_not_depend_on_extraction_or_model_code():
    from eventspec.codedigest import modules_of

    reader = modules_of("eventspec.features")
    assert not [m for m in reader if m.startswith(("eventspec.models", "eventspec.extract"))], reader


def test_evaluation_outputs_are_valid(finished):
    out = finished / "results-test"
    for name in ("L1", "L5F"):
        metrics = json.loads((out / f"eval/{name}/acceptance_metrics.json").read_text())
        jsonschema.validate(metrics, json.loads((ROOT / "xsd/acceptance_metrics.schema.json").read_text()))
        for figure in ("metrics_summary", "stage_timeline", "token_metrics"):
            assert (out / f"figures/evaluation/{name}/{figure}.png").stat().st_size > 0
    pair = json.loads((out / "eval/L1__L5F/acceptance_metrics.json").read_text())
    jsonschema.validate(pair, json.loads((ROOT / "xsd/two_phase_metrics.schema.json").read_text()))
    report = (out / "report/METRICS_COMPARISON.md").read_text()
    assert "| L1 " in report and "| L5F " in report and "L1+L5F" in report
    assert (out / "figures/evaluation/adapter_comparison.png").stat().st_size > 0


def test_figure_restyle_reruns_only_that_figure(finished, source):
    edit(source / "workflow/eventspec/figures/stage_timeline.py", 'lw=0.5, label=stage)', 'lw=1.5, label=stage)')
    jobs = measured("figure restyle", rerun_jobs(finished, source / "Snakefile"))
    assert jobs == {"figure_stage_timeline": 3}  # L1, L5F, the L1+L5F pair


def test_report_code_edit_reruns_only_the_report(finished, source):
    edit(source / "workflow/eventspec/evaluation/report.py", 'floatfmt=".3f")]', 'floatfmt=".4f")]')
    assert measured("report code edit", rerun_jobs(finished, source / "Snakefile")) == {"report": 1}


DOWNSTREAM_OF_EVALUATION = {
    "evaluate_adapter": 2, "evaluate_two_phase": 1, "figure_metrics_summary": 2, "figure_stage_timeline": 3,
    "figure_token_metrics": 2, "figure_adapter_comparison": 1, "report": 1,
}
"""Every evaluation of the test config (2 adapters, 1 pair), its figures and the report; not training, not the
benchmark."""


def edit_a_metric(source: Path) -> None:
    edit(source / "workflow/eventspec/evaluation/metrics.py", "    return accept.int().cumprod(dim=1).sum(dim=1)",
         "    return accept.long().cumprod(dim=1).sum(dim=1)")


def test_metric_code_edit_reruns_evaluations_figures_and_report_not_training(finished, source):
    edit_a_metric(source)
    assert measured("metric code edit", rerun_jobs(finished, source / "Snakefile")) == DOWNSTREAM_OF_EVALUATION


def test_one_adapters_hyperparameter_reruns_only_that_adapter_and_what_reads_it(finished, tmp_path):
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["adapters"]["L1"]["hyperparams"]["bottleneck_dim"] = 8
    configfile = tmp_path / "c.yaml"
    configfile.write_text(yaml.safe_dump(config))
    jobs = measured("one adapter's hyperparameter (L1)", rerun_jobs(finished, ROOT / "Snakefile", configfile))
    # L1's own jobs; the L1+L5F pair's evaluation and timeline; the comparison figure and the report (all
    # metrics); the benchmark (its L1+VL configuration loads L1) and its figures. Nothing of L5F's own.
    assert jobs == {
        "train_adapter": 1, "figure_training_curves": 1, "evaluate_adapter": 1, "evaluate_two_phase": 1,
        "figure_metrics_summary": 1, "figure_stage_timeline": 2, "figure_token_metrics": 1,
        "figure_adapter_comparison": 1, "report": 1, "benchmark": 1, "project": 1, "figure_benchmark_acceptance": 1,
        "figure_benchmark_breakdown": 1, "figure_benchmark_histogram": 1, "figure_benchmark_speedup": 1,
        "figure_benchmark_timeline": 1,
    }


def test_deleted_stores_are_rebuilt_when_named_and_an_identical_rebuild_reruns_nothing_downstream(finished_copy):
    features = finished_copy / "results-test/features"
    digest = features / "train.digest.json"
    before = digest.read_bytes(), digest.stat().st_mtime_ns
    shutil.rmtree(features / "train.part0.zarr")  # a shard store: read only by gather_features
    shutil.rmtree(features / "train.zarr")  # the split's store: read by path by training (its digest is the input)
    # Snakemake rebuilds what a requested file needs: the digests are there and up to date, so nothing
    planned = rerun_jobs(finished_copy, ROOT / "Snakefile")
    assert measured("deleted train.part0.zarr and train.zarr, dry run", planned) == {}
    ran = job_stats(snakemake(finished_copy, "results-test/features/train.zarr"))
    assert measured("  rebuild of train.zarr", ran) == {"extract_features": 1, "gather_features": 1}
    assert digest.read_bytes() == before[0] and digest.stat().st_mtime_ns > before[1]  # rewritten, same bytes
    # the digest is newer than everything reading it, but its checksum is the one they were built from
    assert measured("  then a dry run", rerun_jobs(finished_copy, ROOT / "Snakefile")) == {}


def test_the_readme_rebuilds_only_the_stale_figures(finished_copy, source):
    """README "Rebuild only the stale figures": with a figure restyled and a metric edited (the evaluations
    stale), rebuild just the figures whose own code changed, from the metrics on disk."""
    edit(source / "workflow/eventspec/figures/stage_timeline.py", 'lw=0.5, label=stage)', 'lw=1.5, label=stage)')
    edit_a_metric(source)
    summary = snakemake(finished_copy, "--summary", snakefile=source / "Snakefile")
    assert summary.returncode == 0, summary.stderr[-3000:]
    # awk -F'\t' '$1 ~ /figures\// && $5 != "ok" {print $1}'
    rows = [line.split("\t") for line in summary.stdout.splitlines()]
    stale = [row[0] for row in rows if len(row) > 4 and "figures/" in row[0] and row[4] != "ok"]
    assert sorted(stale) == [f"results-test/figures/evaluation/{name}/stage_timeline.png"
                             for name in ("L1", "L1__L5F", "L5F")]
    ran = job_stats(snakemake(finished_copy, "--rerun-triggers", "mtime", "--force", *stale,
                              snakefile=source / "Snakefile"))
    # those figures only: the evaluations stay stale for the next full run
    assert measured("stale figures only (restyle + metric edit)", ran) == {"figure_stage_timeline": 3}


# The Snakemake report (snakemake --report): every figure and table, with its caption from workflow/report/.

REPORTED = {
    **{f"results-test/figures/adapters/{a}/training_curves.png": ("Training", "Other") for a in ("L1", "L5F")},
    **{f"results-test/figures/evaluation/{a}/{f}.png": ("Evaluation", a)
       for a in ("L1", "L5F") for f in ("metrics_summary", "stage_timeline", "token_metrics")},
    "results-test/figures/evaluation/L1__L5F/stage_timeline.png": ("Evaluation", "L1__L5F"),
    "results-test/figures/evaluation/adapter_comparison.png": ("Evaluation", "All adapters"),
    "results-test/report/METRICS_COMPARISON.md": ("Evaluation", "All adapters"),
    **{f"results-test/figures/benchmark_{f}.png": ("Benchmark", "Other")
       for f in ("speedup", "breakdown", "acceptance", "histogram", "timeline")},
    "results-test/bench/summary.md": ("Benchmark", "Other"),
    "results-test/report/PROJECTION.md": ("Benchmark", "Other"),
}
"""Report entry -> (category, subcategory) for the test config."""


@pytest.fixture(scope="module")
def report_html(pipeline_run, tmp_path_factory):
    finished = pipeline_run
    out = tmp_path_factory.mktemp("report") / "report.html"
    res = snakemake(finished, "--report", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def report_variable(page: str, name: str):
    """The JSON value the report's HTML assigns to the script variable ``name`` (``var results = {...}``)."""
    match = re.search(rf'var {name} = (?=[{{\["])', page)
    return json.JSONDecoder().raw_decode(page, match.end())[0]


def test_report_holds_every_figure_and_table_with_its_caption(finished, report_html):
    page = report_html.read_text()
    results, categories = report_variable(page, "results"), report_variable(page, "categories")
    assert set(results) == set(REPORTED)
    figures = {str(p.relative_to(finished)) for p in (finished / "results-test/figures").rglob("*.png")}
    assert figures <= set(results), "every figure the pipeline makes is in the report"
    placed = {path: (cat, sub) for cat, subs in categories.items() for sub, paths in subs.items() for path in paths}
    assert placed == REPORTED
    for path, entry in results.items():
        data = entry["data_uri"].split(";base64,", 1)[1]
        assert base64.b64decode(data) == (finished / path).read_bytes(), path
        assert entry["mime_type"] == ("image/png" if path.endswith(".png") else "text/markdown"), path
        assert len(entry["caption"]) > 100, path
    curves = results["results-test/figures/adapters/L5F/training_curves.png"]
    assert "<tt class=\"docutils literal\">L5F</tt>" in curves["caption"] and curves["labels"]["adapter"] == "L5F"
    # The tables are shown in their captions, as the Markdown files' text.
    for table in ("results-test/report/METRICS_COMPARISON.md", "results-test/bench/summary.md",
                  "results-test/report/PROJECTION.md"):
        rows = [line for line in (finished / table).read_text().splitlines() if line.startswith("| ")]
        caption = html.unescape(results[table]["caption"])
        assert rows and all(row in caption for row in rows), table
    description = report_variable(page, "workflow_desc")
    assert "cross-modal speculative decoding" in description and 'data source <tt class="docutils literal">toy' in description


SHOWN = "results-test/figures/evaluation/L1/metrics_summary.png"
BROWSER_CHECK = """
<script>
// Added by tests/test_pipeline.py: load every image of the report, then show each with its caption, as a click
// does (SHOWN_PATH last, so the page ends on it).
window.addEventListener("load", async () => {
  const shownPath = SHOWN_PATH;
  const sizes = {}, views = {};
  const squeeze = s => s.replace(/\\s+/g, " ").trim();
  const captionText = html => { const div = document.createElement("div"); div.innerHTML = html;
                                return squeeze(div.textContent); };
  // What the page shows as text: the body without its scripts (they hold every caption as data).
  const pageText = () => { const body = document.body.cloneNode(true);
                           body.querySelectorAll("script, style").forEach(node => node.remove());
                           return squeeze(body.textContent); };
  const placed = {};
  for (const [category, subs] of Object.entries(categories))
    for (const [subcategory, paths] of Object.entries(subs))
      for (const path of paths) placed[path] = {category, subcategory};
  // Loads (not img.decode()) hold Chromium's virtual time until they finish.
  const images = Object.entries(results).filter(([path, entry]) => entry.mime_type.startsWith("image/"));
  await Promise.all(images.map(([path, entry]) => new Promise(resolve => {
    const img = new Image();
    img.onload = () => { sizes[path] = [img.naturalWidth, img.naturalHeight]; resolve(); };
    img.onerror = () => { sizes[path] = "failed to load"; resolve(); };
    img.src = entry.data_uri;
  })));
  const order = images.map(([path]) => path).filter(path => path !== shownPath).concat([shownPath]);
  for (const path of order) {
    const entry = results[path];
    app.setView({navbarMode: "resultinfo", ...placed[path], content: "img", contentPath: entry.data_uri,
                 resultPath: path});
    await new Promise(resolve => setTimeout(resolve, 300));
    const shown = [...document.querySelectorAll("img")].filter(img => img.src === entry.data_uri);
    views[path] = {shown: shown.map(img => [img.naturalWidth, img.width]),
                   caption: pageText().includes(captionText(entry.caption))};
  }
  const out = document.createElement("pre");
  out.id = "eventspec-check";
  out.hidden = true;
  out.textContent = JSON.stringify({sizes, views});
  document.body.appendChild(out);
});
</script>
"""


@pytest.fixture(scope="module")
def browser_path(system_packages):
    """Headless Chromium: Debian's ``chromium``, installed when missing (tests/browser.py), so this runs in CI."""
    system_packages.join()
    return browser.install()


def chromium(browser_path, *args):
    cmd = [browser_path, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1600,1000",
           "--virtual-time-budget=20000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_report_renders_every_figure_in_chromium(finished, report_html, browser_path, tmp_path):
    """Headless Chromium opens the report, loads every image in it and shows each with its caption, as a click
    does, ending on one. With EVENTSPEC_REPORT_SCREENSHOT=<path> the test also saves a screenshot of that view."""
    page = tmp_path / "report.html"
    script = BROWSER_CHECK.replace("SHOWN_PATH", json.dumps(SHOWN))
    head, body_end, tail = report_html.read_text().rpartition("</body>")  # the last one: scripts hold others
    page.write_text(f"{head}{script}{body_end}{tail}")
    res = chromium(browser_path, "--dump-dom", page.as_uri())
    match = re.search(r'<pre id="eventspec-check" hidden="">(.*?)</pre>', res.stdout, re.S)
    assert match, f"the check did not run: {res.stderr[-2000:]}"
    check = json.loads(html.unescape(match.group(1)))
    figures = {p for p in REPORTED if p.endswith(".png")}
    assert set(check["sizes"]) == set(check["views"]) == figures
    for path, size in check["sizes"].items():
        with Image.open(finished / path) as png:
            assert size == list(png.size), path
        view = check["views"][path]
        assert len(view["shown"]) == 1 and view["shown"][0][0] == size[0] and view["shown"][0][1] > 400, (path, view)
        assert view["caption"], f"{path}: its caption is not on the page beside it"
    assert 'Held-out acceptance of <tt class="docutils literal">L1</tt>' in res.stdout, "the caption beside it"
    shot = tmp_path / "report.png"
    res = chromium(browser_path, f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), res.stderr[-2000:]
    with Image.open(shot) as png:
        assert png.size == (1600, 1000) and len(png.convert("RGB").getcolors(1 << 20) or []) > 256
    if os.environ.get("EVENTSPEC_REPORT_SCREENSHOT"):
        shutil.copy(shot, os.environ["EVENTSPEC_REPORT_SCREENSHOT"])

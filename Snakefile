# EventSpec: cross-modal speculative decoding, from an event-camera VLM (drafter)
# to a video VLM (verifier). Run `snakemake --cores N`, then `snakemake --report report.html`; see README.md.
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")
sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from eventspec.levels import scale_adapters


configfile: "config.yaml"


# Registry entries get their level's defaults (the toy's scale in the toy world, else the seeds'), under any
# --configfile: eventspec/levels.py.
scale_adapters(config)
validate(config, "xsd/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/benchmark.smk"
include: "workflow/rules/project.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        all_targets(),

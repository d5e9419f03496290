# Projection: the benchmark's own traces priced by cost profiles (the run's own, h200-bf16, seeds-4bit-2gpu),
# per profile x devices x frames, with the recommended configuration per setup. Reads only the benchmark's
# outputs: a new profile or projection code reruns this job alone.


rule project:
    input:
        summary=f"{bench_dir()}/summary.json",
        traces=[f"{bench_dir()}/{name}.jsonl" for name in config["benchmark"]["configs"]],
    output:
        projection=f"{RESULTS}/report/projection.json",
        table=report(
            f"{RESULTS}/report/PROJECTION.md",
            caption="../report/projection.rst",
            category="Benchmark",
            labels={"result": "projected speedups per setup"},
        ),
    log:
        f"{RESULTS}/logs/project.log",
    conda:
        software_env()
    params:
        code=code_digest("profiling.cli"),
        cfg=adapter_levels_json(),
    shell:
        "eventspec project {input.summary} --config-json {params.cfg:q} --toy --out {output.projection}"
        " --markdown {output.table} > {log} 2>&1"

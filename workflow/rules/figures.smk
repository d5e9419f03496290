for _figure in BENCH_FIGURES:

    rule:
        name:
            f"figure_{_figure}"
        input:
            f"{RESULTS}/bench/summary.json",
        output:
            report(
                figure_path(_figure),
                caption=f"../report/{_figure}.rst",
                category="Benchmark",
                labels={"result": _figure.removeprefix("benchmark_")},
            ),
        log:
            f"{RESULTS}/logs/figure_{_figure}.log",
        conda:
            software_env()
        params:
            name=_figure,
            code=code_digest(f"figures.{_figure}"),
        shell:
            "eventspec figure {params.name} --source {input} --out {output} 2> {log}"


rule figure_benchmark_frames:
    input:
        frames_summary(),
    output:
        report(
            figure_path("benchmark_frames"),
            caption="../report/benchmark_frames.rst",
            category="Benchmark",
            labels={"result": "frames sweep"},
        ),
    log:
        f"{RESULTS}/logs/figure_benchmark_frames.log",
    conda:
        software_env()
    params:
        code=code_digest("figures.benchmark_frames"),
    shell:
        "eventspec figure benchmark_frames --source {input} --out {output} 2> {log}"


rule figures:
    input:
        [figure_path(f) for f in BENCH_FIGURES] + ([figure_path("benchmark_frames")] if frames_sweep_configs() else []),

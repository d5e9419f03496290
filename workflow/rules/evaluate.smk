# Stage 3: every trained adapter is evaluated on the test store by its own job (and every configured
# two-phase pair by its own); each figure is its own job reading only metrics JSON; the report reads them all.
rule evaluate_adapter:
    input:
        adapter=lambda w: adapter_eval_inputs(w.name),
        test=feature_digest("test"),
        lm_head=lm_head_file(),
        bench=bench_inputs(),
    output:
        metrics=evaluation_file("{name}", "acceptance_metrics.json"),
        positions=evaluation_file("{name}", "position_stats.json"),
    log:
        f"{RESULTS}/logs/evaluate_adapter_{{name}}.log",
    wildcard_constraints:
        name=REGISTERED,
    conda:
        software_env()
    threads: stage_threads("evaluate")
    resources:
        gpu=stage_gpus("evaluate"),
    params:
        cfg=evaluation_json(),
        code=code_digest("evaluation.evaluate", "evaluation.timing"),
        test=feature_store("test"),
        adapter=lambda w: adapter_dir(w.name),
        verifier=verifier_path,
        out=lambda w: evaluation_dir(w.name),
    shell:
        "eventspec evaluate --config-json {params.cfg:q} --checkpoint {params.adapter} --test_data {params.test}"
        " --lm_head {input.lm_head} --verifier {params.verifier} --output_dir {params.out} --threads {threads} 2> {log}"


rule evaluate_two_phase:
    input:
        prefill=lambda w: adapter_eval_inputs(w.prefill),
        decode=lambda w: adapter_eval_inputs(w.decode),
        test=feature_digest("test"),
        lm_head=lm_head_file(),
        bench=bench_inputs(),
    output:
        evaluation_file("{prefill}__{decode}", "acceptance_metrics.json"),
    log:
        f"{RESULTS}/logs/evaluate_two_phase_{{prefill}}__{{decode}}.log",
    wildcard_constraints:
        prefill=REGISTERED,
        decode=REGISTERED,
    conda:
        software_env()
    threads: stage_threads("evaluate")
    resources:
        gpu=stage_gpus("evaluate"),
    params:
        cfg=evaluation_json(),
        code=code_digest("evaluation.evaluate", "evaluation.timing"),
        test=feature_store("test"),
        prefill=lambda w: adapter_dir(w.prefill),
        decode=lambda w: adapter_dir(w.decode),
        verifier=verifier_path,
        out=lambda w: evaluation_dir(f"{w.prefill}__{w.decode}"),
    shell:
        "eventspec evaluate --config-json {params.cfg:q} --prefill_checkpoint {params.prefill}"
        " --decode_checkpoint {params.decode} --test_data {params.test} --lm_head {input.lm_head}"
        " --verifier {params.verifier} --output_dir {params.out} --threads {threads} 2> {log}"


rule plot_metrics_summary:
    input:
        evaluation_file("{name}", "acceptance_metrics.json"),
        evaluation_file("{name}", "position_stats.json"),
    output:
        report(
            f"{RESULTS}/figures/evaluation/{{name}}/metrics_summary.png",
            caption="../report/metrics_summary.rst",
            category="Evaluation",
            subcategory="{name}",
            labels={"adapter": "{name}", "result": "metrics summary"},
        ),
    log:
        f"{RESULTS}/logs/plot_metrics_summary_{{name}}.log",
    conda:
        software_env()
    params:
        code=code_digest("figures.metrics_summary"),
        tau=config["evaluate"]["tau"],
    shell:
        "eventspec plot metrics_summary --metrics {input} --tau {params.tau} --out {output} 2> {log}"


rule plot_stage_timeline:
    input:
        evaluation_file("{name}", "acceptance_metrics.json"),
    output:
        report(
            f"{RESULTS}/figures/evaluation/{{name}}/stage_timeline.png",
            caption="../report/stage_timeline.rst",
            category="Evaluation",
            subcategory="{name}",
            labels={"adapter": "{name}", "result": "stage timeline"},
        ),
    log:
        f"{RESULTS}/logs/plot_stage_timeline_{{name}}.log",
    conda:
        software_env()
    params:
        code=code_digest("figures.stage_timeline"),
        tau=config["evaluate"]["tau"],
    shell:
        "eventspec plot stage_timeline --metrics {input} --tau {params.tau} --out {output} 2> {log}"


rule plot_token_metrics:
    input:
        evaluation_file("{name}", "acceptance_metrics.json"),
        evaluation_file("{name}", "position_stats.json"),
    output:
        report(
            f"{RESULTS}/figures/evaluation/{{name}}/token_metrics.png",
            caption="../report/token_metrics.rst",
            category="Evaluation",
            subcategory="{name}",
            labels={"adapter": "{name}", "result": "token metrics"},
        ),
    log:
        f"{RESULTS}/logs/plot_token_metrics_{{name}}.log",
    conda:
        software_env()
    params:
        code=code_digest("figures.token_metrics"),
        tau=config["evaluate"]["tau"],
    shell:
        "eventspec plot token_metrics --metrics {input} --tau {params.tau} --out {output} 2> {log}"


rule plot_adapter_comparison:
    input:
        all_metrics(),
    output:
        report(
            f"{RESULTS}/figures/evaluation/adapter_comparison.png",
            caption="../report/adapter_comparison.rst",
            category="Evaluation",
            subcategory="All adapters",
            labels={"adapter": "all", "result": "adapter comparison"},
        ),
    log:
        f"{RESULTS}/logs/plot_adapter_comparison.log",
    conda:
        software_env()
    params:
        code=code_digest("figures.adapter_comparison"),
        tau=config["evaluate"]["tau"],
    shell:
        "eventspec plot adapter_comparison --metrics {input} --tau {params.tau} --out {output} 2> {log}"


rule report:
    input:
        all_metrics(),
    output:
        report(
            f"{RESULTS}/report/METRICS_COMPARISON.md",
            caption="../report/metrics_comparison.rst",
            category="Evaluation",
            subcategory="All adapters",
            labels={"adapter": "all", "result": "metrics table"},
        ),
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        software_env()
    params:
        code=code_digest("evaluation.report"),
        cfg=lambda w: json.dumps({"evaluate": {"tau": config["evaluate"]["tau"]}}),
    shell:
        "eventspec report --config-json {params.cfg:q} --metrics {input} --out {output} 2> {log}"

rule extract_features:
    input:
        samples=sample_digest("{split}"),
        models=model_inputs(),
    output:
        directory(feature_part("{split}", "{shard}")),
    log:
        f"{RESULTS}/logs/extract_{{split}}_{{shard}}.log",
    conda:
        software_env()
    resources:
        gpu=gpus("verifier", "drafter"),
    params:
        cfg=config_json("models", "extract"),
        code=code_digest("extract"),
        samples=sample_store("{split}"),
        shards=config["extract"]["shards"],
    shell:
        "eventspec extract --config-json {params.cfg:q} --split {wildcards.split}"
        " --samples {params.samples} --samples-digest {input.samples}"
        " --shard {wildcards.shard} --shards {params.shards} --resume --threads {threads}"
        " --out {output} 2> {log}"


rule gather_features:
    input:
        lambda w: [feature_part(w.split, i) for i in range(config["extract"]["shards"])],
    output:
        store=directory(feature_store("{split}")),
        digest=feature_digest("{split}"),
    log:
        f"{RESULTS}/logs/gather_{{split}}.log",
    conda:
        software_env()
    params:
        code=code_digest("extract"),
    shell:
        "eventspec gather {input} --out {output.store} --digest {output.digest} 2> {log}"
